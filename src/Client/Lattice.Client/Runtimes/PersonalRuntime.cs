namespace Lattice.Client;

/// <summary>A personal runtime's state, computed live by the gateway on every read.</summary>
public enum RuntimeStatus
{
    /// <summary>A value this client version does not know.</summary>
    Unknown,
    /// <summary>Created, but no daemon has paired with it yet.</summary>
    Unpaired,
    /// <summary>Its daemon's link is up: requests to it are served.</summary>
    Reachable,
    /// <summary>Paired, but its daemon is not connected now.</summary>
    Offline,
    /// <summary>Revoked: it will never serve again.</summary>
    Revoked,
}

/// <summary>A personal runtime (a daemon on someone's machine) as <c>GET /v1/personal-runtimes</c> shows it.</summary>
/// <param name="LatticeId">Its id, <c>lat_…</c>.</param>
/// <param name="AccountId">The workspace it belongs to.</param>
/// <param name="DisplayName">Its name, such as <c>my laptop</c>.</param>
/// <param name="ExecutionBackend">What it runs on (<c>local-model</c>, …).</param>
/// <param name="Status">Its live status as the gateway sent it: <c>unpaired</c>, <c>reachable</c>, <c>offline</c> or <c>revoked</c>.</param>
/// <param name="Hosted">An operator's hosted runtime rather than a user's machine.</param>
/// <param name="ModelId">The model id that targets it and nothing else: <c>lattice:personal:lat_…</c>.</param>
/// <param name="CreatedAt">When it was created.</param>
/// <param name="UpdatedAt">When its record last changed.</param>
/// <param name="LastSeenAt">When its daemon was last connected.</param>
/// <param name="RevokedAt">When it was revoked.</param>
/// <param name="PublicWorkKey">Its daemon's public work key, once published (for sealed calls).</param>
/// <param name="Capabilities">What its connected daemon advertised; null while it is not connected.</param>
public sealed record PersonalRuntime(
    string LatticeId, string AccountId, string DisplayName, string ExecutionBackend, string Status, bool Hosted, string ModelId,
    DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt, DateTimeOffset? LastSeenAt, DateTimeOffset? RevokedAt, string? PublicWorkKey,
    IReadOnlyList<RuntimeCapability>? Capabilities)
{
    /// <summary><see cref="Status"/> as an enum.</summary>
    public RuntimeStatus State => Status switch
    {
        "unpaired" => RuntimeStatus.Unpaired,
        "reachable" => RuntimeStatus.Reachable,
        "offline" => RuntimeStatus.Offline,
        "revoked" => RuntimeStatus.Revoked,
        _ => RuntimeStatus.Unknown,
    };

    /// <summary>True when its link is up now.</summary>
    public bool IsReachable => State == RuntimeStatus.Reachable;

    /// <summary>True when it advertised <paramref name="task"/> (and, when given, <paramref name="model"/>).</summary>
    public bool Serves(string task, string? model = null)
    {
        foreach (var capability in Capabilities ?? [])
        {
            if (capability.Task == task && (model is null || capability.Model == model))
            {
                return true;
            }
        }
        return false;
    }
}

/// <summary>One thing a connected runtime can do.</summary>
/// <param name="Task">The task class, such as <c>chat.completions</c>.</param>
/// <param name="Model">The engine's own model name, such as <c>stories260K</c>.</param>
/// <param name="Engine">The engine, such as <c>llama</c>.</param>
public sealed record RuntimeCapability(string Task, string Model, string Engine);
