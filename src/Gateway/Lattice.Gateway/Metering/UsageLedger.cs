using System.Threading.Channels;
using Lattice.Gateway.Persistence;

namespace Lattice.Gateway.Metering;

/// <summary>
/// Writes one usage record per request id, exactly once, off the request path: the request journals its record in
/// <see cref="UsageJournal"/> (a store into shared memory, no system call) and queues it; one loop, on a thread of its
/// own, commits whatever has queued in one transaction (group commit), then frees the journal slots. The database is
/// SQLite (<see cref="SqliteLedgerStore"/>) or PostgreSQL (<see cref="PostgresLedgerStore"/>).
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
///
/// Why a thread of its own rather than the thread pool: a commit is synchronous work (SQLite's inserts, the WAL's
/// writes, now and then a checkpoint's fsync) that holds whatever thread runs it for the whole batch; on the pool that
/// is one of the few threads the requests' continuations run on. On its own thread it is one more runnable thread for
/// the kernel to share the cores with, and its waits (for records, for a batch to fill, between retries) cost no timer,
/// task or pool work item. It sleeps on an event when there is nothing to do: a request sets the event only when the
/// loop is asleep on an empty queue (at most once per batch, never while a batch lingers), so the request path makes
/// no system call per record.
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
    /// <summary>The commit loop's wake-up: set by a record reaching an idle loop, a flush reaching a lingering one, or a stop.</summary>
    private readonly ManualResetEventSlim _wake = new(initialState: false, spinCount: 0);
    /// <summary>Completes when the commit loop's thread has ended (faulted if the loop failed).</summary>
    private readonly TaskCompletionSource _loopEnded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Thread? _thread;
    private long _committed;
    private int _pending;
    private long _unjournaled;
    // Completions made off the caller's path (CompleteOffPath) not yet handed to Complete; a stop waits for them.
    private int _offPath;
    private TaskCompletionSource? _offPathDone;
    // 1 while the loop is about to sleep, or sleeps, on an empty queue: the next record wakes it.
    private int _idle;
    // 1 while the loop lingers for a batch to fill: only a flush or a stop wakes it.
    private int _lingering;
    // Flush markers queued and not yet taken: a batch does not linger while one waits.
    private int _flushesWaiting;
    // A stop has begun: batches commit at once, without lingering.
    private volatile bool _stopping;
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
        Complete(entry, final, UsageEnd.Of(final), final);
    }

    /// <summary>
    /// <see cref="Complete(LedgerEntry, UsageRecord)"/> with the final record the entry's provisional one and
    /// <paramref name="end"/> make: the journal encodes the two as they are, and no final record object is built unless
    /// the slot cannot hold it.
    /// </summary>
    public void Complete(LedgerEntry entry, in UsageEnd end)
    {
        ArgumentNullException.ThrowIfNull(entry);
        Complete(entry, entry.Provisional, end, null);
    }

    /// <param name="final">The final record when the caller has it as an object; null: built from the other two only if needed.</param>
    private void Complete(LedgerEntry entry, UsageRecord head, in UsageEnd end, UsageRecord? final)
    {
        if (!entry.TryMarkCompleted())
        {
            return;
        }
        if (entry.IsJournaled && _journal.TryFinish(entry.Slot, head, end))
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
        Enqueue(final ?? end.ApplyTo(head), entry.Slot);
    }

    /// <summary>
    /// <see cref="Complete(LedgerEntry, in UsageEnd)"/> with how the request ended, which <paramref name="finish"/> makes from <paramref name="state"/> on the
    /// thread pool: for work too slow for the caller's path (a sealed answer's usage signature is checked before its
    /// record is written). A graceful stop waits for it before its last commit (<see cref="StopAsync"/>), so the record is
    /// committed as it ended, not left as the journal's <c>interrupted</c>. Never blocks.
    /// </summary>
    public void CompleteOffPath<TState>(LedgerEntry entry, TState state, Func<TState, UsageEnd> finish)
    {
        ArgumentNullException.ThrowIfNull(entry);
        ArgumentNullException.ThrowIfNull(finish);
        Interlocked.Increment(ref _offPath);
        ThreadPool.UnsafeQueueUserWorkItem(static work => work.Ledger.FinishOffPath(work.Entry, work.State, work.Finish),
            (Ledger: this, Entry: entry, State: state, Finish: finish), preferLocal: false);
    }

    private void FinishOffPath<TState>(LedgerEntry entry, TState state, Func<TState, UsageEnd> finish)
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
        Interlocked.Increment(ref _flushesWaiting);
        if (!_queue.Writer.TryWrite(new Queued(null, -1, done)))
        {
            // Stopped: the loop drained the queue on its way out; what came later was committed at once or is journaled.
            Interlocked.Decrement(ref _flushesWaiting);
            return Task.CompletedTask;
        }
        // A batch lingering for company commits now.
        if (Interlocked.Exchange(ref _lingering, 0) != 0)
        {
            _wake.Set();
        }
        WakeIfIdle();
        return done.Task.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// After a write to the queue: wakes the loop if it sleeps (or is about to) on an empty queue. The loop announces
    /// that (<see cref="_idle"/>) before it looks at the queue a last time, and the write is visible before this reads
    /// the flag, so either the loop sees the record or this sees the flag.
    /// </summary>
    private void WakeIfIdle()
    {
        // The write's stores before this load, on every architecture (the loop's side is its Interlocked.Exchange).
        Interlocked.MemoryBarrier();
        if (Volatile.Read(ref _idle) != 0 && Interlocked.Exchange(ref _idle, 0) != 0)
        {
            _wake.Set();
        }
    }

    /// <param name="record">Null when the slot holds the final record.</param>
    private void Enqueue(UsageRecord? record, int slot)
    {
        Interlocked.Increment(ref _pending);
        if (_queue.Writer.TryWrite(new Queued(record, slot, null)))
        {
            WakeIfIdle();
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
            if (_thread is null)
            {
                // A background thread: a host that exits without a stop is not held up by it (what is queued is journaled).
                _thread = new Thread(Run) { IsBackground = true, Name = "Usage ledger commits" };
                // No execution context flows in: the loop outlives whatever started it.
                _thread.UnsafeStart();
            }
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
        _stopping = true;
        _queue.Writer.TryComplete();
        // A sleeping or lingering loop wakes to commit what is queued and end.
        _wake.Set();
        Task? loop;
        lock (_gate)
        {
            loop = _thread is null ? null : _loopEnded.Task;
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

    /// <summary>The commit loop's thread.</summary>
    private void Run()
    {
        try
        {
            CommitLoop();
            _loopEnded.TrySetResult();
        }
        catch (Exception ex)
        {
            // A bug: StopAsync rethrows it. What was queued stays journaled for the next start.
            _loopEnded.TrySetException(ex);
        }
    }

    private void CommitLoop()
    {
        var reader = _queue.Reader;
        var batch = new List<Queued>(_options.MaxBatch);
        var flushes = new List<TaskCompletionSource>();
        var records = new LedgerBatch(_journal, _options.MaxBatch);
        ILedgerConnection? connection = null;
        try
        {
            while (true)
            {
                Take(reader, batch, flushes);
                if (batch.Count == 0 && flushes.Count == 0)
                {
                    if (!SleepUntilQueued(reader))
                    {
                        // Stopped, and everything queued before the stop is committed.
                        return;
                    }
                    continue;
                }
                if (batch.Count > 0 && batch.Count < _options.MaxBatch && flushes.Count == 0 && _options.MaxBatchDelay > TimeSpan.Zero)
                {
                    // Linger briefly so that the records of requests ending together share one transaction (and one fsync).
                    // One timed wait per batch, not a wake-up per record: requests ending meanwhile only queue. Real time on
                    // purpose: this is a throughput knob, and a test's fake clock must not hold records back (FlushAsync
                    // ends the wait at once).
                    Linger();
                    Take(reader, batch, flushes);
                }

                if (batch.Count > 0)
                {
                    var committed = false;
                    for (var delay = FirstRetryDelay; ; delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxRetryDelay.Ticks)))
                    {
                        try
                        {
                            connection ??= Wait(_store.OpenAsync(_abandon.Token));
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
                                Wait(connection.CommitAsync(records, _abandon.Token));
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
                        if (_abandon.Token.WaitHandle.WaitOne(delay))
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

    /// <summary>
    /// Sleeps until something is queued (true) or the ledger has stopped with nothing left to commit (false). The flag
    /// goes up before the last look at the queue, so a record written after that look finds it and wakes the loop.
    /// </summary>
    private bool SleepUntilQueued(ChannelReader<Queued> reader)
    {
        _wake.Reset();
        Interlocked.Exchange(ref _idle, 1);
        if (!reader.TryPeek(out _))
        {
            // Completion is complete only once the writer is and the queue is empty; a stop sets the event after completing.
            if (reader.Completion.IsCompleted)
            {
                Volatile.Write(ref _idle, 0);
                return false;
            }
            _wake.Wait();
        }
        Volatile.Write(ref _idle, 0);
        return true;
    }

    /// <summary>Waits up to the batch delay for more records; a flush (queued, or arriving) or a stop ends the wait.</summary>
    private void Linger()
    {
        _wake.Reset();
        Interlocked.Exchange(ref _lingering, 1);
        // A flush queued (or a stop begun) before the flag went up found nothing to wake: no linger then.
        if (Volatile.Read(ref _flushesWaiting) == 0 && !_stopping)
        {
            _wake.Wait(_options.MaxBatchDelay);
        }
        Volatile.Write(ref _lingering, 0);
    }

    /// <summary>The result of a store call, waited for on this thread (SQLite's complete synchronously; PostgreSQL's do not).</summary>
    private static T Wait<T>(ValueTask<T> pending) => pending.IsCompletedSuccessfully ? pending.Result : pending.AsTask().GetAwaiter().GetResult();

    private static void Wait(ValueTask pending)
    {
        if (!pending.IsCompletedSuccessfully)
        {
            pending.AsTask().GetAwaiter().GetResult();
        }
    }

    private void Take(ChannelReader<Queued> reader, List<Queued> batch, List<TaskCompletionSource> flushes)
    {
        // A flush marker ends the batch, so it completes as soon as the records before it are committed.
        while (batch.Count < _options.MaxBatch && flushes.Count == 0 && reader.TryRead(out var item))
        {
            if (item.Flush is { } flush)
            {
                Interlocked.Decrement(ref _flushesWaiting);
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
                Interlocked.Decrement(ref _flushesWaiting);
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
        if (_thread is null || _loopEnded.Task.IsCompleted)
        {
            // The loop no longer touches them (a loop still retrying after a timed-out stop keeps them).
            _abandon.Dispose();
            _wake.Dispose();
        }
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
