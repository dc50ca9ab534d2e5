using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace Lattice.Gateway.Metering;

/// <summary>
/// The ledger on SQLite: one prepared INSERT bound and stepped through SQLite's own API per row, in one transaction per
/// batch.
/// </summary>
internal sealed class SqliteLedgerStore(string connectionString) : ILedgerStore
{
    private const string InsertSql = """
        INSERT INTO usage_records (RequestId, CreatedAt, WorkspaceId, KeyId, AppId, UserId, GrantId, Task, Model, ServedBy,
            ServedById, Capacity, Stream, Status, HttpStatus, PromptTokens, CompletionTokens, TotalTokens, CachedTokens,
            AudioMilliseconds, Estimated, CostPicoUsd, TimeToFirstByteMicroseconds, DurationMicroseconds, Prices, Surface)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)
        ON CONFLICT (RequestId) DO NOTHING
        """;

    public ValueTask<ILedgerConnection> OpenAsync(CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(connectionString);
        try
        {
            connection.Open();
            RelaxSync(connection);
            Persistence.SqliteBusyTimeout.Apply(connection);
            return ValueTask.FromResult<ILedgerConnection>(new Connection(connection));
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The ledger's connection does not fsync each transaction (WAL with <c>synchronous=NORMAL</c>): a committed batch
    /// survives the process dying, as the journal does, and only a power cut could take back the newest batches — which
    /// the journal (never forced to disk either) would not have kept. What it saves is a disk flush per batch.
    /// </summary>
    private static void RelaxSync(SqliteConnection connection)
    {
        using var pragma = connection.CreateCommand();
        pragma.CommandText = "PRAGMA synchronous=NORMAL;";
        pragma.ExecuteNonQuery();
    }

    private sealed class Connection(SqliteConnection connection) : ILedgerConnection
    {
        private readonly InsertStatement _insert = new(connection);

        public ValueTask CommitAsync(IReadOnlyList<UsageRecord> records, CancellationToken cancellationToken)
        {
            // Synchronous on purpose: SQLite's calls do not wait on a network, and the loop is the ledger's only writer.
            using var transaction = connection.BeginTransaction();
            for (var i = 0; i < records.Count; i++)
            {
                _insert.Insert(records[i]);
            }
            transaction.Commit();
            return ValueTask.CompletedTask;
        }

        public ValueTask CommitAsync(LedgerBatch batch, CancellationToken cancellationToken)
        {
            using var transaction = connection.BeginTransaction();
            for (var i = 0; i < batch.Count; i++)
            {
                if (batch.Record(i) is { } record)
                {
                    _insert.Insert(record);
                }
                else
                {
                    _insert.Insert(batch.Encoded(i));
                }
            }
            transaction.Commit();
            return ValueTask.CompletedTask;
        }

        public void Dispose()
        {
            _insert.Dispose();
            connection.Dispose();
        }
    }

    /// <summary>
    /// The prepared INSERT, bound and stepped through SQLite's own API. Why not <see cref="SqliteCommand"/>: its
    /// per-execution work (a data reader per call, every parameter looked up by name, boxed values) cost as much CPU as
    /// SQLite's insert itself, and the commit loop shares two cores with the requests it records. Transactions still go
    /// through <see cref="SqliteConnection"/>, whose busy handling waits out another writer's lock.
    /// </summary>
    private sealed class InsertStatement : IDisposable
    {
        private readonly SqliteConnection _connection;
        private readonly sqlite3_stmt _statement;

        public InsertStatement(SqliteConnection connection)
        {
            _connection = connection;
            var rc = raw.sqlite3_prepare_v2(connection.Handle, InsertSql, out _statement);
            SqliteException.ThrowExceptionForRC(rc, connection.Handle);
        }

        /// <summary>Inserts a record the way EF Core stores <see cref="UsageRecordEntity"/>: Unix milliseconds, booleans as 0/1.</summary>
        public void Insert(UsageRecord r)
        {
            var s = _statement;
            try
            {
                Text(1, r.RequestId);
                Check(raw.sqlite3_bind_int64(s, 2, r.CreatedAt.ToUnixTimeMilliseconds()));
                Text(3, r.WorkspaceId);
                Text(4, r.KeyId);
                Text(5, r.AppId);
                Text(6, r.UserId);
                Text(7, r.GrantId);
                Text(8, r.Task);
                Text(9, r.Model);
                Text(10, r.ServedBy);
                Text(11, r.ServedById);
                Text(12, r.Capacity);
                Check(raw.sqlite3_bind_int64(s, 13, r.Stream ? 1 : 0));
                Text(14, r.Status);
                Check(raw.sqlite3_bind_int64(s, 15, r.HttpStatus));
                Check(raw.sqlite3_bind_int64(s, 16, r.Usage.PromptTokens));
                Check(raw.sqlite3_bind_int64(s, 17, r.Usage.CompletionTokens));
                Check(raw.sqlite3_bind_int64(s, 18, r.Usage.TotalTokens));
                Check(raw.sqlite3_bind_int64(s, 19, r.Usage.CachedTokens));
                Check(raw.sqlite3_bind_int64(s, 20, r.Usage.AudioMilliseconds));
                Check(raw.sqlite3_bind_int64(s, 21, r.Usage.Estimated ? 1 : 0));
                Check(raw.sqlite3_bind_int64(s, 22, r.CostPicoUsd));
                Check(r.TimeToFirstByteMicroseconds is { } ttfb ? raw.sqlite3_bind_int64(s, 23, ttfb) : raw.sqlite3_bind_null(s, 23));
                Check(raw.sqlite3_bind_int64(s, 24, r.DurationMicroseconds));
                Text(25, r.Prices);
                Text(26, r.Surface);
                var rc = raw.sqlite3_step(s);
                if (rc != raw.SQLITE_DONE)
                {
                    SqliteException.ThrowExceptionForRC(rc, _connection.Handle);
                }
            }
            finally
            {
                raw.sqlite3_reset(s);
            }
        }

        /// <summary>
        /// Inserts a record in the journal's encoding (<see cref="UsageRecordCodec"/>), whose fields come in the
        /// parameters' order: its strings are bound as the UTF-8 they already are, so SQLite copies them without
        /// transcoding and no object is built.
        /// </summary>
        public void Insert(ReadOnlySpan<byte> encoded)
        {
            var s = _statement;
            var r = new UsageRecordCodec.Reader(encoded);
            try
            {
                Utf8(1, ref r);
                var ticks = r.Int64();
                r.Int16();
                // As DateTimeOffset.ToUnixTimeMilliseconds counts.
                Check(raw.sqlite3_bind_int64(s, 2, ticks / TimeSpan.TicksPerMillisecond - DateTime.UnixEpoch.Ticks / TimeSpan.TicksPerMillisecond));
                for (var i = 3; i <= 12; i++)
                {
                    // Workspace, key, app, user, grant, task, model, served by, served-by id, capacity.
                    Utf8(i, ref r);
                }
                Check(raw.sqlite3_bind_int64(s, 13, r.Byte()));
                Utf8(14, ref r);
                Check(raw.sqlite3_bind_int64(s, 15, r.Int32()));
                for (var i = 16; i <= 20; i++)
                {
                    // Prompt, completion, total, cached tokens, audio milliseconds.
                    Check(raw.sqlite3_bind_int64(s, i, r.Int64()));
                }
                Check(raw.sqlite3_bind_int64(s, 21, r.Byte()));
                Check(raw.sqlite3_bind_int64(s, 22, r.Int64()));
                var ttfb = r.Int64();
                Check(ttfb == long.MinValue ? raw.sqlite3_bind_null(s, 23) : raw.sqlite3_bind_int64(s, 23, ttfb));
                Check(raw.sqlite3_bind_int64(s, 24, r.Int64()));
                Utf8(25, ref r);
                Utf8(26, ref r);
                if (r.Failed)
                {
                    throw new InvalidDataException("A journal slot does not hold an intact record.");
                }
                var rc = raw.sqlite3_step(s);
                if (rc != raw.SQLITE_DONE)
                {
                    SqliteException.ThrowExceptionForRC(rc, _connection.Handle);
                }
            }
            finally
            {
                raw.sqlite3_reset(s);
            }
        }

        private void Utf8(int index, ref UsageRecordCodec.Reader reader)
        {
            if (!reader.Utf8(out var value))
            {
                Check(raw.sqlite3_bind_null(_statement, index));
            }
            else if (value.IsEmpty)
            {
                // An empty span has no address, and a null pointer would bind NULL.
                Text(index, string.Empty);
            }
            else
            {
                Check(raw.sqlite3_bind_text(_statement, index, value));
            }
        }

        private void Text(int index, string? value) =>
            Check(value is null ? raw.sqlite3_bind_null(_statement, index) : raw.sqlite3_bind_text16(_statement, index, value));

        private void Check(int rc)
        {
            if (rc != raw.SQLITE_OK)
            {
                SqliteException.ThrowExceptionForRC(rc, _connection.Handle);
            }
        }

        public void Dispose() => _statement.Dispose();
    }
}
