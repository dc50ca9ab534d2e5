using Lattice.Gateway.Identity;
using Lattice.Gateway.Persistence;

namespace Lattice.Gateway.Changes;

/// <summary>
/// Keeps this node current with what other nodes wrote: four times a second — or at once when the
/// <see cref="IChangeSignal"/> says another node published — it reads the revocation log (grants and access tokens,
/// <see cref="RevocationSet"/>) and the change feed (<see cref="ChangeFeed"/>) in one pass, and now and then prunes both.
/// </summary>
public sealed partial class ChangeFeedPoller(
    IServiceScopeFactory scopes,
    ChangeFeed feed,
    RevocationSet revocations,
    IChangeSignal signal,
    TimeProvider time,
    ILogger<ChangeFeedPoller> logger) : BackgroundService
{
    /// <summary>The polling fallback: a change committed just after a read began is seen one interval later.</summary>
    public static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(250);

    public static readonly TimeSpan PruneInterval = TimeSpan.FromMinutes(10);

    private long _completed;
    private long _failed;
    private TaskCompletionSource _read = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private long _lastReadTicks = -1;

    /// <summary>
    /// When this node last read both logs to the end, else when the poller started; null before it started. Readiness
    /// (<c>/readyz</c>) says the feed is stuck when this falls far behind.
    /// </summary>
    public DateTimeOffset? LastReadAt => Interlocked.Read(ref _lastReadTicks) is >= 0 and var ticks ? new DateTimeOffset(ticks, TimeSpan.Zero) : null;

    /// <summary>How many times this node has read both logs to the end since it started.</summary>
    public long CompletedReads => Interlocked.Read(ref _completed);

    /// <summary>How many reads have failed since it started (the database away, say); the next read tries again.</summary>
    public long FailedReads => Interlocked.Read(ref _failed);

    /// <summary>Completes once <see cref="CompletedReads"/> has reached <paramref name="count"/>.</summary>
    public Task ReadsAsync(long count, CancellationToken cancellationToken = default) => UntilAsync(() => CompletedReads, count, cancellationToken);

    /// <summary>Completes once <see cref="FailedReads"/> has reached <paramref name="count"/>.</summary>
    public Task FailedReadsAsync(long count, CancellationToken cancellationToken = default) => UntilAsync(() => FailedReads, count, cancellationToken);

    private async Task UntilAsync(Func<long> counter, long count, CancellationToken cancellationToken)
    {
        while (true)
        {
            // The signal is taken before the count is read, so a read that ends in between still wakes this wait.
            var read = Volatile.Read(ref _read);
            if (counter() >= count)
            {
                return;
            }
            await read.Task.WaitAsync(cancellationToken);
        }
    }

    /// <summary>Wakes the waits of <see cref="ReadsAsync"/> and <see cref="FailedReadsAsync"/> after a read, done or failed.</summary>
    private void Signal() => Interlocked.Exchange(ref _read, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var nextPrune = time.GetUtcNow() + PruneInterval;
        Interlocked.Exchange(ref _lastReadTicks, time.GetUtcNow().UtcTicks);
        do
        {
            try
            {
                await using var scope = scopes.CreateAsyncScope();
                var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
                await revocations.CatchUpAsync(db, stoppingToken);
                await feed.CatchUpAsync(db, stoppingToken);
                Interlocked.Exchange(ref _lastReadTicks, time.GetUtcNow().UtcTicks);
                Interlocked.Increment(ref _completed);
                Signal();
                if (time.GetUtcNow() >= nextPrune)
                {
                    nextPrune = time.GetUtcNow() + PruneInterval;
                    await revocations.PruneAsync(db, stoppingToken);
                    await feed.PruneAsync(db, stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // The database may be restarting; the next read tries again from the same place.
                LogReadFailed(logger, e.Message);
                Interlocked.Increment(ref _failed);
                Signal();
            }
        }
        while (await NextReadAsync(signal, Interval, time, stoppingToken).ConfigureAwait(false));
    }

    /// <summary>
    /// Waits for the next read: <paramref name="interval"/> on <paramref name="time"/>'s clock, or less when
    /// <paramref name="signal"/> fires. False once <paramref name="stoppingToken"/> is cancelled.
    /// </summary>
    internal static async Task<bool> NextReadAsync(IChangeSignal signal, TimeSpan interval, TimeProvider time, CancellationToken stoppingToken)
    {
        using var either = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        var tick = Task.Delay(interval, time, either.Token);
        var push = signal.WaitAsync(either.Token);
        if (await Task.WhenAny(tick, push).ConfigureAwait(false) == push && !push.IsCompletedSuccessfully && !stoppingToken.IsCancellationRequested)
        {
            // A push channel that failed must not turn polling into a busy loop: the interval still holds.
            await tick.ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default).ConfigureAwait(false);
        }
        // The loser is cancelled; its outcome is observed so that it raises nothing unobserved.
        await either.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(tick, push).ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default)
            .ConfigureAwait(false);
        return !stoppingToken.IsCancellationRequested;
    }

    [LoggerMessage(EventId = 9602, Level = LogLevel.Warning, Message = "Reading the revocation log and change feed failed: {Error}")]
    private static partial void LogReadFailed(ILogger logger, string error);
}
