using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Dispatch;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Tasks;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Protocol.Metering;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;

namespace Lattice.Gateway.Tests.Metering;

/// <summary>
/// A data directory with a journal in it and a migrated database — a SQLite file in the directory (WAL, as the gateway
/// sets it) or a PostgreSQL database; ledgers opened on them the way the gateway opens its own, and dropped without a
/// flush to stand in for a killed process.
/// </summary>
public sealed class LedgerHarness : IAsyncDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private readonly List<UsageLedger> _ledgers = [];

    private LedgerHarness(string dataDirectory, DatabaseLocation? database)
    {
        DataDirectory = dataDirectory;
        Database = database ?? new DatabaseLocation(DatabaseProvider.Sqlite, $"Data Source={Path.Combine(DataDirectory, "lattice.db")}");
    }

    public string DataDirectory { get; }
    public DatabaseLocation Database { get; }
    public string ConnectionString => Database.ConnectionString;
    public string JournalPath => Path.Combine(DataDirectory, UsageJournal.FileName);

    /// <summary>Everything the ledgers logged, with event ids.</summary>
    public LogSink Logs { get; } = new();

    /// <summary>A harness on SQLite, or on the empty PostgreSQL database <paramref name="postgresUrl"/>.</summary>
    public static async Task<LedgerHarness> CreateAsync(string? postgresUrl = null)
    {
        var database = postgresUrl is null ? null : DatabaseLocation.Parse(postgresUrl, out _);
        var harness = new LedgerHarness(Path.Combine(Path.GetTempPath(), "lattice-ledger-" + Guid.NewGuid().ToString("N")), database);
        Directory.CreateDirectory(harness.DataDirectory);
        await using var db = harness.NewDbContext();
        await db.Database.MigrateAsync();
        if (db.Database.IsSqlite())
        {
            await db.Database.ExecuteSqlRawAsync("PRAGMA journal_mode=WAL;");
        }
        return harness;
    }

    public LatticeDbContext NewDbContext() => Database.Provider == DatabaseProvider.Postgres
        ? new PostgresLatticeDbContext(new DbContextOptionsBuilder<PostgresLatticeDbContext>().UseNpgsql(ConnectionString).Options)
        : new LatticeDbContext(new DbContextOptionsBuilder<LatticeDbContext>().UseSqlite(ConnectionString).Options);

    /// <summary>
    /// A ledger on this directory's journal (or <paramref name="journalDirectory"/>'s: another node's) and this database,
    /// recovered and (unless told otherwise) running.
    /// </summary>
    public async Task<UsageLedger> OpenAsync(MeteringOptions? options = null, bool start = true, string? connectionString = null, string? journalDirectory = null)
    {
        options ??= new MeteringOptions();
        var journal = UsageJournal.Open(journalDirectory ?? DataDirectory, options.JournalSlots, options.JournalSlotBytes, Logs.CreateLogger("journal"));
        var database = connectionString is null ? Database : Database with { ConnectionString = connectionString };
        var ledger = new UsageLedger(journal, database, options, new LoggerAdapter<UsageLedger>(Logs.CreateLogger("ledger")));
        _ledgers.Add(ledger);
        await ledger.RecoverAsync(CancellationToken.None).WaitAsync(Timeout);
        if (start)
        {
            ledger.Start();
        }
        return ledger;
    }

    /// <summary>
    /// What a <c>kill -9</c> leaves: the journal's pages as they are, nothing flushed. The ledger must not have been
    /// started (a running loop would go on committing); its queue is simply forgotten.
    /// </summary>
    public static async Task CrashAsync(UsageLedger ledger) => await ledger.DisposeAsync();

    public async Task<List<UsageRecord>> RowsAsync()
    {
        await using var db = NewDbContext();
        var rows = await db.UsageRecords.AsNoTracking().OrderBy(r => r.RequestId).ToListAsync();
        return [.. rows.Select(r => r.ToRecord())];
    }

    public static UsageRecord NewRecord(string requestId, string status = UsageStatuses.Ok, long promptTokens = 12, long completionTokens = 34) => new()
    {
        RequestId = requestId,
        // Whole milliseconds at offset zero: what the table stores, so a record read back compares equal.
        CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(1_780_000_000_123),
        WorkspaceId = "ws_ledger",
        KeyId = "key_ledger",
        Task = "chat.completions",
        Model = "lovelace:chat",
        ServedBy = ServedByKinds.Upstream,
        ServedById = "off_1",
        Capacity = CapacityClasses.Hosted,
        Stream = true,
        Status = status,
        HttpStatus = status == UsageStatuses.Interrupted ? 0 : 200,
        Usage = new Usage(promptTokens, completionTokens, promptTokens + completionTokens, CachedTokens: 2),
        CostPicoUsd = 1_234_567,
        TimeToFirstByteMicroseconds = status == UsageStatuses.Interrupted ? null : 1_500,
        DurationMicroseconds = 42_000,
    };

    /// <summary>What <see cref="SealedCall"/>'s runtime charges: $0.002 a request, $1 and $3 per million input and output tokens.</summary>
    public static readonly Prices SealedPrices = new() { PerRequest = 0.002m, InputPerMTok = 1m, OutputPerMTok = 3m };

    /// <summary>
    /// A sealed call to a personal runtime that ended with <paramref name="usage"/> reported and signed: the request, and
    /// the outcome whose usage check (the signature's verification, run off the client's path) is <paramref name="check"/>.
    /// </summary>
    public static (TaskRequest Request, DispatchOutcome Outcome) SealedCall(string requestId, Usage usage, Func<bool> check)
    {
        var body = """{"model":"lattice:personal:lat_sealed","messages":[]}"""u8.ToArray();
        var request = new TaskRequest
        {
            Task = new TaskClass(BuiltInTaskClasses.ChatCompletions, InputSchema.TryCreate("{}", out _)!, true, TaskContentKind.Json,
                "/chat/completions", "usage", true, DateTimeOffset.UnixEpoch),
            Model = "lattice:personal:lat_sealed",
            Caller = new Caller(CredentialKind.ApiKey, "ws_sealed", "key_sealed", [Scopes.Inference]),
            Input = new TaskInput
            {
                Body = body, Length = body.Length, Model = "lattice:personal:lat_sealed", Stream = false, ContentType = "application/json",
                SealedRequestId = requestId,
            },
            RequestId = requestId,
            ReceivedAt = DateTimeOffset.FromUnixTimeMilliseconds(1_780_000_000_123),
            StartTimestamp = 0,
        };
        var outcome = new DispatchOutcome
        {
            ServedBy = new Candidate(ServedByKinds.PersonalRuntime, "lat_sealed", CapacityClasses.Personal, "m", SealedPrices, null!),
            HttpStatus = 200,
            Usage = usage,
            UsageCheck = check,
        };
        return (request, outcome);
    }

    /// <summary>The provisional record the dispatch journals: status interrupted, usage so far.</summary>
    public static UsageRecord Provisional(string requestId) => NewRecord(requestId, UsageStatuses.Interrupted, promptTokens: 12, completionTokens: 0);

    public async ValueTask DisposeAsync()
    {
        foreach (var ledger in _ledgers)
        {
            await ledger.DisposeAsync();
        }
        Hosts.DeleteDataDirectory(DataDirectory);
    }

    private sealed class LoggerAdapter<T>(ILogger inner) : ILogger<T>
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => inner.BeginScope(state);
        public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            inner.Log(logLevel, eventId, state, exception, formatter);
    }
}

/// <summary>Log lines with their event ids; a test waits for an event instead of sleeping.</summary>
public sealed class LogSink
{
    private readonly Lock _gate = new();
    private readonly List<(int EventId, string Message)> _entries = [];
    private readonly List<(int EventId, TaskCompletionSource Seen)> _waiters = [];

    public IReadOnlyList<(int EventId, string Message)> Entries
    {
        get
        {
            lock (_gate)
            {
                return [.. _entries];
            }
        }
    }

    public ILogger CreateLogger(string category) => new Logger(this);

    /// <summary>Completes when an event with <paramref name="eventId"/> has been logged (at once if it already was).</summary>
    public Task WaitForAsync(int eventId)
    {
        lock (_gate)
        {
            if (_entries.Any(e => e.EventId == eventId))
            {
                return Task.CompletedTask;
            }
            var seen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((eventId, seen));
            return seen.Task;
        }
    }

    private void Add(int eventId, string message)
    {
        lock (_gate)
        {
            _entries.Add((eventId, message));
            foreach (var waiter in _waiters.Where(w => w.EventId == eventId))
            {
                waiter.Seen.TrySetResult();
            }
        }
    }

    private sealed class Logger(LogSink sink) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            sink.Add(eventId.Id, formatter(state, exception));
    }
}
