using System.Collections.Concurrent;
using Lattice.Gateway.Persistence;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Billing.Idempotency;

/// <summary>
/// Idempotency keys in the gateway's SQLite file (<c>idempotency_keys</c>, the table <see cref="SqlIdempotencyStore"/>
/// keeps on PostgreSQL), written through connections of the store's own: each holds its statements prepared, and its
/// commits do not fsync (<see cref="SqliteBusyTimeout.OpenWithoutFsync"/>). An SDK sends a key with every call, so a
/// key is claimed and its answer kept on the request path of most calls: through EF Core, with a flush per commit, that
/// was about 600 µs of gateway CPU per call (docs/benchmarks.md, "Idempotency keys on SQLite").
/// </summary>
/// <remarks>
/// The rules are <see cref="SqlIdempotencyStore"/>'s, statement for statement, so nodes sharing one SQLite file stay
/// correct: a claim is one conditional upsert, and a completion, renewal or release touches the row only while the
/// claim still holds it. A key claimed or kept just before a power cut may be lost with the newest commits; a process
/// that dies (<c>kill -9</c>) loses nothing.
/// </remarks>
public sealed class SqliteIdempotencyStore(DatabaseLocation database, IOptions<IdempotencyOptions> options, TimeProvider time) : IIdempotencyStore, IDisposable
{
    private const string Running = "running";
    private const string Done = "done";
    private const string Unreplayable = "unreplayable";

    /// <summary>Tries before a key that is claimed and released again under our feet is reported as in use.</summary>
    private const int ClaimAttempts = 3;

    /// <summary>
    /// Connections kept between calls. SQLite runs one writer at a time, so more would only hold memory; a burst past
    /// this opens more and closes them again.
    /// </summary>
    private const int MaxIdle = 8;

    private readonly TimeSpan _retention = options.Value.Retention;
    private readonly ConcurrentBag<Statements> _idle = [];
    private bool _disposed;

    public ValueTask<ClaimOutcome> TryClaimAsync(string callerId, string key, string requestHash, TimeSpan lease, CancellationToken cancellationToken)
    {
        var s = Rent();
        try
        {
            for (var attempt = 0; attempt < ClaimAttempts; attempt++)
            {
                // Whole milliseconds: what the table keeps, so the claim's time compares equal to the row's.
                var now = DateTimeOffset.FromUnixTimeMilliseconds(time.GetUtcNow().ToUnixTimeMilliseconds());
                var nowMs = now.ToUnixTimeMilliseconds();
                var claimed = s.Claim.Run(callerId, key, requestHash, nowMs, (now + _retention).ToUnixTimeMilliseconds(), (now + lease).ToUnixTimeMilliseconds());
                if (claimed == 1)
                {
                    return ValueTask.FromResult(new ClaimOutcome(new IdempotencyClaim(callerId, key, now), null));
                }
                if (Find(s, callerId, key, nowMs) is { } existing)
                {
                    return ValueTask.FromResult(new ClaimOutcome(null, existing));
                }
            }
            return ValueTask.FromResult(new ClaimOutcome(null, new IdempotencyRecord(requestHash, IdempotencyState.Running, 0, [], null)));
        }
        finally
        {
            Return(s);
        }
    }

    public ValueTask CompleteAsync(IdempotencyClaim claim, IdempotentAnswer? answer, CancellationToken cancellationToken)
    {
        var s = Rent();
        try
        {
            s.Complete.Run(claim.CallerId, claim.Key, claim.ClaimedAt.ToUnixTimeMilliseconds(), answer is null ? Unreplayable : Done,
                answer?.Status ?? 0, answer is null ? null : HeadersJson.Write(answer.Headers), answer?.Body);
            return ValueTask.CompletedTask;
        }
        finally
        {
            Return(s);
        }
    }

    public ValueTask<bool> RenewAsync(IdempotencyClaim claim, TimeSpan lease, CancellationToken cancellationToken)
    {
        var s = Rent();
        try
        {
            var until = (time.GetUtcNow() + lease).ToUnixTimeMilliseconds();
            return ValueTask.FromResult(s.Renew.Run(claim.CallerId, claim.Key, claim.ClaimedAt.ToUnixTimeMilliseconds(), until) == 1);
        }
        finally
        {
            Return(s);
        }
    }

    public ValueTask ReleaseAsync(IdempotencyClaim claim, CancellationToken cancellationToken)
    {
        var s = Rent();
        try
        {
            s.Release.Run(claim.CallerId, claim.Key, claim.ClaimedAt.ToUnixTimeMilliseconds());
            return ValueTask.CompletedTask;
        }
        finally
        {
            Return(s);
        }
    }

    public ValueTask<IdempotencyRecord?> FindAsync(string callerId, string key, CancellationToken cancellationToken)
    {
        var s = Rent();
        try
        {
            return ValueTask.FromResult(Find(s, callerId, key, time.GetUtcNow().ToUnixTimeMilliseconds()));
        }
        finally
        {
            Return(s);
        }
    }

    public ValueTask<int> PruneAsync(int batch, CancellationToken cancellationToken)
    {
        var s = Rent();
        try
        {
            return ValueTask.FromResult(s.Prune.Run(time.GetUtcNow().ToUnixTimeMilliseconds(), batch));
        }
        finally
        {
            Return(s);
        }
    }

    private static IdempotencyRecord? Find(Statements s, string callerId, string key, long nowMs)
    {
        var find = s.Find.Bind(callerId, key, nowMs);
        using var reader = find.ExecuteReader();
        if (!reader.Read())
        {
            return null;
        }
        var state = reader.GetString(1) switch
        {
            Done => IdempotencyState.Done,
            Unreplayable => IdempotencyState.Unreplayable,
            _ => IdempotencyState.Running,
        };
        return new IdempotencyRecord(reader.GetString(0), state, reader.GetInt32(2),
            HeadersJson.Read(reader.IsDBNull(3) ? null : reader.GetString(3)), reader.IsDBNull(4) ? null : (byte[])reader.GetValue(4));
    }

    private Statements Rent()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _idle.TryTake(out var s) ? s : new Statements(database.ConnectionString);
    }

    private void Return(Statements s)
    {
        if (_disposed || _idle.Count >= MaxIdle)
        {
            s.Dispose();
            return;
        }
        _idle.Add(s);
    }

    public void Dispose()
    {
        _disposed = true;
        while (_idle.TryTake(out var s))
        {
            s.Dispose();
        }
    }

    /// <summary>One connection and its prepared statements; used by one call at a time.</summary>
    private sealed class Statements : IDisposable
    {
        private readonly SqliteConnection _connection;

        public Statements(string connectionString)
        {
            _connection = SqliteBusyTimeout.OpenWithoutFsync(connectionString);
            try
            {
                Claim = new Statement(_connection, IdempotencySql.Claim, "@caller", "@key", "@hash", "@now", "@expires", "@locked");
                Find = new Statement(_connection, """
                    SELECT "RequestHash", "State", "Status", "Headers", "Body" FROM idempotency_keys
                    WHERE "CallerId" = @caller AND "Key" = @key AND "ExpiresAt" > @now LIMIT 1
                    """, "@caller", "@key", "@now");
                // The row while the claim still holds it: a claim taken over after its lease lapsed writes nothing.
                const string Held = """ "CallerId" = @caller AND "Key" = @key AND "CreatedAt" = @at AND "State" = 'running' """;
                Complete = new Statement(_connection, $"""
                    UPDATE idempotency_keys SET "State" = @state, "Status" = @status, "Headers" = @headers, "Body" = @body WHERE {Held}
                    """, "@caller", "@key", "@at", "@state", "@status", "@headers", "@body");
                Renew = new Statement(_connection, $"""UPDATE idempotency_keys SET "LockedUntil" = @until WHERE {Held}""", "@caller", "@key", "@at", "@until");
                Release = new Statement(_connection, $"""DELETE FROM idempotency_keys WHERE {Held}""", "@caller", "@key", "@at");
                Prune = new Statement(_connection, """
                    DELETE FROM idempotency_keys WHERE rowid IN
                        (SELECT rowid FROM idempotency_keys WHERE "ExpiresAt" <= @now ORDER BY "ExpiresAt" LIMIT @batch)
                    """, "@now", "@batch");
            }
            catch
            {
                _connection.Dispose();
                throw;
            }
        }

        public Statement Claim { get; }
        public Statement Find { get; }
        public Statement Complete { get; }
        public Statement Renew { get; }
        public Statement Release { get; }
        public Statement Prune { get; }

        public void Dispose() => _connection.Dispose();
    }

    /// <summary>A command prepared once and run with new values (its statement is kept by Microsoft.Data.Sqlite).</summary>
    private sealed class Statement
    {
        private readonly SqliteCommand _command;
        private readonly SqliteParameter[] _parameters;

        public Statement(SqliteConnection connection, string sql, params string[] names)
        {
            _command = connection.CreateCommand();
            _command.CommandText = sql;
            _parameters = [.. names.Select(n => _command.Parameters.Add(new SqliteParameter(n, null)))];
            _command.Prepare();
        }

        public SqliteCommand Bind(params object?[] values)
        {
            for (var i = 0; i < values.Length; i++)
            {
                _parameters[i].Value = values[i] ?? DBNull.Value;
            }
            return _command;
        }

        public int Run(params object?[] values) => Bind(values).ExecuteNonQuery();
    }
}
