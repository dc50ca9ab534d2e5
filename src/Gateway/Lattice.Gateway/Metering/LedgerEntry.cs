namespace Lattice.Gateway.Metering;

/// <summary>
/// A request's place in the usage ledger between <see cref="UsageLedger.Begin"/> and <see cref="UsageLedger.Complete"/>.
/// Complete it exactly once, in a <c>finally</c>: an entry never completed is recorded as interrupted only at the next start.
/// </summary>
public sealed class LedgerEntry
{
    private int _completed;

    internal LedgerEntry(UsageRecord provisional, int slot)
    {
        Provisional = provisional;
        Slot = slot;
    }

    public string RequestId => Provisional.RequestId;

    /// <summary>What was journaled at dispatch; what the ledger would record if the gateway died now.</summary>
    public UsageRecord Provisional { get; }

    /// <summary>False when no journal slot was free: the record is still committed, but a crash before then loses it.</summary>
    public bool IsJournaled => Slot >= 0;

    internal int Slot { get; }

    /// <summary>True for the first caller only, so a second Complete is a no-op.</summary>
    internal bool TryMarkCompleted() => Interlocked.Exchange(ref _completed, 1) == 0;
}
