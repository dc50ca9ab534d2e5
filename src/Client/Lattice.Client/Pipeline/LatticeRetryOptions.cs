namespace Lattice.Client;

/// <summary>How the client retries a request the gateway refused for a passing reason, or that never got an answer.</summary>
public sealed record LatticeRetryOptions
{
    /// <summary>Retries after the first attempt (0 turns retrying, and the idempotency keys it needs, off). Default 3.</summary>
    public int MaxRetries { get; init; } = 3;

    /// <summary>The first backoff when the gateway gave no <c>retry-after</c>; it doubles with each retry. Default 0.5 s.</summary>
    public TimeSpan BaseDelay { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// The longest the client waits before one retry. A <c>retry-after</c> longer than this is not waited out: the
    /// exception reaches the caller at once, so an app can tell its user when to come back. Default 60 s.
    /// </summary>
    public TimeSpan MaxDelay { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Called before each retry's wait, with what failed and how long the client will wait.</summary>
    public Action<LatticeRetry>? OnRetry { get; init; }
}

/// <summary>One retry about to happen.</summary>
/// <param name="Attempt">The attempt that is about to be made (2 for the first retry).</param>
/// <param name="Delay">How long the client waits first.</param>
/// <param name="Failure">What the previous attempt ended with.</param>
/// <param name="IdempotencyKey">The key every attempt of this call carries (null for methods other than POST).</param>
public sealed record LatticeRetry(int Attempt, TimeSpan Delay, Exception Failure, string? IdempotencyKey);
