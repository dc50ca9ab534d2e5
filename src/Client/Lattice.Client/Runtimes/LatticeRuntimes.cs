using System.Text.Json;
using Lattice.Client.Json;

namespace Lattice.Client;

/// <summary>
/// The caller's personal runtimes, with their live status: list them, choose one by what it can do, and pin it
/// (<see cref="LatticeClient.WithRuntime"/>). An access token sees the user's own runtimes and the workspace's shared ones.
/// </summary>
public class LatticeRuntimes
{
    private readonly LatticeClient _client;

    internal LatticeRuntimes(LatticeClient client) => _client = client;

    /// <summary>For mocks.</summary>
    protected LatticeRuntimes() => _client = null!;

    /// <summary>Every runtime the credential may use, whatever its status (<c>GET /v1/personal-runtimes</c>).</summary>
    public virtual async Task<IReadOnlyList<PersonalRuntime>> ListAsync(CancellationToken cancellationToken = default) =>
        (await _client.GetAsync("v1/personal-runtimes", RuntimeJsonContext.Default.RuntimeList, cancellationToken).ConfigureAwait(false)).Runtimes;

    /// <summary>One runtime, read now; <see cref="PersonalLatticeNotFoundException"/> when it does not exist or is not the caller's.</summary>
    public virtual Task<PersonalRuntime> GetAsync(string latticeId, CancellationToken cancellationToken = default) =>
        _client.GetAsync("v1/personal-runtimes/" + Uri.EscapeDataString(latticeId), RuntimeJsonContext.Default.PersonalRuntime, cancellationToken);

    /// <summary>The runtimes whose link is up now and that serve <paramref name="task"/> (and <paramref name="model"/>, when given).</summary>
    public virtual async Task<IReadOnlyList<PersonalRuntime>> ListReachableAsync(string? task = null, string? model = null, CancellationToken cancellationToken = default)
    {
        var reachable = new List<PersonalRuntime>();
        foreach (var runtime in await ListAsync(cancellationToken).ConfigureAwait(false))
        {
            if (runtime.IsReachable && (task is null || runtime.Serves(task, model)))
            {
                reachable.Add(runtime);
            }
        }
        return reachable;
    }

    /// <summary>
    /// A reachable runtime that serves <paramref name="task"/> (with <paramref name="model"/>, when given): the one most
    /// recently seen, ties by id. <see cref="NoReachableRuntimeException"/> when there is none.
    /// </summary>
    public virtual async Task<PersonalRuntime> ChooseAsync(string task, string? model = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(task);
        PersonalRuntime? best = null;
        foreach (var runtime in await ListReachableAsync(task, model, cancellationToken).ConfigureAwait(false))
        {
            if (best is null || runtime.LastSeenAt > best.LastSeenAt
                || (runtime.LastSeenAt == best.LastSeenAt && string.CompareOrdinal(runtime.LatticeId, best.LatticeId) < 0))
            {
                best = runtime;
            }
        }
        return best ?? throw new NoReachableRuntimeException(task, model);
    }

    /// <summary>
    /// Creates a runtime record (needs <c>lattice:compute:personal_runtime:manage</c>); its daemon pairs with the
    /// one-time bootstrap token returned (<c>lattice daemon --pair …</c>).
    /// </summary>
    public virtual async Task<CreatedRuntime> CreateAsync(string displayName, string executionBackend = "local-model", CancellationToken cancellationToken = default)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(new System.Text.Json.Nodes.JsonObject { ["displayName"] = displayName, ["executionBackend"] = executionBackend },
            NodeContext.Default.JsonObject);
        return await _client.PostAsync("v1/personal-runtimes", body, RuntimeJsonContext.Default.CreatedRuntime, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Revokes a runtime: its link is cut at once and it never serves again.</summary>
    public virtual Task<PersonalRuntime> RevokeAsync(string latticeId, CancellationToken cancellationToken = default) =>
        _client.PostAsync("v1/personal-runtimes/" + Uri.EscapeDataString(latticeId) + "/revoke", "{}"u8.ToArray(), RuntimeJsonContext.Default.PersonalRuntime, cancellationToken);
}

/// <summary>A new runtime record and the one-time token its daemon pairs with.</summary>
/// <param name="Runtime">The record (<c>unpaired</c>).</param>
/// <param name="BootstrapToken">The pairing token: hand it to the daemon, once.</param>
/// <param name="BootstrapExpiresAt">When the token expires.</param>
public sealed record CreatedRuntime(PersonalRuntime Runtime, string BootstrapToken, DateTimeOffset BootstrapExpiresAt);
