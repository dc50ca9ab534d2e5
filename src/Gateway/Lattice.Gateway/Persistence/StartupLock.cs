using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace Lattice.Gateway.Persistence;

/// <summary>
/// Nodes starting together on one PostgreSQL database take turns to initialise it: each holds a session-level advisory
/// lock (<c>pg_advisory_lock</c>) on a connection of its own while it migrates and seeds, so the first applies the
/// migrations and inserts the built-in rows, and the others find them there. EF Core's own migration lock covers the
/// migrations only; the seeding after them (built-in task classes, the configured admin key, the CLI's app) would
/// otherwise race and fail a node's start on a duplicate key. On SQLite there is one node per file: nothing is taken.
/// </summary>
/// <remarks>
/// The lock ends when it is released or when its connection does (a node killed while holding it holds nothing): a
/// node never waits on a dead one.
/// </remarks>
public sealed class StartupLock : IAsyncDisposable
{
    /// <summary>The advisory lock's key, the same on every node and version: "Lattice\0" as a 64-bit number.</summary>
    public const long Key = 0x4C61_7474_6963_6500;

    private readonly NpgsqlConnection? _connection;

    private StartupLock(NpgsqlConnection? connection) => _connection = connection;

    /// <summary>Takes the lock (waiting while another node holds it) when <paramref name="db"/> is on PostgreSQL.</summary>
    public static async Task<StartupLock> TakeAsync(LatticeDbContext db, CancellationToken cancellationToken)
    {
        if (!db.Database.IsNpgsql())
        {
            return new StartupLock(null);
        }
        var connection = new NpgsqlConnection(db.Database.GetConnectionString());
        try
        {
            await connection.OpenAsync(cancellationToken);
            // No command timeout: the wait is as long as the node holding the lock takes to migrate (a large migration,
            // a busy machine), and ends with the start's cancellation. With Npgsql's 30 s default, nodes waiting behind a
            // slow first start failed theirs.
            await using var take = new NpgsqlCommand("SELECT pg_advisory_lock(@key)", connection) { CommandTimeout = 0 };
            take.Parameters.AddWithValue("key", Key);
            await take.ExecuteNonQueryAsync(cancellationToken);
            return new StartupLock(connection);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_connection is null)
        {
            return;
        }
        try
        {
            await using var release = new NpgsqlCommand("SELECT pg_advisory_unlock(@key)", _connection);
            release.Parameters.AddWithValue("key", Key);
            await release.ExecuteNonQueryAsync();
        }
        catch (NpgsqlException)
        {
            // The connection is gone, and the lock with it.
        }
        finally
        {
            await _connection.DisposeAsync();
        }
    }
}
