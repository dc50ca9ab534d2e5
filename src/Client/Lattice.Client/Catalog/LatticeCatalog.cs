using Lattice.Client.Json;

namespace Lattice.Client;

/// <summary>What the gateway offers the credential: models and task classes.</summary>
public class LatticeCatalog
{
    private readonly LatticeClient _client;

    internal LatticeCatalog(LatticeClient client) => _client = client;

    /// <summary>For mocks.</summary>
    protected LatticeCatalog() => _client = null!;

    /// <summary>The models the credential may use: catalog models, then its personal runtimes (<c>GET /v1/models</c>).</summary>
    public virtual async Task<IReadOnlyList<LatticeModel>> ListModelsAsync(CancellationToken cancellationToken = default) =>
        (await _client.GetAsync("v1/models", OpenAiJsonContext.Default.ModelList, cancellationToken).ConfigureAwait(false)).Data;

    /// <summary>One model; <see cref="ModelNotFoundException"/> when it does not exist or is not the caller's.</summary>
    public virtual Task<LatticeModel> GetModelAsync(string id, CancellationToken cancellationToken = default) =>
        _client.GetAsync("v1/models/" + Uri.EscapeDataString(id), OpenAiJsonContext.Default.LatticeModel, cancellationToken);

    /// <summary>
    /// The task classes (<c>GET /admin/v1/task-classes</c>). The gateway serves them on its admin API only, so this needs
    /// an operator credential (<c>lattice:admin</c>); other credentials get <see cref="InsufficientScopesException"/>.
    /// </summary>
    public virtual async Task<IReadOnlyList<TaskClass>> ListTaskClassesAsync(CancellationToken cancellationToken = default) =>
        (await _client.GetAsync("admin/v1/task-classes", OpenAiJsonContext.Default.TaskClassList, cancellationToken).ConfigureAwait(false)).Data;
}
