using Lattice.Gateway.Persistence;

namespace Lattice.Gateway.Metering;

/// <summary>Where <see cref="UsageLedger"/> commits: the database of the configured provider, written without EF Core.</summary>
internal interface ILedgerStore
{
    /// <summary>A connection for the commit loop (or a recovery), owned and disposed by its caller.</summary>
    ValueTask<ILedgerConnection> OpenAsync(CancellationToken cancellationToken);
}

/// <summary>One open connection the ledger writes through.</summary>
internal interface ILedgerConnection : IDisposable
{
    /// <summary>
    /// Inserts <paramref name="records"/> in one transaction, each <c>ON CONFLICT (request id) DO NOTHING</c>: a record
    /// committed before (a replay after a crash, or another node's) is left as it is. Throws if nothing was committed.
    /// </summary>
    ValueTask CommitAsync(IReadOnlyList<UsageRecord> records, CancellationToken cancellationToken);

    /// <summary>
    /// The commit loop's batch, the same way: records still in their journal slots are read from there. A store that
    /// can bind the journal's encoding directly (SQLite) does, with no record object; the default decodes them first.
    /// </summary>
    ValueTask CommitAsync(LedgerBatch batch, CancellationToken cancellationToken) => CommitAsync(batch.ToRecords(), cancellationToken);
}

/// <summary>
/// Records queued for one group commit: each one either an object (no journal slot, or its final record did not fit
/// the slot) or only the slot whose final record holds it, encoded by <see cref="UsageRecordCodec"/>.
/// </summary>
internal sealed class LedgerBatch(UsageJournal journal, int capacity)
{
    private readonly List<(UsageRecord? Record, int Slot)> _items = new(capacity);

    public int Count => _items.Count;

    public void Add(UsageRecord? record, int slot) => _items.Add((record, slot));

    public void Clear() => _items.Clear();

    /// <summary>The record object of item <paramref name="index"/>; null when it is in its slot (<see cref="Encoded"/>).</summary>
    public UsageRecord? Record(int index) => _items[index].Record;

    /// <summary>Item <paramref name="index"/>'s encoded final record, read from the journal's mapping (pinned by the caller's commit).</summary>
    public ReadOnlySpan<byte> Encoded(int index) => journal.Final(_items[index].Slot);

    /// <summary>Every item as an object (decoding those in slots).</summary>
    public UsageRecord[] ToRecords()
    {
        var records = new UsageRecord[_items.Count];
        for (var i = 0; i < records.Length; i++)
        {
            records[i] = _items[i].Record ?? UsageRecordCodec.Decode(Encoded(i))
                ?? throw new InvalidOperationException($"Journal slot {_items[i].Slot} does not hold an intact record.");
        }
        return records;
    }
}

internal static class LedgerStores
{
    public static ILedgerStore For(DatabaseLocation database) => database.Provider switch
    {
        DatabaseProvider.Postgres => new PostgresLedgerStore(database.ConnectionString),
        _ => new SqliteLedgerStore(database.ConnectionString),
    };
}
