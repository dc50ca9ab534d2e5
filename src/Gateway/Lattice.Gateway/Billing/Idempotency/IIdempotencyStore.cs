namespace Lattice.Gateway.Billing.Idempotency;

/// <summary>Where a key stands: a request holds it, its answer is kept, or its answer could not be kept.</summary>
public enum IdempotencyState
{
    Running,
    Done,
    Unreplayable,
}

/// <summary>What a key already holds when a request tries to claim it.</summary>
/// <param name="Headers">For <see cref="IdempotencyState.Done"/>: the answer's kept headers, in order.</param>
/// <param name="Body">For <see cref="IdempotencyState.Done"/>: the answer's bytes.</param>
public sealed record IdempotencyRecord(
    string RequestHash,
    IdempotencyState State,
    int Status,
    IReadOnlyList<KeyValuePair<string, string>> Headers,
    byte[]? Body);

/// <summary>A request's hold on a key. <paramref name="ClaimedAt"/> tells this hold from a later one on the same key.</summary>
public sealed record IdempotencyClaim(string CallerId, string Key, DateTimeOffset ClaimedAt);

/// <summary>The answer kept for replay.</summary>
public sealed record IdempotentAnswer(int Status, IReadOnlyList<KeyValuePair<string, string>> Headers, byte[] Body);

/// <summary>Either the key is now this request's (<see cref="Claim"/>), or it is held by what <see cref="Existing"/> says.</summary>
public readonly record struct ClaimOutcome(IdempotencyClaim? Claim, IdempotencyRecord? Existing);

/// <summary>
/// Idempotency keys per caller. A key is claimed by the first request that carries it, then completed with its
/// answer (or marked unreplayable) or released. A key past its retention is absent; a claim whose lease lapsed (the
/// node holding it died) may be taken over. Every implementation keeps these rules; each reads the time itself.
/// </summary>
public interface IIdempotencyStore
{
    /// <summary>Claims <paramref name="key"/> for a request with <paramref name="requestHash"/>, for at most <paramref name="lease"/>.</summary>
    ValueTask<ClaimOutcome> TryClaimAsync(string callerId, string key, string requestHash, TimeSpan lease, CancellationToken cancellationToken);

    /// <summary>Keeps <paramref name="answer"/> for replay, or, when it is null, marks the key unreplayable. Does nothing if the claim was lost.</summary>
    ValueTask CompleteAsync(IdempotencyClaim claim, IdempotentAnswer? answer, CancellationToken cancellationToken);

    /// <summary>
    /// Extends a running claim's lease to <paramref name="lease"/> from now, so a request that is still making progress
    /// (a long stream) keeps its key; false when the claim was lost or has ended.
    /// </summary>
    ValueTask<bool> RenewAsync(IdempotencyClaim claim, TimeSpan lease, CancellationToken cancellationToken);

    /// <summary>Forgets the claim (the request never began executing), so a retry runs afresh.</summary>
    ValueTask ReleaseAsync(IdempotencyClaim claim, CancellationToken cancellationToken);

    /// <summary>What the key holds, or null when it is absent or expired.</summary>
    ValueTask<IdempotencyRecord?> FindAsync(string callerId, string key, CancellationToken cancellationToken);

    /// <summary>Deletes up to <paramref name="batch"/> expired keys; returns how many went.</summary>
    ValueTask<int> PruneAsync(int batch, CancellationToken cancellationToken);
}
