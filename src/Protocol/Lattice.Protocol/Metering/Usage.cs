namespace Lattice.Protocol.Metering;

/// <summary>
/// What one request used, in the units its task is metered in. Counts come from the target's own report; when a
/// target reported nothing the gateway counts them itself and <see cref="Estimated"/> is set.
/// </summary>
public readonly record struct Usage(
    long PromptTokens = 0,
    long CompletionTokens = 0,
    long TotalTokens = 0,
    long CachedTokens = 0,
    long AudioMilliseconds = 0,
    bool Estimated = false)
{
    public static readonly Usage None = default;
}
