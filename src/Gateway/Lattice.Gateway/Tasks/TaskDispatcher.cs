using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Dispatch;
using Lattice.Gateway.OpenAi;

namespace Lattice.Gateway.Tasks;

/// <summary>
/// The OpenAI-shaped surfaces (<c>/v1/tasks/{task}</c> and its aliases): authenticate, authorize, read and validate
/// the input into a <see cref="TaskRequest"/>, hand it to the <see cref="Dispatcher"/>, and render the outcome in
/// OpenAI's envelope. Surfaces only name the task.
/// </summary>
public sealed class TaskDispatcher(
    Authenticator authenticator,
    CatalogStore catalog,
    Dispatcher dispatcher,
    RequestBodies bodies,
    TimeProvider time)
{

    public async Task DispatchAsync(HttpContext context, string taskName)
    {
        var receivedAt = time.GetTimestamp();
        if (await EndpointAuth.RequireAsync(context, authenticator, Scopes.Inference) is not { } caller)
        {
            return;
        }

        if (!catalog.Current.Tasks.TryGetValue(taskName, out var task))
        {
            await OpenAiErrors.WriteAsync(context, GatewayError.TaskNotFound(taskName));
            return;
        }

        // A sealed body is routed on its headers alone: nothing reads it, so no schema checks it.
        var (input, inputError) = Protocol.Sealing.SealedHttp.IsSealed(context.Request.ContentType)
            ? await SealedInputReader.ReadAsync(context, bodies, caller, task)
            : await TaskInputReader.ReadAsync(context, bodies, caller, task);
        if (input is null)
        {
            await OpenAiErrors.WriteAsync(context, inputError);
            return;
        }
        // Streaming over SSE needs no more than inference (the streaming scope is for realtime links).
        var request = TaskRequest.FromHttp(context, task, caller, input, time, receivedAt);
        var outcome = await dispatcher.DispatchAsync(request, new HttpResponseSink(context.Response), context.RequestAborted);
        await OpenAiErrors.RenderAsync(context, outcome);
    }
}
