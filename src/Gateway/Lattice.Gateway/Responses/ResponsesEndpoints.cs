using System.Buffers;
using System.Text.Json;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Dispatch;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Tasks;
using Lattice.Protocol;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Responses;

/// <summary>
/// OpenAI's Responses API as a thin surface: <c>POST /v1/responses</c> is translated to the chat task (or, for an
/// upstream that serves Responses itself, sent as the client wrote it), dispatched through the one
/// <see cref="Dispatcher"/>, and answered in the Responses shapes; kept responses are read and deleted by id within
/// their workspace. Errors are OpenAI's envelope.
/// </summary>
public static class ResponsesEndpoints
{
    public static IServiceCollection AddResponses(this IServiceCollection services)
    {
        services.AddOptions<ResponsesOptions>().BindConfiguration(ResponsesOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<ResponseStore>();
        services.AddHostedService<ResponsePruner>();
        return services;
    }

    public static IEndpointRouteBuilder MapResponses(this IEndpointRouteBuilder routes)
    {
        routes.MapPost("/v1/responses", CreateAsync);
        routes.MapGet("/v1/responses/{id}", GetAsync);
        routes.MapDelete("/v1/responses/{id}", DeleteAsync);
        routes.MapGet("/v1/responses/{id}/input_items", ListInputItemsAsync);
        return routes;
    }

    private static async Task CreateAsync(HttpContext context, Authenticator authenticator, CatalogStore catalog,
        Dispatcher dispatcher, ResponseStore store, TimeProvider time, RequestBodies bodies)
    {
        var receivedAt = time.GetTimestamp();
        if (await EndpointAuth.RequireAsync(context, authenticator, Scopes.Inference) is not { } caller)
        {
            return;
        }
        // The chat task's body limit, and the caller's share of uploads in flight.
        var chat = catalog.Current.Tasks[BuiltInTaskClasses.ChatCompletions];
        var (body, length, readError) = await bodies.ReadAsync(context, caller, bodies.LimitFor(chat), chat.Name);
        if (readError is { } error)
        {
            await OpenAiErrors.WriteAsync(context, error);
            return;
        }
        var (document, previousId, parseError) = ResponsesRequest.Parse(body.AsSpan(0, length));
        if (document is null)
        {
            await OpenAiErrors.WriteAsync(context, parseError);
            return;
        }
        using var _ = document;

        // A continued conversation: the stored input and output come first. Instructions are not carried over.
        JsonDocument? previousInput = null, previousBody = null;
        var history = new List<JsonElement>();
        if (previousId is not null)
        {
            if (await store.FindAsync(caller.WorkspaceId, previousId, context.RequestAborted) is not { } previous)
            {
                await OpenAiErrors.WriteAsync(context, GatewayError.InvalidRequest(
                    $"Previous response with id '{previousId}' not found.", "previous_response_id", "previous_response_not_found"));
                return;
            }
            (previousInput, previousBody) = ResponseStore.Conversation(previous);
            history.AddRange(previousInput.RootElement.EnumerateArray());
            history.AddRange(previousBody.RootElement.GetProperty("output").EnumerateArray());
        }
        using var __ = previousInput;
        using var ___ = previousBody;

        var (translated, translateError) = ResponsesRequest.Translate(document.RootElement, previousId, history);
        if (translated is null)
        {
            await OpenAiErrors.WriteAsync(context, translateError);
            return;
        }
        var task = catalog.Current.Tasks[BuiltInTaskClasses.ChatCompletions];
        var (input, inputError) = TaskInputReader.ReadJson(task, translated.ChatBody, translated.ChatBody.Length);
        if (input is null)
        {
            await OpenAiErrors.WriteAsync(context, inputError);
            return;
        }

        // An upstream that serves Responses itself gets the client's own bytes — unless they name a conversation only
        // this gateway knows.
        var native = previousId is null ? TaskInput.ClientBytes(body, length, input) : null;

        var request = TaskRequest.FromHttp(context, task, caller, input, time, receivedAt, Metering.Surfaces.Responses, native);
        Func<ResponseOutput, byte[], CancellationToken, Task>? save = null;
        if (translated.Store)
        {
            var conversation = Concat(history, translated.InputItems);
            save = (output, responseBody, cancellationToken) =>
                store.SaveAsync(caller, output.Id, translated.Model, conversation, responseBody, cancellationToken);
        }
        var sink = new ResponsesSink(context, translated, time, save);
        var outcome = await dispatcher.DispatchAsync(request, sink, context.RequestAborted);
        await sink.CompleteAsync(outcome);
    }

    private static async Task GetAsync(HttpContext context, string id, Authenticator authenticator, ResponseStore store)
    {
        if (await EndpointAuth.RequireAsync(context, authenticator, Scopes.Inference) is not { } caller)
        {
            return;
        }
        if (await store.FindAsync(caller.WorkspaceId, id, context.RequestAborted) is not { } stored)
        {
            await OpenAiErrors.WriteAsync(context, NotFound(id));
            return;
        }
        await WriteJsonAsync(context, System.Text.Encoding.UTF8.GetBytes(stored.Body));
    }

    private static async Task DeleteAsync(HttpContext context, string id, Authenticator authenticator, ResponseStore store)
    {
        if (await EndpointAuth.RequireAsync(context, authenticator, Scopes.Inference) is not { } caller)
        {
            return;
        }
        if (!await store.DeleteAsync(caller.WorkspaceId, id, context.RequestAborted))
        {
            await OpenAiErrors.WriteAsync(context, NotFound(id));
            return;
        }
        var buffer = new ArrayBufferWriter<byte>(128);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("id", id);
            writer.WriteString("object", "response");
            writer.WriteBoolean("deleted", true);
            writer.WriteEndObject();
        }
        await WriteJsonAsync(context, buffer.WrittenSpan.ToArray());
    }

    /// <summary>
    /// The input items of a kept response (the whole conversation up to it), newest first unless <c>order=asc</c>,
    /// at most <c>limit</c> (1–100, default 20). Items are listed as they were sent; they carry no ids of their own,
    /// so <c>after</c> is not supported.
    /// </summary>
    private static async Task ListInputItemsAsync(HttpContext context, string id, Authenticator authenticator, ResponseStore store)
    {
        if (await EndpointAuth.RequireAsync(context, authenticator, Scopes.Inference) is not { } caller)
        {
            return;
        }
        var query = context.Request.Query;
        var limit = 20;
        if (query.TryGetValue("limit", out var limitValue) && (!int.TryParse(limitValue, out limit) || limit is < 1 or > 100))
        {
            await OpenAiErrors.WriteAsync(context, GatewayError.InvalidRequest("limit: must be an integer from 1 to 100.", "limit"));
            return;
        }
        var ascending = false;
        if (query.TryGetValue("order", out var order))
        {
            if (order.ToString() is not ("asc" or "desc"))
            {
                await OpenAiErrors.WriteAsync(context, GatewayError.InvalidRequest("order: must be 'asc' or 'desc'.", "order"));
                return;
            }
            ascending = order == "asc";
        }
        if (query.ContainsKey("after") || query.ContainsKey("include") || query.ContainsKey("include[]"))
        {
            var name = query.ContainsKey("after") ? "after" : "include";
            await OpenAiErrors.WriteAsync(context, GatewayError.InvalidRequest($"{name}: not supported by this gateway's Responses API.", name));
            return;
        }
        if (await store.FindAsync(caller.WorkspaceId, id, context.RequestAborted) is not { } stored)
        {
            await OpenAiErrors.WriteAsync(context, NotFound(id));
            return;
        }
        using var items = JsonDocument.Parse(stored.Input);
        var all = items.RootElement.EnumerateArray().ToList();
        if (!ascending)
        {
            all.Reverse();
        }
        var page = all.Take(limit).ToList();
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            writer.WriteString("object", "list");
            writer.WriteStartArray("data");
            foreach (var item in page)
            {
                item.WriteTo(writer);
            }
            writer.WriteEndArray();
            writer.WriteNull("first_id");
            writer.WriteNull("last_id");
            writer.WriteBoolean("has_more", all.Count > page.Count);
            writer.WriteEndObject();
        }
        await WriteJsonAsync(context, buffer.WrittenSpan.ToArray());
    }

    private static GatewayError NotFound(string id) =>
        GatewayError.NotFound($"Response with id '{id}' not found.") with { Param = "response_id" };

    private static Task WriteJsonAsync(HttpContext context, byte[] body)
    {
        var response = context.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "application/json";
        response.ContentLength = body.Length;
        return response.Body.WriteAsync(body, context.RequestAborted).AsTask();
    }

    /// <summary>The history items followed by the items of a JSON array: the conversation a kept response ends.</summary>
    private static byte[] Concat(List<JsonElement> history, byte[] items)
    {
        var buffer = new ArrayBufferWriter<byte>(items.Length + 256);
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartArray();
            foreach (var item in history)
            {
                item.WriteTo(writer);
            }
            using var added = JsonDocument.Parse(items);
            foreach (var item in added.RootElement.EnumerateArray())
            {
                item.WriteTo(writer);
            }
            writer.WriteEndArray();
        }
        return buffer.WrittenSpan.ToArray();
    }
}
