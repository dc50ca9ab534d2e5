using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Dispatch;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Tasks;
using Lattice.Protocol;

namespace Lattice.Gateway.Anthropic;

/// <summary>
/// Anthropic's Messages API (<c>POST /v1/messages</c>) as a thin surface: the request is translated to the chat task,
/// dispatched through the one <see cref="Dispatcher"/>, and the answer and errors are rendered in Anthropic's shapes.
/// </summary>
public static class AnthropicEndpoints
{
    public static IEndpointRouteBuilder MapAnthropic(this IEndpointRouteBuilder routes)
    {
        routes.MapPost("/v1/messages", CreateMessageAsync);
        routes.MapPost("/v1/messages/count_tokens", CountTokens.HandleAsync);
        return routes;
    }

    private static async Task CreateMessageAsync(HttpContext context, Authenticator authenticator, CatalogStore catalog,
        Dispatcher dispatcher, TimeProvider time, RequestBodies bodies)
    {
        var receivedAt = time.GetTimestamp();
        context.Response.Headers["request-id"] = context.TraceIdentifier;
        // Streaming over SSE needs no more than inference on this surface (the streaming scope is for realtime links).
        if (await EndpointAuth.RequireAsync(context, authenticator, AnthropicErrors.WriteAsync, Scopes.Inference) is not { } caller)
        {
            return;
        }

        var chat = catalog.Current.Tasks[BuiltInTaskClasses.ChatCompletions];
        var (body, length, readError) = await bodies.ReadAsync(context, caller, bodies.LimitFor(chat), chat.Name);
        if (readError is { } error)
        {
            await AnthropicErrors.WriteAsync(context, error);
            return;
        }
        var (translated, translateError) = MessagesRequest.Translate(body.AsSpan(0, length));
        if (translated is null)
        {
            await AnthropicErrors.WriteAsync(context, translateError);
            return;
        }

        // The translator's chat body is valid by construction: it is not checked against the chat schema again.
        var input = translated.ChatInput();

        // An Anthropic upstream is sent the client's own bytes, only the model replaced.
        var native = TaskInput.ClientBytes(body, length, input);
        var request = TaskRequest.FromHttp(context, chat, caller, input, time, receivedAt, Metering.Surfaces.Anthropic, native);
        var sink = new MessagesSink(context, translated, time);
        var outcome = await dispatcher.DispatchAsync(request, sink, context.RequestAborted);
        await sink.CompleteAsync(outcome);
    }
}
