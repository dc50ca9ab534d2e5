using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Billing.Idempotency;

/// <summary>Deletes expired idempotency keys now and then, in bounded batches. Until then they are already treated as absent.</summary>
public sealed partial class IdempotencyPruner(IIdempotencyStore store, IOptions<IdempotencyOptions> options, TimeProvider time, ILogger<IdempotencyPruner> logger)
    : BackgroundService
{
    /// <summary>Deletes every expired key, one batch at a time; returns how many went.</summary>
    public async Task<int> PruneAsync(CancellationToken cancellationToken)
    {
        var batch = options.Value.PruneBatch;
        var total = 0;
        int deleted;
        do
        {
            deleted = await store.PruneAsync(batch, cancellationToken);
            total += deleted;
        }
        while (deleted == batch);
        return total;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.PruneInterval, time);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            try
            {
                var deleted = await PruneAsync(stoppingToken);
                if (deleted > 0)
                {
                    Log.Pruned(logger, deleted);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // The database may be restarting; the next pass tries again, and expired keys are ignored meanwhile.
                Log.PruneFailed(logger, e.Message);
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 9301, Level = LogLevel.Information, Message = "Deleted {Count} expired idempotency keys")]
        public static partial void Pruned(ILogger logger, int count);

        [LoggerMessage(EventId = 9302, Level = LogLevel.Warning, Message = "Deleting expired idempotency keys failed: {Error}")]
        public static partial void PruneFailed(ILogger logger, string error);
    }
}
