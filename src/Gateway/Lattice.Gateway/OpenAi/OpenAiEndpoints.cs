using System.Text.Json;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Tasks;

namespace Lattice.Gateway.OpenAi;

/// <summary>
/// OpenAI's routes as thin aliases of <see cref="TaskDispatcher"/>, mounted at <c>/v1</c> and at Groq's <c>/openai/v1</c>.
/// </summary>
public static class OpenAiEndpoints
{
    public static IEndpointRouteBuilder MapOpenAi(this IEndpointRouteBuilder routes)
    {
        foreach (var prefix in new[] { "/v1", "/openai/v1" })
        {
            routes.MapPost(prefix + "/chat/completions", (HttpContext c, TaskDispatcher d) => d.DispatchAsync(c, BuiltInTaskClasses.ChatCompletions));
            routes.MapPost(prefix + "/embeddings", (HttpContext c, TaskDispatcher d) => d.DispatchAsync(c, BuiltInTaskClasses.Embeddings));
            routes.MapPost(prefix + "/audio/transcriptions", (HttpContext c, TaskDispatcher d) => d.DispatchAsync(c, BuiltInTaskClasses.AudioTranscriptions));
            routes.MapGet(prefix + "/models", ListModelsAsync);
            routes.MapGet(prefix + "/models/{**id}", GetModelAsync);
            routes.MapTasks(prefix);
        }
        return routes;
    }

    /// <summary>The model list; a request carrying <c>anthropic-version</c> gets Anthropic's shape and envelope instead.</summary>
    private static async Task ListModelsAsync(HttpContext context, Authenticator authenticator, CatalogStore catalog, Runtimes.RuntimeStore runtimes)
    {
        if (Anthropic.AnthropicModels.Wants(context.Request))
        {
            await Anthropic.AnthropicModels.ListAsync(context, authenticator, catalog, runtimes);
            return;
        }
        if (await EndpointAuth.RequireAsync(context, authenticator, Scopes.CatalogRead, Scopes.Inference) is not { } caller)
        {
            return;
        }
        var models = VisibleModels.List(caller, catalog.Current, runtimes);
        await WriteJsonAsync(context, writer =>
        {
            writer.WriteStartObject();
            writer.WriteString("object", "list");
            writer.WriteStartArray("data");
            foreach (var model in models)
            {
                WriteModel(writer, model);
            }
            writer.WriteEndArray();
            writer.WriteEndObject();
        });
    }

    private static async Task GetModelAsync(HttpContext context, string id, Authenticator authenticator, CatalogStore catalog, Runtimes.RuntimeStore runtimes)
    {
        if (Anthropic.AnthropicModels.Wants(context.Request))
        {
            await Anthropic.AnthropicModels.GetAsync(context, id, authenticator, catalog, runtimes);
            return;
        }
        if (await EndpointAuth.RequireAsync(context, authenticator, Scopes.CatalogRead, Scopes.Inference) is not { } caller)
        {
            return;
        }
        var modelId = Uri.UnescapeDataString(id);
        if (VisibleModels.Find(modelId, caller, catalog.Current, runtimes) is not { } model)
        {
            await OpenAiErrors.WriteAsync(context, GatewayError.ModelNotFound(modelId));
            return;
        }
        await WriteJsonAsync(context, writer => WriteModel(writer, model));
    }

    private static void WriteModel(Utf8JsonWriter writer, ListedModel model)
    {
        writer.WriteStartObject();
        writer.WriteString("id", model.Id);
        writer.WriteString("object", "model");
        writer.WriteNumber("created", model.CreatedAt.ToUnixTimeSeconds());
        writer.WriteString("owned_by", model.OwnedBy);
        writer.WriteEndObject();
    }

    internal static async Task WriteJsonAsync(HttpContext context, Action<Utf8JsonWriter> write, int status = StatusCodes.Status200OK)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(1024);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            write(writer);
        }
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        context.Response.ContentLength = buffer.WrittenCount;
        await context.Response.Body.WriteAsync(buffer.WrittenMemory, context.RequestAborted);
    }
}
