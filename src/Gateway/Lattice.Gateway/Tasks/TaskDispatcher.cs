using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Routing;
using Lattice.Gateway.Upstreams;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Tasks;

/// <summary>
/// The one request path every compute surface walks: authenticate, authorize, read and validate the input,
/// route, dispatch, relay. Surfaces only name the task.
/// </summary>
public sealed class TaskDispatcher(
    Authenticator authenticator,
    CatalogStore catalog,
    Router router,
    UpstreamForwarder forwarder,
    Runtimes.RuntimeForwarder runtimeForwarder,
    IOptions<GatewayOptions> options)
{
    private readonly long _maxBodyBytes = options.Value.MaxRequestBodyBytes;

    public async Task DispatchAsync(HttpContext context, string taskName)
    {
        if (await EndpointAuth.RequireAsync(context, authenticator, Scopes.Inference) is not { } caller)
        {
            return;
        }

        var snapshot = catalog.Current;
        if (!snapshot.Tasks.TryGetValue(taskName, out var task))
        {
            await OpenAiErrors.WriteAsync(context, GatewayError.TaskNotFound(taskName));
            return;
        }

        var (input, inputError) = await TaskInputReader.ReadAsync(context, task, _maxBodyBytes);
        if (input is null)
        {
            await OpenAiErrors.WriteAsync(context, inputError);
            return;
        }
        if (input.Stream && !caller.HasScope(Scopes.Streaming))
        {
            await OpenAiErrors.WriteAsync(context, GatewayError.MissingScope(Scopes.Streaming));
            return;
        }

        var route = router.Resolve(snapshot, caller, input.Model, task.Name);
        if (!route.Found)
        {
            await OpenAiErrors.WriteAsync(context, route.Error);
            return;
        }

        if (route.Runtime is not null)
        {
            await runtimeForwarder.ForwardAsync(context, task, input, route.Runtime, route.Capability!);
            return;
        }
        await forwarder.ForwardAsync(context, task, input, route.Model!);
    }
}
