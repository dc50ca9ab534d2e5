using System.Threading.Channels;
using Lattice.Gateway.Persistence;

namespace Lattice.Gateway.Metering;

/// <summary>
/// Writes one usage record per request id, exactly once, off the request path: the request journals its record in
/// <see cref="UsageJournal"/> (a store into shared memory, no system call) and queues it; one background loop commits
/// whatever has queued in one transaction (group commit), then frees the journal slots. The database is SQLite
/// (<see cref="SqliteLedgerStore"/>) or PostgreSQL (<see cref="PostgresLedgerStore"/>).
/// </summary>
/// <remarks>
/// Durability: a record is in the journal from the moment <see cref="Complete"/> or <see cref="Record"/> returns, so a
/// <c>kill -9</c> loses nothing; the next start commits what the journal holds (<see cref="RecoverAsync"/>), and a request
/// that was in flight appears once, as <c>interrupted</c> with what was known at dispatch. Exactly once: the table's key
/// is the request id and every insert is <c>ON CONFLICT DO NOTHING</c>, so committing a record again after a crash
/// between the commit and the freeing of its slot changes nothing.
///
/// Writes go through ADO.NET on a connection of our own rather than EF Core: a prepared statement is several times
/// faster than change tracking, and the loop is this node's only writer of the table.
/// </remarks>
public sealed partial class UsageLedger : IAsyncDisposable, IDisposable
{
    private static readonly TimeSpan FirstRetryDelay = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan MaxRetryDelay = TimeSpan.FromSeconds(2);

    private readonly UsageJournal _journal;
    private readonly ILedgerStore _store;
    private readonly MeteringOptions _options;
    private readonly ILogger _logger;
    private readonly Channel<Queued> _queue = Channel.CreateUnbounded<Queued>(new UnboundedChannelOptions { SingleReader = true });
    /// <summary>Cancelled when a stop runs out of time: the loop stops retrying and leaves what it holds in the journal.</summary>
    private readonly CancellationTokenSource _abandon = new();
    private readonly Lock _gate = new();
    private Task? _loop;
    private long _committed;
    private int _pending;
    private long _unjournaled;
    // Completions made off the caller's path (CompleteOffPath) not yet handed to Complete; a stop waits for them.
    private int _offPath;
    private TaskCompletionSource? _offPathDone;
    // Set while the commit loop lingers for a batch to fill; FlushAsync completes it to end the wait.
    private TaskCompletionSource? _lingerWake;
    private int _disposed;

    /// <summary>A ledger on a SQLite database (<paramref name="sqliteConnectionString"/>).</summary>
    public UsageLedger(UsageJournal journal, string sqliteConnectionString, MeteringOptions options, ILogger<UsageLedger> logger)
        : this(journal, new DatabaseLocation(DatabaseProvider.Sqlite, sqliteConnectionString), options, logger)
    {
    }

    public UsageLedger(UsageJournal journal, DatabaseLocation database, MeteringOptions options, ILogger<UsageLedger> logger)
    {
        ArgumentNullException.ThrowIfNull(database);
        _journal = journal;
        _store = LedgerStores.For(database);
        _options = options;
        _logger = logger;
    }

    /// <summary>Records committed to the database since start (a record replayed onto an existing row counts too).</summary>
    public long Committed => Interlocked.Read(ref _committed);

    /// <summary>Records queued and not yet committed.</summary>
    public int Pending => Volatile.Read(ref _pending);

    /// <summary>Records that went without a journal slot (none free, or too large for one): lost if the gateway dies before their commit.</summary>
    public long Unjournaled => Interlocked.Read(ref _unjournaled);

    public UsageJournal Journal => _journal;

    /// <summary>
    /// Called when a request is dispatched: journals <paramref name="provisional"/> (status <c>interrupted</c>, the usage
    /// known so far), which is what the ledger records if the gateway dies before <see cref="Complete"/>. Never blocks.
    /// </summary>
    public LedgerEntry Begin(UsageRecord provisional)
    {
        ArgumentNullException.ThrowIfNull(provisional);
        if (!_journal.TryBegin(provisional, out var slot))
        {
            // The request goes on: its record is still committed normally, only not crash-proof until then.
            Interlocked.Increment(ref _unjournaled);
        }
        return new LedgerEntry(provisional, slot);
    }

    /// <summary>
    /// Records a dispatched request's final record: marks its journal slot finished and queues it for the next group
    /// commit. A second call for the same entry is ignored. Never blocks.
    /// </summary>
    public void Complete(LedgerEntry entry, UsageRecord final)
    {
        ArgumentNullException.ThrowIfNull(entry);
        ArgumentNullException.ThrowIfNull(final);
        if (!string.Equals(entry.RequestId, final.RequestId, StringComparison.Ordinal))
        {
            throw new ArgumentException($"The final record is for request {final.RequestId}, the entry for {entry.RequestId}.", nameof(final));
        }
        if (!entry.TryMarkCompleted())
        {
            return;
        }
        if (entry.IsJournaled && _journal.TryFinish(entry.Slot, final))
        {
            // The slot holds the record until its commit reads it from there: nothing of it stays on the heap.
            Enqueue(null, entry.Slot);
            return;
        }
        if (entry.IsJournaled)
        {
            // Too large to sit beside the provisional record: the slot keeps that one (a crash records it as interrupted)
            // and is freed with this record's commit.
            Interlocked.Increment(ref _unjournaled);
        }
        Enqueue(final, entry.Slot);
    }

    /// <summary>
    /// <see cref="Complete"/> with the final record <paramref name="finish"/> makes from <paramref name="state"/> on the
    /// thread pool: for work too slow for the caller's path (a sealed answer's usage signature is checked before its
    /// record is written). A graceful stop waits for it before its last commit (<see cref="StopAsync"/>), so the record is
    /// committed as it ended, not left as the journal's <c>interrupted</c>. Never blocks.
    /// </summary>
    public void CompleteOffPath<TState>(LedgerEntry entry, TState state, Func<TState, UsageRecord> finish)
    {
        ArgumentNullException.ThrowIfNull(entry);
        ArgumentNullException.ThrowIfNull(finish);
        Interlocked.Increment(ref _offPath);
        ThreadPool.UnsafeQueueUserWorkItem(static work => work.Ledger.FinishOffPath(work.Entry, work.State, work.Finish),
            (Ledger: this, Entry: entry, State: state, Finish: finish), preferLocal: false);
    }

    private void FinishOffPath<TState>(LedgerEntry entry, TState state, Func<TState, UsageRecord> finish)
    {
        try
        {
            Complete(entry, finish(state));
        }
        finally
        {
            // Interlocked: a full fence, paired with the one in WaitOffPathAsync, so a stop never misses the last one.
            if (Interlocked.Decrement(ref _offPath) == 0)
            {
                Volatile.Read(ref _offPathDone)?.TrySetResult();
            }
        }
    }

    /// <summary>Completions under way off the caller's path (<see cref="CompleteOffPath"/>).</summary>
    public int OffPath => Volatile.Read(ref _offPath);

    /// <summary>Waits for the completions under way off the caller's path, until <paramref name="cancellationToken"/> fires.</summary>
    private async Task WaitOffPathAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _offPath) == 0)
        {
            return;
        }
        Interlocked.CompareExchange(ref _offPathDone, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously), null);
        var done = _offPathDone!;
        // Published before this second look: the last one to finish either sees it or finished before the look.
        var count = Interlocked.CompareExchange(ref _offPath, 0, 0);
        if (count == 0)
        {
            return;
        }
        Log.WaitingOffPath(_logger, count);
        try
        {
            await done.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Out of time: what finishes later is journaled (the next start commits it) while the journal is open.
            Log.OffPathLeft(_logger, Volatile.Read(ref _offPath));
        }
    }

    /// <summary>Records a request that ended before dispatch (Begin and Complete in one). Never blocks.</summary>
    public void Record(UsageRecord final)
    {
        ArgumentNullException.ThrowIfNull(final);
        if (_journal.TryRecord(final, out var slot))
        {
            Enqueue(null, slot);
            return;
        }
        Interlocked.Increment(ref _unjournaled);
        Enqueue(final, slot);
    }

    /// <summary>Completes when every record queued before the call is committed.</summary>
    /// <remarks>Needs the commit loop (<see cref="Start"/>); after a stop it completes at once.</remarks>
    public Task FlushAsync(CancellationToken cancellationToken = default)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_queue.Writer.TryWrite(new Queued(null, -1, done)))
        {
            // Stopped: the loop drained the queue on its way out; what came later was committed at once or is journaled.
            return Task.CompletedTask;
        }
        // A batch lingering for company commits now.
        Volatile.Read(ref _lingerWake)?.TrySetResult();
        return done.Task.WaitAsync(cancellationToken);
    }

    /// <param name="record">Null when the slot holds the final record.</param>
    private void Enqueue(UsageRecord? record, int slot)
    {
        Interlocked.Increment(ref _pending);
        if (_queue.Writer.TryWrite(new Queued(record, slot, null)))
        {
            return;
        }
        // The ledger has stopped (a request outlived the graceful stop). A journaled record waits for the next start;
        // one without a slot is written now, on this thread, rather than lost.
        Interlocked.Decrement(ref _pending);
        if (slot < 0)
        {
            CommitLate(record!);
        }
    }

    /// <summary>Starts the group-commit loop (once). The database must be migrated and <see cref="RecoverAsync"/> done.</summary>
    public void Start()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            _loop ??= Task.Run(RunAsync);
        }
    }

    /// <summary>
    /// Waits for the records still being finished off the caller's path (<see cref="CompleteOffPath"/>), then stops taking
    /// records into the queue and returns once everything queued is committed. If <paramref name="cancellationToken"/>
    /// fires first (a database that stays locked), the loop gives up and what it held stays in the journal for the next start.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        await WaitOffPathAsync(cancellationToken).ConfigureAwait(false);
        _queue.Writer.TryComplete();
        Task? loop;
        lock (_gate)
        {
            loop = _loop;
        }
        if (loop is null)
        {
            return;
        }
        using (cancellationToken.Register(static state => ((CancellationTokenSource)state!).Cancel(), _abandon))
        {
            await loop.ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Commits what an earlier process left in the journal: finished records as they are, requests that were in flight
    /// as their provisional record with status <c>interrupted</c>; then frees those slots. Run once at start-up, after the
    /// migration and before the server serves; records of this process are never touched, so a second call is harmless.
    /// </summary>
    public async Task RecoverAsync(CancellationToken cancellationToken)
    {
        var found = _journal.TakeLeftOvers();
        if (found.Count == 0)
        {
            return;
        }
        using var connection = await _store.OpenAsync(cancellationToken).ConfigureAwait(false);
        var interrupted = 0;
        foreach (var chunk in found.Chunk(_options.MaxBatch))
        {
            cancellationToken.ThrowIfCancellationRequested();
            await connection.CommitAsync([.. chunk.Select(item => item.Record)], cancellationToken).ConfigureAwait(false);
            // Only after the commit: a crash before this line replays the same rows, which DO NOTHING ignores.
            foreach (var item in chunk)
            {
                interrupted += item.Finished ? 0 : 1;
                _journal.Free(item.Slot);
            }
        }
        Log.Recovered(_logger, found.Count, found.Count - interrupted, interrupted, _journal.Path);
    }

    private async Task RunAsync()
    {
        var reader = _queue.Reader;
        var batch = new List<Queued>(_options.MaxBatch);
        var flushes = new List<TaskCompletionSource>();
        var records = new LedgerBatch(_journal, _options.MaxBatch);
        ILedgerConnection? connection = null;
        try
        {
            while (await reader.WaitToReadAsync().ConfigureAwait(false))
            {
                Take(reader, batch, flushes);
                if (batch.Count > 0 && batch.Count < _options.MaxBatch && flushes.Count == 0 && _options.MaxBatchDelay > TimeSpan.Zero)
                {
                    // Linger briefly so that the records of requests ending together share one transaction (and one fsync).
                    // One timer per batch, not a wake-up per record: requests ending meanwhile only queue. Real time on
                    // purpose: this is a throughput knob, and a test's fake clock must not hold records back (FlushAsync
                    // ends the wait at once).
                    var wake = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    Volatile.Write(ref _lingerWake, wake);
                    if (!reader.TryPeek(out var next) || next.Flush is null)
                    {
                        await Task.WhenAny(Task.Delay(_options.MaxBatchDelay), wake.Task).ConfigureAwait(false);
                    }
                    Volatile.Write(ref _lingerWake, null);
                    Take(reader, batch, flushes);
                }

                if (batch.Count > 0)
                {
                    var committed = false;
                    for (var delay = FirstRetryDelay; ; delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxRetryDelay.Ticks)))
                    {
                        try
                        {
                            connection ??= await _store.OpenAsync(_abandon.Token).ConfigureAwait(false);
                            records.Clear();
                            foreach (var item in batch)
                            {
                                records.Add(item.Record, item.Slot);
                            }
                            // The slots are read in place: the mapping stays while they are (a dispose waits for this).
                            if (!_journal.Pin())
                            {
                                throw new ObjectDisposedException(nameof(UsageJournal));
                            }
                            try
                            {
                                await connection.CommitAsync(records, _abandon.Token).ConfigureAwait(false);
                            }
                            finally
                            {
                                _journal.Unpin();
                            }
                            committed = true;
                            break;
                        }
                        catch (Exception ex)
                        {
                            // Locked, busy, disk full, a file gone (or a bug): never drop the batch. Its slots stay journaled, and the
                            // connection is opened afresh in case it is the broken part.
                            Log.CommitFailed(_logger, batch.Count, delay.TotalMilliseconds, ex);
                            connection?.Dispose();
                            connection = null;
                        }
                        try
                        {
                            await Task.Delay(delay, _abandon.Token).ConfigureAwait(false);
                        }
                        catch (OperationCanceledException)
                        {
                            break;
                        }
                    }
                    if (!committed)
                    {
                        Abandon(batch, flushes);
                        return;
                    }
                    foreach (var item in batch)
                    {
                        if (item.Slot >= 0)
                        {
                            _journal.Free(item.Slot);
                        }
                    }
                    Interlocked.Add(ref _committed, batch.Count);
                    Interlocked.Add(ref _pending, -batch.Count);
                }
                foreach (var flush in flushes)
                {
                    flush.TrySetResult();
                }
                batch.Clear();
                flushes.Clear();
            }
        }
        finally
        {
            connection?.Dispose();
        }
    }

    private void Take(ChannelReader<Queued> reader, List<Queued> batch, List<TaskCompletionSource> flushes)
    {
        // A flush marker ends the batch, so it completes as soon as the records before it are committed.
        while (batch.Count < _options.MaxBatch && flushes.Count == 0 && reader.TryRead(out var item))
        {
            if (item.Flush is { } flush)
            {
                flushes.Add(flush);
            }
            else
            {
                batch.Add(item);
            }
        }
    }

    /// <summary>A stop ran out of time with the database still failing: what is journaled waits for the next start.</summary>
    private void Abandon(List<Queued> batch, List<TaskCompletionSource> flushes)
    {
        while (_queue.Reader.TryRead(out var item))
        {
            if (item.Flush is { } flush)
            {
                flushes.Add(flush);
            }
            else
            {
                batch.Add(item);
            }
        }
        var lost = batch.Count(p => p.Slot < 0);
        Log.Abandoned(_logger, batch.Count - lost, lost);
        foreach (var flush in flushes)
        {
            flush.TrySetCanceled();
        }
    }

    private void CommitLate(UsageRecord record)
    {
        try
        {
            // Rare (a request outlived the stop), so blocking this thread on PostgreSQL's round trip is acceptable.
            using var connection = _store.OpenAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();
            connection.CommitAsync([record], CancellationToken.None).AsTask().GetAwaiter().GetResult();
            Interlocked.Increment(ref _committed);
        }
        catch (Exception ex)
        {
            Log.LateRecordLost(_logger, ex);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        // Normally the hosted service has stopped the loop already; a host disposed without a stop still gets its flush,
        // bounded so that a dead database cannot hang disposal (what is left stays journaled).
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await StopAsync(timeout.Token).ConfigureAwait(false);
        _journal.Dispose();
        _abandon.Dispose();
    }

    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    /// <summary>A record to commit (<paramref name="Record"/> null: its slot holds it) or a flush marker.</summary>
    private readonly record struct Queued(UsageRecord? Record, int Slot, TaskCompletionSource? Flush);

    private static partial class Log
    {
        [LoggerMessage(EventId = 8010, Level = LogLevel.Information, Message = "Usage ledger recovered {Records} records from {Path}: {Finished} finished, {Interrupted} interrupted")]
        public static partial void Recovered(ILogger logger, int records, int finished, int interrupted, string path);

        [LoggerMessage(EventId = 8011, Level = LogLevel.Warning, Message = "Usage ledger could not commit {Records} records; retrying in {DelayMs} ms")]
        public static partial void CommitFailed(ILogger logger, int records, double delayMs, Exception exception);

        [LoggerMessage(EventId = 8012, Level = LogLevel.Error, Message = "Usage ledger stopped before it could commit: {Journaled} records stay in the journal for the next start, {Lost} without a journal slot are lost")]
        public static partial void Abandoned(ILogger logger, int journaled, int lost);

        [LoggerMessage(EventId = 8013, Level = LogLevel.Error, Message = "Usage ledger had stopped and could not write a late record without a journal slot; it is lost")]
        public static partial void LateRecordLost(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 8014, Level = LogLevel.Information, Message = "Usage ledger stopping: waiting for {Records} records still being finished (sealed usage signatures being checked)")]
        public static partial void WaitingOffPath(ILogger logger, int records);

        [LoggerMessage(EventId = 8015, Level = LogLevel.Warning, Message = "Usage ledger stopped before {Records} records were finished; they are journaled when they are, for the next start")]
        public static partial void OffPathLeft(ILogger logger, int records);
    }
}
