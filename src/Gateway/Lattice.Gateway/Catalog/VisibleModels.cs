using Lattice.Gateway.Auth;
using Lattice.Gateway.Runtimes;
using Lattice.Protocol;

namespace Lattice.Gateway.Catalog;

/// <summary>A model as <c>GET /v1/models</c> lists it, whichever surface renders it.</summary>
public readonly record struct ListedModel(string Id, DateTimeOffset CreatedAt, string OwnedBy);

/// <summary>
/// The one rule for which models a caller sees on <c>/v1/models</c>: every catalog model, and the personal runtimes
/// the caller may use. Another workspace's (or another user's) runtime is indistinguishable from one that does not exist.
/// </summary>
public static class VisibleModels
{
    /// <summary>Catalog models by id, then the caller's runtimes, oldest first.</summary>
    public static List<ListedModel> List(Caller caller, CatalogSnapshot catalog, RuntimeStore runtimes)
    {
        var list = catalog.Models.Values.OrderBy(m => m.Id, StringComparer.Ordinal).Select(Of).ToList();
        list.AddRange(runtimes.UsableBy(caller).Select(Of));
        return list;
    }

    public static ListedModel? Find(string modelId, Caller caller, CatalogSnapshot catalog, RuntimeStore runtimes)
    {
        var parsed = ModelId.Parse(modelId);
        if (parsed.Kind == ModelIdKind.PersonalRuntime)
        {
            return runtimes.Find(parsed.Name) is { Revoked: false, Hosted: false } runtime && runtime.VisibleTo(caller) ? Of(runtime) : null;
        }
        return catalog.Models.TryGetValue(modelId, out var model) ? Of(model) : null;
    }

    private static ListedModel Of(CatalogModel model) => new(model.Id, model.CreatedAt, model.OwnedBy);

    private static ListedModel Of(RuntimeRecord runtime) => new(ModelId.PersonalPrefix + runtime.LatticeId, runtime.CreatedAt, runtime.WorkspaceId);
}
