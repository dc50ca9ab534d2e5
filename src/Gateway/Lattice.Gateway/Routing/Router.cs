using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Runtimes;
using Lattice.Protocol;
using Lattice.Protocol.Runtime;

namespace Lattice.Gateway.Routing;

/// <summary>Where a request goes: a catalog model's offers, or one specific runtime.</summary>
public readonly record struct Route(CatalogModel? Model, RuntimeConnection? Runtime, CapabilityInfo? Capability, GatewayError Error)
{
    public bool Found => Model is not null || Runtime is not null;
}

/// <summary>
/// Picks what can serve a request. <c>lattice:personal:&lt;id&gt;</c> reaches exactly that runtime, for callers of
/// its own workspace, and is never rerouted; catalog models go to their offers in priority order.
/// </summary>
public sealed class Router(RuntimeStore runtimes, RuntimeRegistry registry)
{
    public Route Resolve(CatalogSnapshot catalog, Caller caller, string modelId, string task)
    {
        var id = ModelId.Parse(modelId);
        switch (id.Kind)
        {
            case ModelIdKind.Invalid:
                return new Route(null, null, null, GatewayError.ModelNotFound(modelId));
            case ModelIdKind.PersonalRuntime:
                return ResolvePersonal(caller, id.Name, task);
        }

        if (!catalog.Models.TryGetValue(id.Value, out var model))
        {
            return new Route(null, null, null, GatewayError.ModelNotFound(modelId));
        }
        if (!model.Serves(task))
        {
            return new Route(null, null, null, GatewayError.ModelDoesNotServe(modelId, task));
        }
        if (model.HasMarketplaceOffers && caller.PrivateOnly)
        {
            // Private-only requests never reach marketplace capacity, and never fall back to it.
            model = model.PrivateOnly();
            if (!model.Serves(task))
            {
                return new Route(null, null, null, NoPrivateCapacity(modelId, caller));
            }
        }
        return new Route(model, null, null, default);
    }

    public static GatewayError NoPrivateCapacity(string modelId, Caller caller) => new(
        StatusCodes.Status503ServiceUnavailable, ErrorTypes.Server, ErrorCodes.NoCapacity,
        $"No private capacity can serve '{modelId}', and this request may not use marketplace capacity " +
        (caller.HasScope(Scopes.WorkspaceOnly) ? $"(the credential carries {Scopes.WorkspaceOnly})." : $"(the credential lacks {Scopes.Marketplace})."),
        "model");

    private Route ResolvePersonal(Caller caller, string latticeId, string task)
    {
        // Another workspace's runtime is indistinguishable from one that does not exist.
        var record = runtimes.Find(latticeId);
        if (record is null || !record.VisibleTo(caller))
        {
            var notFound = RuntimeEndpoints.NotFound(latticeId) with { Param = "model" };
            return new Route(null, null, null, notFound);
        }
        if (record.Revoked)
        {
            return new Route(null, null, null, RuntimeForwarder.Unreachable(latticeId) with { Message = $"The runtime '{latticeId}' has been revoked." });
        }
        var connection = registry.Find(latticeId);
        if (connection is null)
        {
            return new Route(null, null, null, RuntimeForwarder.Unreachable(latticeId));
        }
        var capability = connection.FindCapability(task);
        if (capability is null)
        {
            return new Route(null, null, null, new GatewayError(StatusCodes.Status400BadRequest, ErrorTypes.InvalidRequest, ErrorCodes.ModelNotSupported,
                $"The runtime '{latticeId}' cannot serve the task '{task}'.", "model"));
        }
        return new Route(null, connection, capability, default);
    }
}
