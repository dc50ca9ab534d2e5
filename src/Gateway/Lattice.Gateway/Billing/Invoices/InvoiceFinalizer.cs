using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Billing.Invoices;

/// <summary>
/// Finalises due invoices in the background, every <see cref="InvoiceOptions.FinalizeInterval"/>, so a month's
/// invoice is written soon after its grace period even when nobody reads it. Reads finalise too; both are idempotent.
/// </summary>
internal sealed partial class InvoiceFinalizer(IServiceScopeFactory scopes, TimeProvider time, IOptions<InvoiceOptions> options, ILogger<InvoiceFinalizer> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var scope = scopes.CreateAsyncScope();
                var written = await scope.ServiceProvider.GetRequiredService<InvoiceBook>().FinalizeDueAsync(stoppingToken);
                if (written > 0)
                {
                    LogFinalized(written);
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // A busy or unreachable database: the next round tries again, and reads finalise meanwhile.
                LogFailed(ex);
            }
            try
            {
                await Task.Delay(options.Value.FinalizeInterval, time, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    [LoggerMessage(EventId = 9401, Level = LogLevel.Information, Message = "Finalised {Count} invoices.")]
    private partial void LogFinalized(int count);

    [LoggerMessage(EventId = 9402, Level = LogLevel.Warning, Message = "Finalising invoices failed; trying again later.")]
    private partial void LogFailed(Exception exception);
}
