using System.Data.Common;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace Lattice.Gateway.Persistence;

/// <summary>
/// Makes each SQLite connection wait out another writer's lock inside SQLite (<c>PRAGMA busy_timeout</c>, whose
/// handler retries within a millisecond or two at first) instead of in Microsoft.Data.Sqlite, which answers every
/// <c>SQLITE_BUSY</c> by sleeping 150 ms before trying again. Writers collide all the time on the request path — a
/// request's idempotency key is claimed while the previous request's answer is still being kept, the ledger writes its
/// batch — and each collision cost a request 150 ms before it was dispatched (docs/benchmarks.md, "Sealed vs unsealed chat").
/// </summary>
public sealed class SqliteBusyTimeout : DbConnectionInterceptor
{
    /// <summary>How long SQLite itself waits for a lock before Microsoft.Data.Sqlite's own (150 ms) retries take over.</summary>
    public const int Milliseconds = 5000;

    public static readonly SqliteBusyTimeout Instance = new();

    /// <summary>Sets the busy timeout on an open connection.</summary>
    public static void Apply(SqliteConnection connection)
    {
        using var pragma = connection.CreateCommand();
        pragma.CommandText = $"PRAGMA busy_timeout={Milliseconds};";
        pragma.ExecuteNonQuery();
    }

    /// <summary>
    /// What a store with a connection of its own sets on it (<see cref="OpenWithoutFsync"/>, and the usage ledger's
    /// connection, opened through SQLite's API): the busy timeout, and <c>synchronous=NORMAL</c>.
    /// </summary>
    public static readonly string StorePragmas = $"PRAGMA busy_timeout={Milliseconds}; PRAGMA synchronous=NORMAL;";

    /// <summary>
    /// Opens a connection with the busy timeout and <c>synchronous=NORMAL</c> (<see cref="StorePragmas"/>), for a store of
    /// its own (the idempotency keys; the usage ledger sets the same on its own connection): in WAL mode a commit then does
    /// not fsync. A committed transaction survives the process dying
    /// (<c>kill -9</c>); only a power cut or a crash of the machine could take back the newest ones. What it saves is a
    /// disk flush per commit — on this kind of machine about 130 µs, against about 25 µs for the commit itself.
    /// </summary>
    /// <remarks>
    /// The connection is opened outside Microsoft.Data.Sqlite's pool: closed, it would hand its <c>synchronous=NORMAL</c>
    /// to whichever EF Core context opened it next.
    /// </remarks>
    public static SqliteConnection OpenWithoutFsync(string connectionString)
    {
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder(connectionString) { Pooling = false }.ToString());
        try
        {
            connection.Open();
            using var pragma = connection.CreateCommand();
            pragma.CommandText = StorePragmas;
            pragma.ExecuteNonQuery();
            return connection;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    public override void ConnectionOpened(DbConnection connection, ConnectionEndEventData eventData)
    {
        if (connection is SqliteConnection sqlite)
        {
            Apply(sqlite);
        }
    }

    public override Task ConnectionOpenedAsync(DbConnection connection, ConnectionEndEventData eventData, CancellationToken cancellationToken = default)
    {
        ConnectionOpened(connection, eventData);
        return Task.CompletedTask;
    }
}
