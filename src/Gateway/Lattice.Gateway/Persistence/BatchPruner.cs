namespace Lattice.Gateway.Persistence;

/// <summary>
/// Deletes expired rows of one kind now and then, in bounded batches, on the <see cref="TimeProvider"/>'s clock. Until
/// a pass deletes them, expired rows are already treated as absent by their store.
/// </summary>
public abstract partial class BatchPruner(TimeProvider time, ILogger logger) : BackgroundService
{
    /// <summary>What is pruned, for the log (e.g. "idempotency keys").</summary>
    protected abstract string What { get; }

    protected abstract TimeSpan Interval { get; }

    protected abstract int Batch { get; }

    /// <summary>Deletes up to <paramref name="batch"/> expired rows; returns how many went.</summary>
    protected abstract ValueTask<int> PruneBatchAsync(int batch, CancellationToken cancellationToken);

    /// <summary>Deletes every expired row, one batch at a time; returns how many went.</summary>
    public async Task<int> PruneAsync(CancellationToken cancellationToken)
    {
        var batch = Batch;
        var total = 0;
        int deleted;
        do
        {
            deleted = await PruneBatchAsync(batch, cancellationToken);
            total += deleted;
        }
        while (deleted == batch);
        return total;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, time);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            try
            {
                var deleted = await PruneAsync(stoppingToken);
                if (deleted > 0)
                {
                    Log.Pruned(logger, deleted, What);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // The database may be restarting; the next pass tries again, and expired rows are ignored meanwhile.
                Log.PruneFailed(logger, What, e.Message);
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 9301, Level = LogLevel.Information, Message = "Deleted {Count} expired {What}")]
        public static partial void Pruned(ILogger logger, int count, string what);

        [LoggerMessage(EventId = 9302, Level = LogLevel.Warning, Message = "Deleting expired {What} failed: {Error}")]
        public static partial void PruneFailed(ILogger logger, string what, string error);
    }
}
