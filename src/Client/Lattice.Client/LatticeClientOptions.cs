namespace Lattice.Client;

/// <summary>Which capacity a client may use.</summary>
public enum CapacityPolicy
{
    /// <summary>Whatever the model id and the credential allow.</summary>
    Any,

    /// <summary>
    /// Only the caller's own personal runtimes (<c>lattice:personal:…</c> model ids): never hosted or marketplace
    /// capacity, and never a fallback to it. A call naming anything else is refused by the client, before it is sent,
    /// with <see cref="PrivateOnlyViolationException"/>.
    /// </summary>
    PrivateOnly,
}

/// <summary>How a <see cref="LatticeClient"/> reaches its gateway. Read once, when the client is built.</summary>
public sealed record LatticeClientOptions
{
    /// <summary>The gateway's base URL, such as <c>http://127.0.0.1:8080</c> (the client adds <c>/v1/…</c>).</summary>
    public required Uri Endpoint { get; init; }

    /// <summary>The credential: a <see cref="DeveloperKeyTokenProvider"/> or an <see cref="OAuthTokenProvider"/>.</summary>
    public required LatticeTokenProvider TokenProvider { get; init; }

    /// <summary>Retries and their backoff.</summary>
    public LatticeRetryOptions Retry { get; init; } = new();

    /// <summary>Which capacity calls may use. Default <see cref="CapacityPolicy.Any"/>.</summary>
    public CapacityPolicy CapacityPolicy { get; init; } = CapacityPolicy.Any;

    /// <summary>
    /// A personal runtime (<c>lat_…</c>) every call without a model of its own goes to (<see cref="LatticeClient.WithRuntime(PersonalRuntime)"/>).
    /// </summary>
    public string? PinnedRuntimeId { get; init; }

    /// <summary>
    /// Where sealed calls pin each runtime's work-key fingerprint on first use. Default a new
    /// <see cref="InMemoryRuntimeKeyPinStore"/> (shared by the clients <see cref="LatticeClient.WithRuntime"/> makes).
    /// </summary>
    public IRuntimeKeyPinStore RuntimeKeyPins { get; init; } = new InMemoryRuntimeKeyPinStore();

    /// <summary>The clock for backoff, <c>retry-after</c> and token expiry. Default the system's.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>The HTTP handler requests finally go through. Default a new <see cref="SocketsHttpHandler"/>.</summary>
    public HttpMessageHandler? Transport { get; init; }

    /// <summary>The longest one call may take until its answer's headers arrive, retries included. Default 10 minutes.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(10);
}
