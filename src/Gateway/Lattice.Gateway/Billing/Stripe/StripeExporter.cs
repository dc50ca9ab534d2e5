using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Billing.Stripe;

/// <summary>
/// Reads the ledger in order after the persisted <c>stripe</c> cursor, a batch at a time, sends each charged record of
/// a workspace with a Stripe customer as a meter event (<see cref="StripeOptions.Concurrency"/> at once, each retried
/// with exponential backoff until Stripe takes or rejects it), and only then moves the cursor past the batch. A stop
/// in the middle resends at most that batch after the restart, under the same identifiers, which Stripe discards:
/// every record reaches Stripe once.
/// </summary>
internal sealed partial class StripeExporter(
    IServiceScopeFactory scopes, IServiceProvider services, TimeProvider time, IOptions<StripeOptions> options, ILogger<StripeExporter> logger) : BackgroundService
{
    public const string CursorName = "stripe";

    private StripeOptions Options => options.Value;

    /// <summary>The SDK client, built only when Stripe is configured.</summary>
    private StripeMeterEvents? _events;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!Options.Enabled)
        {
            return;
        }
        _events = services.GetRequiredService<StripeMeterEvents>();
        var failures = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            TimeSpan wait;
            try
            {
                var read = await ExportBatchAsync(stoppingToken);
                failures = 0;
                // A full batch means there may be more right behind it.
                wait = read == Options.BatchSize ? TimeSpan.Zero : Options.PollInterval;
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // The database is busy or gone for a moment: back off and read from the cursor again.
                LogBatchFailed(ex);
                wait = Backoff(++failures, null);
            }
            try
            {
                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait, time, stoppingToken);
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>One batch: read, send, move the cursor. Returns how many ledger records it read.</summary>
    internal async Task<int> ExportBatchAsync(CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var ledger = scope.ServiceProvider.GetRequiredService<IUsageExportLedger>();
        var cursor = await ledger.GetCursorAsync(CursorName, cancellationToken);
        var batch = await ledger.ReadAfterAsync(cursor, Options.BatchSize, cancellationToken);
        if (batch.Count == 0)
        {
            return 0;
        }
        // Free records and workspaces not billed through Stripe are passed over: there is nothing to send for them.
        var billable = batch.Where(r => r.CostPicoUsd > 0 && !string.IsNullOrEmpty(r.StripeCustomerId));
        await Parallel.ForEachAsync(billable, new ParallelOptions { MaxDegreeOfParallelism = Options.Concurrency, CancellationToken = cancellationToken }, SendAsync);
        await ledger.SaveCursorAsync(CursorName, batch[^1].Position, cancellationToken);
        return batch.Count;
    }

    private async ValueTask SendAsync(ExportRecord record, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            var result = await _events!.SendAsync(record, cancellationToken);
            switch (result.Outcome)
            {
                case MeterEventOutcome.Accepted:
                    return;
                case MeterEventOutcome.Rejected:
                    LogRejected(record.RequestId, result.Error);
                    return;
                default:
                    var delay = Backoff(attempt, result.RetryAfter);
                    LogRetrying(record.RequestId, result.Error, attempt, delay);
                    await Task.Delay(delay, time, cancellationToken);
                    break;
            }
        }
    }

    /// <summary><see cref="StripeOptions.RetryBaseDelay"/> doubled per attempt, at most <see cref="StripeOptions.RetryMaxDelay"/>, at least Retry-After.</summary>
    internal TimeSpan Backoff(int attempt, TimeSpan? retryAfter)
    {
        var exponent = Math.Min(attempt - 1, 30);
        var delay = TimeSpan.FromTicks((long)Math.Min(Options.RetryBaseDelay.Ticks * Math.Pow(2, exponent), Options.RetryMaxDelay.Ticks));
        return retryAfter is { } floor && floor > delay ? floor : delay;
    }

    [LoggerMessage(EventId = 9411, Level = LogLevel.Warning, Message = "Stripe rejected the meter event of request {RequestId} ({Error}); it is not sent again.")]
    private partial void LogRejected(string requestId, string? error);

    [LoggerMessage(EventId = 9412, Level = LogLevel.Information, Message = "Stripe did not take the meter event of request {RequestId} ({Error}); attempt {Attempt}, next in {Delay}.")]
    private partial void LogRetrying(string requestId, string? error, int attempt, TimeSpan delay);

    [LoggerMessage(EventId = 9413, Level = LogLevel.Warning, Message = "Reading the ledger for Stripe failed; trying again.")]
    private partial void LogBatchFailed(Exception exception);
}
