using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.OpenAi;
using Lattice.Protocol;

namespace Lattice.Gateway.Routing;

/// <summary>Picks what can serve a request: for now the catalog model's upstream offers, in priority order.</summary>
public static class Router
{
    public static (CatalogModel? Model, GatewayError Error) Resolve(CatalogSnapshot catalog, Caller caller, string modelId, string task)
    {
        var id = ModelId.Parse(modelId);
        switch (id.Kind)
        {
            case ModelIdKind.Invalid:
                return (null, GatewayError.ModelNotFound(modelId));
            case ModelIdKind.PersonalRuntime:
                // Personal runtimes arrive with the runtime link; until one exists under this workspace, none is visible.
                return (null, new GatewayError(StatusCodes.Status404NotFound, ErrorTypes.InvalidRequest, ErrorCodes.PersonalLatticeNotFound,
                    $"The personal runtime '{id.Name}' does not exist.", "model"));
        }

        if (!catalog.Models.TryGetValue(id.Value, out var model))
        {
            return (null, GatewayError.ModelNotFound(modelId));
        }
        if (!model.Serves(task))
        {
            return (null, GatewayError.ModelDoesNotServe(modelId, task));
        }
        _ = caller;
        return (model, default);
    }
}
