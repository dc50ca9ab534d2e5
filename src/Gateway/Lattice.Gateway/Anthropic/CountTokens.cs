using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Routing;
using Lattice.Gateway.Tasks;

namespace Lattice.Gateway.Anthropic;

/// <summary>
/// <c>POST /v1/messages/count_tokens</c>: the conversation translated as <c>POST /v1/messages</c> would translate it,
/// counted by the <see cref="TokenEstimator"/> the ledger uses when a target reports no usage — so the count is the
/// prompt estimate the gateway itself would bill. Nothing is dispatched and nothing is metered.
/// </summary>
public static class CountTokens
{
    public static async Task HandleAsync(HttpContext context, Authenticator authenticator, CatalogStore catalog, Router router,
        TokenEstimator estimator, RequestBodies bodies)
    {
        context.Response.Headers["request-id"] = context.TraceIdentifier;
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
        var (translated, translateError) = MessagesRequest.Translate(body.AsSpan(0, length), forCounting: true);
        if (translated is null)
        {
            await AnthropicErrors.WriteAsync(context, translateError);
            return;
        }
        var snapshot = catalog.Current;
        var task = chat;

        // The model must exist and be the caller's to use (another workspace's runtime is a 404, as on /v1/messages);
        // whether capacity is connected right now does not change a count.
        var plan = await router.PlanAsync(snapshot, caller, translated.Model, task.Name);
        if (!plan.Found && plan.Error.Status is >= 400 and < 500)
        {
            await AnthropicErrors.WriteAsync(context, plan.Error);
            return;
        }

        var usage = estimator.EstimateChat(translated.ChatBody, [], sse: false, translated.Model);
        await OpenAi.OpenAiEndpoints.WriteJsonAsync(context, writer =>
        {
            writer.WriteStartObject();
            writer.WriteNumber("input_tokens", usage.PromptTokens);
            writer.WriteEndObject();
        });
    }
}
