using System.Runtime.InteropServices;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace Lattice.Gateway.Metering;

/// <summary>
/// The ledger on SQLite: prepared multi-row INSERTs (up to <see cref="RowsPerStatement"/> rows each) bound and stepped
/// through SQLite's own API, in one transaction per batch.
/// </summary>
internal sealed class SqliteLedgerStore(string connectionString) : ILedgerStore
{
    /// <summary>Parameters per row: the columns of <c>usage_records</c>, in the journal encoding's order.</summary>
    private const int Columns = 26;

    /// <summary>
    /// Rows per execution: one step, one reset and one statement start for this many rows instead of one each per row.
    /// 32 × 26 parameters stays far under SQLite's limit (32,766).
    /// </summary>
    internal const int RowsPerStatement = 32;

    private const string InsertHead = """
        INSERT INTO usage_records (RequestId, CreatedAt, WorkspaceId, KeyId, AppId, UserId, GrantId, Task, Model, ServedBy,
            ServedById, Capacity, Stream, Status, HttpStatus, PromptTokens, CompletionTokens, TotalTokens, CachedTokens,
            AudioMilliseconds, Estimated, CostPicoUsd, TimeToFirstByteMicroseconds, DurationMicroseconds, Prices, Surface)
        VALUES
        """;

    /// <summary>The INSERT of <paramref name="rows"/> rows; parameter <c>row × 26 + n</c> is column n of that row.</summary>
    internal static string InsertSql(int rows)
    {
        var row = "(" + string.Join(", ", Enumerable.Repeat("?", Columns)) + ")";
        return InsertHead + " " + string.Join(",\n    ", Enumerable.Repeat(row, rows)) + "\nON CONFLICT (RequestId) DO NOTHING";
    }

    public ValueTask<ILedgerConnection> OpenAsync(CancellationToken cancellationToken) =>
        ValueTask.FromResult<ILedgerConnection>(Connection.Open(connectionString));

    /// <summary>
    /// The ledger's own connection, opened through SQLite's API rather than <see cref="SqliteConnection"/>: in
    /// multi-thread mode (<c>SQLITE_OPEN_NOMUTEX</c>), since only the commit loop's thread uses it, so that SQLite takes
    /// no connection mutex around each of a row's 26 binds and its step (serialized mode, the library's default, did:
    /// a lock and an unlock each). The same pragmas as <see cref="Persistence.SqliteBusyTimeout.OpenWithoutFsync"/>: SQLite waits out
    /// another writer's lock itself (<c>busy_timeout</c>), and a commit does not fsync (<c>synchronous=NORMAL</c>) — a
    /// committed batch survives the process dying, as the journal does; only a power cut could take back the newest
    /// batches, which the journal (never forced to disk either) would not have kept.
    /// </summary>
    private sealed class Connection : ILedgerConnection
    {
        private readonly sqlite3 _db;
        // By row count, prepared when first needed: a batch of n rows runs n / 32 full statements and one of n % 32 rows.
        private readonly InsertStatement?[] _inserts = new InsertStatement?[RowsPerStatement + 1];

        private Connection(sqlite3 db) => _db = db;

        public static Connection Open(string connectionString)
        {
            var path = new SqliteConnectionStringBuilder(connectionString).DataSource;
            // The native library as Microsoft.Data.Sqlite loads it (idempotent; done already once any SqliteConnection was made).
            SQLitePCL.Batteries_V2.Init();
            var rc = raw.sqlite3_open_v2(path, out var db, raw.SQLITE_OPEN_READWRITE | raw.SQLITE_OPEN_CREATE | raw.SQLITE_OPEN_NOMUTEX, null);
            try
            {
                SqliteException.ThrowExceptionForRC(rc, db);
                Exec(db, Persistence.SqliteBusyTimeout.StorePragmas);
                return new Connection(db);
            }
            catch
            {
                db.Dispose();
                throw;
            }
        }

        public ValueTask CommitAsync(IReadOnlyList<UsageRecord> records, CancellationToken cancellationToken)
        {
            // Synchronous on purpose: SQLite's calls do not wait on a network, and the loop is the ledger's only writer.
            InTransaction(() =>
            {
                for (var at = 0; at < records.Count;)
                {
                    var rows = Math.Min(RowsPerStatement, records.Count - at);
                    var insert = Insert(rows);
                    for (var row = 0; row < rows; row++)
                    {
                        insert.Bind(row, records[at + row]);
                    }
                    insert.Execute();
                    at += rows;
                }
            });
            return ValueTask.CompletedTask;
        }

        public ValueTask CommitAsync(LedgerBatch batch, CancellationToken cancellationToken)
        {
            InTransaction(() =>
            {
                for (var at = 0; at < batch.Count;)
                {
                    var rows = Math.Min(RowsPerStatement, batch.Count - at);
                    var insert = Insert(rows);
                    for (var row = 0; row < rows; row++)
                    {
                        if (batch.Record(at + row) is { } record)
                        {
                            insert.Bind(row, record);
                        }
                        else
                        {
                            insert.Bind(row, batch.Encoded(at + row));
                        }
                    }
                    insert.Execute();
                    at += rows;
                }
            });
            return ValueTask.CompletedTask;
        }

        /// <summary>Runs <paramref name="inserts"/> in one write transaction (taken at its start), committed, or rolled back if it throws.</summary>
        private void InTransaction(Action inserts)
        {
            Exec(_db, "BEGIN IMMEDIATE;");
            try
            {
                inserts();
                Exec(_db, "COMMIT;");
            }
            catch
            {
                if (raw.sqlite3_get_autocommit(_db) == 0)
                {
                    raw.sqlite3_exec(_db, "ROLLBACK;");
                }
                throw;
            }
        }

        private static void Exec(sqlite3 db, string sql) => SqliteException.ThrowExceptionForRC(raw.sqlite3_exec(db, sql), db);

        private InsertStatement Insert(int rows) => _inserts[rows] ??= new InsertStatement(_db, rows);

        public void Dispose()
        {
            foreach (var insert in _inserts)
            {
                insert?.Dispose();
            }
            _db.Dispose();
        }
    }

    /// <summary>
    /// A prepared INSERT of a fixed number of rows, bound and stepped through SQLite's own API. Why not
    /// <see cref="SqliteCommand"/>: its per-execution work (a data reader per call, every parameter looked up by name,
    /// boxed values) cost as much CPU as SQLite's insert itself, and the commit loop shares two cores with the requests it
    /// records. A record object's strings are copied by SQLite (<c>SQLITE_TRANSIENT</c>); a journal slot's are read
    /// where they are (<c>SQLITE_STATIC</c>), since no slot of a batch changes or is freed before the batch has committed —
    /// so rows can be bound one after another before the one step either way.
    /// </summary>
    private sealed unsafe class InsertStatement : IDisposable
    {
        private readonly sqlite3 _db;
        private readonly sqlite3_stmt _statement;
        // The statement's sqlite3_stmt*, held (a reference on its SafeHandle) until Dispose: the slot path binds through it.
        private readonly nint _handle;
        private readonly bool _referenced;

        public InsertStatement(sqlite3 db, int rows)
        {
            _db = db;
            var rc = raw.sqlite3_prepare_v2(db, InsertSql(rows), out _statement);
            SqliteException.ThrowExceptionForRC(rc, db);
            _statement.DangerousAddRef(ref _referenced);
            _handle = _statement.DangerousGetHandle();
        }

        /// <summary>Binds row <paramref name="row"/> the way EF Core stores <see cref="UsageRecordEntity"/>: Unix milliseconds, booleans as 0/1.</summary>
        public void Bind(int row, UsageRecord r)
        {
            var s = _statement;
            var p = row * Columns;
            Text(p + 1, r.RequestId);
            Check(raw.sqlite3_bind_int64(s, p + 2, r.CreatedAt.ToUnixTimeMilliseconds()));
            Text(p + 3, r.WorkspaceId);
            Text(p + 4, r.KeyId);
            Text(p + 5, r.AppId);
            Text(p + 6, r.UserId);
            Text(p + 7, r.GrantId);
            Text(p + 8, r.Task);
            Text(p + 9, r.Model);
            Text(p + 10, r.ServedBy);
            Text(p + 11, r.ServedById);
            Text(p + 12, r.Capacity);
            Check(raw.sqlite3_bind_int64(s, p + 13, r.Stream ? 1 : 0));
            Text(p + 14, r.Status);
            Check(raw.sqlite3_bind_int64(s, p + 15, r.HttpStatus));
            Check(raw.sqlite3_bind_int64(s, p + 16, r.Usage.PromptTokens));
            Check(raw.sqlite3_bind_int64(s, p + 17, r.Usage.CompletionTokens));
            Check(raw.sqlite3_bind_int64(s, p + 18, r.Usage.TotalTokens));
            Check(raw.sqlite3_bind_int64(s, p + 19, r.Usage.CachedTokens));
            Check(raw.sqlite3_bind_int64(s, p + 20, r.Usage.AudioMilliseconds));
            Check(raw.sqlite3_bind_int64(s, p + 21, r.Usage.Estimated ? 1 : 0));
            Check(raw.sqlite3_bind_int64(s, p + 22, r.CostPicoUsd));
            Check(r.TimeToFirstByteMicroseconds is { } ttfb ? raw.sqlite3_bind_int64(s, p + 23, ttfb) : raw.sqlite3_bind_null(s, p + 23));
            Check(raw.sqlite3_bind_int64(s, p + 24, r.DurationMicroseconds));
            Text(p + 25, r.Prices);
            Text(p + 26, r.Surface);
        }

        /// <summary>
        /// Binds row <paramref name="row"/> from a record in the journal's encoding (<see cref="UsageRecordCodec"/>), whose
        /// fields come in the parameters' order: its strings are bound as the UTF-8 they already are, so SQLite copies them
        /// without transcoding and no object is built.
        /// </summary>
        public void Bind(int row, ReadOnlySpan<byte> encoded)
        {
            var p = row * Columns;
            var r = new UsageRecordCodec.Reader(encoded);
            Utf8(p + 1, ref r);
            var ticks = r.Int64();
            r.Int16();
            // As DateTimeOffset.ToUnixTimeMilliseconds counts.
            Check(SqliteNativeBind.Int64(_handle, p + 2, ticks / TimeSpan.TicksPerMillisecond - DateTime.UnixEpoch.Ticks / TimeSpan.TicksPerMillisecond));
            for (var i = 3; i <= 12; i++)
            {
                // Workspace, key, app, user, grant, task, model, served by, served-by id, capacity.
                Utf8(p + i, ref r);
            }
            Check(SqliteNativeBind.Int64(_handle, p + 13, r.Byte()));
            Utf8(p + 14, ref r);
            Check(SqliteNativeBind.Int64(_handle, p + 15, r.Int32()));
            for (var i = 16; i <= 20; i++)
            {
                // Prompt, completion, total, cached tokens, audio milliseconds.
                Check(SqliteNativeBind.Int64(_handle, p + i, r.Int64()));
            }
            Check(SqliteNativeBind.Int64(_handle, p + 21, r.Byte()));
            Check(SqliteNativeBind.Int64(_handle, p + 22, r.Int64()));
            var ttfb = r.Int64();
            Check(ttfb == long.MinValue ? SqliteNativeBind.Null(_handle, p + 23) : SqliteNativeBind.Int64(_handle, p + 23, ttfb));
            Check(SqliteNativeBind.Int64(_handle, p + 24, r.Int64()));
            Utf8(p + 25, ref r);
            Utf8(p + 26, ref r);
            if (r.Failed)
            {
                throw new InvalidDataException("A journal slot does not hold an intact record.");
            }
        }

        /// <summary>Inserts the bound rows (each <c>ON CONFLICT DO NOTHING</c>) and readies the statement for the next ones.</summary>
        public void Execute()
        {
            try
            {
                var rc = raw.sqlite3_step(_statement);
                if (rc != raw.SQLITE_DONE)
                {
                    SqliteException.ThrowExceptionForRC(rc, _db);
                }
            }
            finally
            {
                raw.sqlite3_reset(_statement);
            }
        }

        private void Utf8(int index, ref UsageRecordCodec.Reader reader)
        {
            if (!reader.Utf8(out var value))
            {
                Check(SqliteNativeBind.Null(_handle, index));
            }
            else if (value.IsEmpty)
            {
                // An empty span has no address, and a null pointer would bind NULL.
                Text(index, string.Empty);
            }
            else
            {
                // SQLITE_STATIC: the bytes are the journal's mapping, which holds them unchanged until this batch has
                // committed and freed its slots — past the step that reads them. SQLite takes no copy of its own (with
                // SQLITE_TRANSIENT, a malloc, a copy and a free per text column).
                fixed (byte* utf8 = value)
                {
                    Check(SqliteNativeBind.Text(_handle, index, utf8, value.Length, SqliteNativeBind.Static));
                }
            }
        }

        private void Text(int index, string? value) =>
            Check(value is null ? raw.sqlite3_bind_null(_statement, index) : raw.sqlite3_bind_text16(_statement, index, value));

        private void Check(int rc)
        {
            if (rc != raw.SQLITE_OK)
            {
                SqliteException.ThrowExceptionForRC(rc, _db);
            }
        }

        public void Dispose()
        {
            if (_referenced)
            {
                _statement.DangerousRelease();
            }
            _statement.Dispose();
        }
    }
}

/// <summary>
/// The three bind calls of the commit loop's hot path (a journaled record's row, 26 calls), straight into the native
/// library SQLitePCL.raw's provider imports — the same name, <c>e_sqlite3</c>, resolved the same way, so the same loaded
/// library — on the statement's raw pointer. What this saves per call is the provider's interface dispatch and the
/// marshalling of the statement's SafeHandle (a reference taken and released around every call).
/// </summary>
/// <remarks>
/// The three are imported with <see cref="System.Runtime.InteropServices.SuppressGCTransitionAttribute"/>: no switch of the
/// thread to preemptive GC mode and back around each of a row's 26 calls (the ledger bench's CPU per record fell from
/// 4.4–5.2 to 4.0–4.3 µs, docs/benchmarks.md). That is safe for these calls only: each returns within a microsecond,
/// takes no connection mutex (the connection is <c>SQLITE_OPEN_NOMUTEX</c>) and never calls back into managed code (no
/// SQLite log callback is configured, and a text bound <c>SQLITE_STATIC</c> has no destructor to call). The most one does
/// besides setting the parameter is free SQLite's own copy of the value bound before (text a record object bound
/// <c>SQLITE_TRANSIENT</c>), under SQLite's allocator lock for the length of a <c>free</c>. <c>sqlite3_step</c>, which
/// does I/O, keeps the normal transition.
/// </remarks>
internal static unsafe partial class SqliteNativeBind
{
    private const string Library = "e_sqlite3";

    /// <summary><c>SQLITE_TRANSIENT</c>: SQLite copies the bytes before the call returns.</summary>
    public static readonly nint Transient = -1;

    /// <summary><c>SQLITE_STATIC</c>: SQLite reads the bytes where they are, up to the statement's next reset or rebind.</summary>
    public static readonly nint Static = 0;

    [LibraryImport(Library, EntryPoint = "sqlite3_bind_int64")]
    [SuppressGCTransition]
    public static partial int Int64(nint statement, int index, long value);

    [LibraryImport(Library, EntryPoint = "sqlite3_bind_null")]
    [SuppressGCTransition]
    public static partial int Null(nint statement, int index);

    [LibraryImport(Library, EntryPoint = "sqlite3_bind_text")]
    [SuppressGCTransition]
    public static partial int Text(nint statement, int index, byte* utf8, int bytes, nint destructor);
}
