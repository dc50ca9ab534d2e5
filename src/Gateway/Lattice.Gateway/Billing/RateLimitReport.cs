namespace Lattice.Gateway.Billing;

/// <summary>
/// What a limited caller is told on every answer: the tightest request and token limits that apply to it, what is
/// left of them and when they are whole again; and, when refused, how long to wait. Each surface writes it in its
/// own headers (OpenAI's <c>x-ratelimit-*</c>, Anthropic's <c>anthropic-ratelimit-*</c>).
/// </summary>
public readonly record struct RateLimitReport
{
    /// <summary>A requests-per-minute limit applies.</summary>
    public bool HasRequests { get; init; }
    public long LimitRequests { get; init; }
    public long RemainingRequests { get; init; }
    /// <summary>Until the request limit is back to its full amount.</summary>
    public TimeSpan ResetRequests { get; init; }

    /// <summary>A tokens-per-minute limit applies.</summary>
    public bool HasTokens { get; init; }
    public long LimitTokens { get; init; }
    public long RemainingTokens { get; init; }
    public TimeSpan ResetTokens { get; init; }

    /// <summary>For a refused request: when a retry can succeed.</summary>
    public TimeSpan? RetryAfter { get; init; }

    public bool IsEmpty => !HasRequests && !HasTokens && RetryAfter is null;
}
