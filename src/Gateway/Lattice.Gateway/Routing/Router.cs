using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Cluster;
using Lattice.Gateway.Dispatch;
using Lattice.Gateway.Metering;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Runtimes;
using Lattice.Gateway.Upstreams;
using Lattice.Protocol;

namespace Lattice.Gateway.Routing;

/// <summary>
/// Picks what can serve a request, as an ordered list of candidates. <c>lattice:personal:&lt;id&gt;</c> reaches
/// exactly that runtime, for callers of its own workspace, and is never rerouted; a catalog model goes to its
/// offers in priority order — hosted runtimes that are connected and not revoked, and upstreams. A runtime linked to
/// this node is reached over its link; one linked to another node (its lease in <see cref="LinkLeases"/>) through that
/// node (<see cref="NodeTarget"/>).
/// </summary>
public sealed class Router(RuntimeStore runtimes, RuntimeRegistry registry, RuntimeTarget runtimeTarget, UpstreamTarget upstreamTarget,
    WorkspacePrices workspacePrices, LinkLeases leases, NodeTarget nodeTarget)
{
    /// <summary>
    /// The candidates for a request. Completes at once unless a runtime's link must be looked up in Redis (one
    /// round trip for each runtime that is not linked here).
    /// </summary>
    public async ValueTask<RoutePlan> PlanAsync(CatalogSnapshot catalog, Caller caller, string modelId, string task)
    {
        var id = ModelId.Parse(modelId);
        switch (id.Kind)
        {
            case ModelIdKind.Invalid:
                return RoutePlan.Fail(GatewayError.ModelNotFound(modelId));
            case ModelIdKind.PersonalRuntime:
                return await PlanPersonalAsync(caller, id.Name, task);
        }

        if (!catalog.Models.TryGetValue(id.Value, out var model))
        {
            return RoutePlan.Fail(GatewayError.ModelNotFound(modelId));
        }
        if (!model.Serves(task))
        {
            return RoutePlan.Fail(GatewayError.ModelDoesNotServe(modelId, task));
        }
        if (model.HasMarketplaceOffers && caller.PrivateOnly)
        {
            // Private-only requests never reach marketplace capacity, and never fall back to it.
            model = model.PrivateOnly();
            if (!model.Serves(task))
            {
                return RoutePlan.Fail(NoPrivateCapacity(modelId, caller));
            }
        }

        var candidates = new List<Candidate>(model.Offers.Length);
        foreach (var offer in model.Offers)
        {
            if (!offer.ServesTask(task))
            {
                continue;
            }
            if (offer.RuntimeId is { } runtimeId)
            {
                // A hosted runtime is a candidate only while its record is live and its link is here and serves the
                // offer's model; otherwise it is skipped like any candidate that cannot answer.
                if (runtimes.Find(runtimeId) is not { Hosted: true, Revoked: false })
                {
                    continue;
                }
                if (registry.Find(runtimeId) is { } connection)
                {
                    if (connection is { Hosted: true } && connection.FindCapability(task, offer.UpstreamModel) is { } capability)
                    {
                        candidates.Add(new Candidate(ServedByKinds.HostedRuntime, runtimeId, CapacityClasses.Hosted, capability.Model,
                            offer.Prices, runtimeTarget, new RuntimeTarget.Link(connection, capability)));
                    }
                }
                else if (leases.Enabled && await leases.FindAsync(runtimeId) is { } remote && remote.FindCapability(task, offer.UpstreamModel) is { } capability)
                {
                    candidates.Add(new Candidate(ServedByKinds.HostedRuntime, runtimeId, CapacityClasses.Hosted, capability.Model,
                        offer.Prices, nodeTarget, new NodeTarget.Hop(remote, capability)));
                }
                continue;
            }
            candidates.Add(new Candidate(ServedByKinds.Upstream, offer.Id, offer.Marketplace ? CapacityClasses.Marketplace : CapacityClasses.Hosted,
                offer.UpstreamModel, offer.Prices, upstreamTarget, offer));
        }
        if (candidates.Count == 0)
        {
            return RoutePlan.Fail(GatewayError.NoCapacity("No capacity is connected that can serve this model."));
        }
        return new RoutePlan(candidates, default) { MaxOutputTokens = model.MaxOutputTokens };
    }

    public static GatewayError NoPrivateCapacity(string modelId, Caller caller) => GatewayError.NoCapacity(
        $"No private capacity can serve '{modelId}', and this request may not use marketplace capacity " +
        (caller.HasScope(Scopes.WorkspaceOnly) ? $"(the credential carries {Scopes.WorkspaceOnly})." : $"(the credential lacks {Scopes.Marketplace})."));

    private async ValueTask<RoutePlan> PlanPersonalAsync(Caller caller, string latticeId, string task)
    {
        // Another workspace's runtime is indistinguishable from one that does not exist.
        var record = runtimes.Find(latticeId);
        if (record is null || !record.VisibleTo(caller))
        {
            return RoutePlan.Fail(RuntimeEndpoints.NotFound(latticeId) with { Param = "model" });
        }
        if (record.Revoked)
        {
            return RoutePlan.Fail(RuntimeTarget.Unreachable(latticeId) with { Message = $"The runtime '{latticeId}' has been revoked." });
        }
        // Linked here, else to another node, else nowhere.
        var connection = registry.Find(latticeId);
        var remote = connection is null && leases.Enabled ? await leases.FindAsync(latticeId) : null;
        if (connection is null && remote is null)
        {
            return RoutePlan.Fail(RuntimeTarget.Unreachable(latticeId));
        }
        var capability = connection is not null ? connection.FindCapability(task) : remote!.FindCapability(task);
        if (capability is null)
        {
            return RoutePlan.Fail(new GatewayError(StatusCodes.Status400BadRequest, ErrorTypes.InvalidRequest, ErrorCodes.ModelNotSupported,
                $"The runtime '{latticeId}' cannot serve the task '{task}'.", "model"));
        }
        // A personal runtime costs nothing unless its workspace prices its own runtimes.
        var prices = workspacePrices.For(record.WorkspaceId);
        return new RoutePlan([connection is not null
            ? new Candidate(ServedByKinds.PersonalRuntime, latticeId, CapacityClasses.Personal, capability.Model, prices,
                runtimeTarget, new RuntimeTarget.Link(connection, capability))
            : new Candidate(ServedByKinds.PersonalRuntime, latticeId, CapacityClasses.Personal, capability.Model, prices,
                nodeTarget, new NodeTarget.Hop(remote!, capability))], default);
    }
}
