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
}

internal static class LedgerStores
{
    public static ILedgerStore For(DatabaseLocation database) => database.Provider switch
    {
        DatabaseProvider.Postgres => new PostgresLedgerStore(database.ConnectionString),
        _ => new SqliteLedgerStore(database.ConnectionString),
    };
}
