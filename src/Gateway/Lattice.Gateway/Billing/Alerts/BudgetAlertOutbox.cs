using System.Data.Common;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Threading.Channels;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Billing.Alerts;

/// <summary>
/// Takes alerts from the request path and writes them to the <c>budget_alerts</c> outbox, once per budget, period,
/// user and threshold, then wakes the <see cref="BudgetAlertDeliverer"/>. <see cref="Raise"/> only queues: the
/// database write happens on this service's own loop, in the order alerts were raised.
/// </summary>
public sealed partial class BudgetAlertOutbox(
    IServiceScopeFactory scopes, BudgetAlertDeliverer deliverer, TimeProvider time, ILogger<BudgetAlertOutbox> logger) : IBudgetAlertSink, IHostedService
{
    public const string EventType = "budget.threshold_reached";

    /// <summary>How long a failed write waits before it is tried again (the database may be restarting).</summary>
    public static readonly TimeSpan WriteRetryDelay = TimeSpan.FromSeconds(1);

    // Unbounded: alerts are rare (at most three per budget, period and user), and Raise must never block or drop one.
    private readonly Channel<BudgetAlert> _queue = Channel.CreateUnbounded<BudgetAlert>(new UnboundedChannelOptions { SingleReader = true });
    private Task _loop = Task.CompletedTask;
    private volatile bool _stopping;

    public void Raise(BudgetAlert alert)
    {
        if (!_queue.Writer.TryWrite(alert))
        {
            Log.RaisedAfterStop(logger, alert.BudgetId, alert.Threshold);
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _loop = Task.Run(RunAsync, CancellationToken.None);
        return Task.CompletedTask;
    }

    /// <summary>Writes what is still queued before the host stops (as far as the stop's deadline allows).</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _stopping = true;
        _queue.Writer.TryComplete();
        await _loop.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task RunAsync()
    {
        await foreach (var alert in _queue.Reader.ReadAllAsync().ConfigureAwait(false))
        {
            // A failed write is retried until it succeeds or the host stops: later alerts wait behind it, so order holds.
            while (true)
            {
                try
                {
                    if (await WriteAsync(alert).ConfigureAwait(false))
                    {
                        deliverer.Wake();
                    }
                    break;
                }
                catch (Exception e) when (e is DbException or DbUpdateException)
                {
                    Log.WriteFailed(logger, alert.BudgetId, alert.Threshold, e.GetType().Name);
                    if (_stopping)
                    {
                        return;
                    }
                    await Task.Delay(WriteRetryDelay, time).ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    // A bug, not an outage: retrying would hold every later alert behind this one.
                    Log.WriteBug(logger, alert.BudgetId, alert.Threshold, e);
                    break;
                }
            }
        }
    }

    /// <summary>Writes the alert's outbox row unless one exists; true when a row was written.</summary>
    internal async Task<bool> WriteAsync(BudgetAlert alert)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        var alertUrl = await db.Budgets.AsNoTracking().Where(b => b.Id == alert.BudgetId).Select(b => b.AlertUrl).FirstOrDefaultAsync().ConfigureAwait(false);
        if (alertUrl is null)
        {
            // No budget, or one without an alert_url: nobody to tell.
            return false;
        }

        var now = time.GetUtcNow();
        var payload = Payload(ApiKeySecrets.NewId("evt_"), alert);
        var userId = alert.UserId ?? "";
        // Insert-or-ignore on the unique (budget, period, user, threshold) index: the counters may raise a threshold more
        // than once (two requests crossing it together, or a restart that rebuilds them), but it is written, and sent, once.
        // Timestamps are Unix milliseconds, as the model's converter stores them.
        var written = await db.Database.ExecuteSqlAsync($"""
            INSERT INTO budget_alerts ("BudgetId", "WorkspaceId", "PeriodStart", "UserId", "Threshold", "Payload", "CreatedAt", "Attempts", "NextAttemptAt")
            VALUES ({alert.BudgetId}, {alert.WorkspaceId}, {alert.PeriodStart.ToUnixTimeMilliseconds()}, {userId}, {alert.Threshold}, {payload},
                    {now.ToUnixTimeMilliseconds()}, 0, {now.ToUnixTimeMilliseconds()})
            ON CONFLICT DO NOTHING
            """).ConfigureAwait(false);
        if (written == 0)
        {
            Log.AlreadyWritten(logger, alert.BudgetId, alert.Threshold);
        }
        return written > 0;
    }

    /// <summary>The JSON body every delivery of the alert sends, fixed when it is written.</summary>
    internal static string Payload(string eventId, BudgetAlert alert) => JsonSerializer.Serialize(
        new BudgetAlertEvent(eventId, EventType, alert.RaisedAt.ToUnixTimeSeconds(), new BudgetAlertData(
            alert.BudgetId, alert.WorkspaceId, alert.Scope, alert.SubjectId, alert.UserId, alert.Threshold,
            CostCalculator.FormatUsd(alert.AmountPicoUsd), CostCalculator.FormatUsd(alert.SpentPicoUsd),
            alert.PeriodStart.ToUnixTimeSeconds(), alert.PeriodEnd.ToUnixTimeSeconds())),
        BudgetAlertJsonContext.Default.BudgetAlertEvent);

    private static partial class Log
    {
        [LoggerMessage(EventId = 9201, Level = LogLevel.Warning, Message = "Budget {BudgetId}: the {Threshold} % alert was raised after the gateway began stopping and is not sent")]
        public static partial void RaisedAfterStop(ILogger logger, string budgetId, int threshold);

        [LoggerMessage(EventId = 9202, Level = LogLevel.Warning, Message = "Budget {BudgetId}: writing the {Threshold} % alert failed ({Error}); trying again")]
        public static partial void WriteFailed(ILogger logger, string budgetId, int threshold, string error);

        [LoggerMessage(EventId = 9204, Level = LogLevel.Error, Message = "Budget {BudgetId}: the {Threshold} % alert could not be written and is dropped")]
        public static partial void WriteBug(ILogger logger, string budgetId, int threshold, Exception exception);

        [LoggerMessage(EventId = 9203, Level = LogLevel.Debug, Message = "Budget {BudgetId}: the {Threshold} % alert for this period was already written")]
        public static partial void AlreadyWritten(ILogger logger, string budgetId, int threshold);
    }
}

/// <summary>The body of an alert delivery (see docs/billing.md, "Budget alerts").</summary>
public sealed record BudgetAlertEvent(string Id, string Type, long Created, BudgetAlertData Data);

/// <summary>What crossed: USD amounts are decimal strings, times Unix seconds; <c>user_id</c> is null except for <c>app_user</c> budgets.</summary>
public sealed record BudgetAlertData(
    string BudgetId, string WorkspaceId, string Scope, string SubjectId, string? UserId, int ThresholdPercent,
    string AmountUsd, string SpentUsd, long PeriodStart, long PeriodEnd);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(BudgetAlertEvent))]
internal sealed partial class BudgetAlertJsonContext : JsonSerializerContext;
