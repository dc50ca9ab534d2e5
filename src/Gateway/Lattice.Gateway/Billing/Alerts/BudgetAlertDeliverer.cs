using System.Globalization;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Billing.Alerts;

/// <summary>
/// Sends the <c>budget_alerts</c> outbox: each row is <c>POST</c>ed to its budget's <c>alert_url</c>, signed with the
/// budget's secret, until the receiver answers 2xx. A failure (any other status, no answer within
/// <see cref="RequestTimeout"/>, no connection) is tried again after <see cref="RetryDelay"/>; a row still failing
/// <see cref="GiveUpAfter"/> after it was written is given up (<see cref="BudgetAlertEntity.LastError"/> starts with
/// <see cref="GaveUp"/>, <see cref="BudgetAlertEntity.NextAttemptAt"/> is <see cref="Never"/>).
/// </summary>
/// <remarks>
/// A row is claimed (its next attempt moved <see cref="Lease"/> ahead) before it is sent, so gateways sharing a
/// database do not send it twice at once, and one that dies mid-send leaves it to be sent again once the lease lapses.
/// Delivery is at least once: receivers tell repeats apart by the event <c>id</c>. All waiting goes through the
/// <see cref="TimeProvider"/>.
/// </remarks>
public sealed partial class BudgetAlertDeliverer(
    IServiceScopeFactory scopes, IHttpClientFactory httpClients, BudgetAlertSecrets secrets, TimeProvider time,
    ILogger<BudgetAlertDeliverer> logger) : BackgroundService
{
    public const string ClientName = "budget-alerts";
    public const string SignatureHeader = "Lattice-Signature";
    public const string GaveUp = "gave up";

    public static readonly TimeSpan FirstRetryDelay = TimeSpan.FromSeconds(5);
    public static readonly TimeSpan MaxRetryDelay = TimeSpan.FromHours(1);
    public static readonly TimeSpan GiveUpAfter = TimeSpan.FromDays(3);
    public static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(10);
    public static readonly TimeSpan Lease = TimeSpan.FromMinutes(1);

    /// <summary>The next attempt of an alert given up: the latest time the database holds (milliseconds).</summary>
    public static readonly DateTimeOffset Never = DateTimeOffset.FromUnixTimeMilliseconds(DateTimeOffset.MaxValue.ToUnixTimeMilliseconds());

    /// <summary>The longest the loop sleeps without looking: rows written by another gateway, or whose lease lapsed, are picked up by then.</summary>
    public static readonly TimeSpan PollInterval = TimeSpan.FromMinutes(1);

    private const int BatchSize = 32;
    private const int MaxConcurrentDeliveries = 8;

    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });

    /// <summary>
    /// For tests: called each time the loop goes to sleep, after its timer is armed, with when the next undelivered
    /// alert is due (null: none). Advancing a fake clock after this call fires that timer.
    /// </summary>
    internal Action<DateTimeOffset?>? Parked { get; set; }

    /// <summary>A new alert was written: look now rather than at the next due time.</summary>
    public void Wake() => _wake.Writer.TryWrite(true);

    /// <summary>How long after its <paramref name="attempts"/>-th failed attempt an alert is tried again: 5 s, doubling, at most 1 h.</summary>
    public static TimeSpan RetryDelay(int attempts)
    {
        var doublings = Math.Clamp(attempts - 1, 0, 20);
        var delay = FirstRetryDelay * (1L << doublings);
        return delay < MaxRetryDelay ? delay : MaxRetryDelay;
    }

    /// <summary>
    /// The <see cref="SignatureHeader"/> value: <c>t=&lt;unix seconds&gt;,v1=&lt;hex HMAC-SHA256&gt;</c>, the HMAC keyed
    /// with the secret's UTF-8 bytes (the whole <c>whsec_…</c> string) over <c>"&lt;t&gt;.&lt;payload&gt;"</c>.
    /// </summary>
    public static string Signature(string secret, long timestamp, ReadOnlySpan<byte> payload)
    {
        var t = timestamp.ToString(CultureInfo.InvariantCulture);
        var signed = new byte[t.Length + 1 + payload.Length];
        Encoding.ASCII.GetBytes(t, signed);
        signed[t.Length] = (byte)'.';
        payload.CopyTo(signed.AsSpan(t.Length + 1));
        var mac = HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), signed);
        return $"t={t},v1={Convert.ToHexStringLower(mac)}";
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            _wake.Reader.TryRead(out _);
            DateTimeOffset? nextDue;
            try
            {
                if (await DeliverDueAsync(stoppingToken).ConfigureAwait(false))
                {
                    continue;
                }
                nextDue = await NextDueAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // The database may be restarting; look again after the poll interval. Never end the loop (a stopped
                // background service stops the gateway), whatever failed.
                Log.PassFailed(logger, e);
                nextDue = null;
            }
            await ParkAsync(nextDue, stoppingToken).ConfigureAwait(false);
        }
    }

    /// <summary>Sleeps until <paramref name="nextDue"/> (at most <see cref="PollInterval"/>) or until woken.</summary>
    private async Task ParkAsync(DateTimeOffset? nextDue, CancellationToken stoppingToken)
    {
        var wait = nextDue is { } due ? due - time.GetUtcNow() : PollInterval;
        if (wait <= TimeSpan.Zero)
        {
            return;
        }
        using var sleep = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        var timer = Task.Delay(wait < PollInterval ? wait : PollInterval, time, sleep.Token);
        var woken = _wake.Reader.WaitToReadAsync(sleep.Token).AsTask();
        Parked?.Invoke(nextDue);
        await Task.WhenAny(timer, woken).ConfigureAwait(false);
        await sleep.CancelAsync().ConfigureAwait(false);
    }

    /// <summary>Sends the alerts due now; true when there may be more due than one batch held.</summary>
    private async Task<bool> DeliverDueAsync(CancellationToken cancellationToken)
    {
        List<DueAlert> due;
        await using (var scope = scopes.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
            var now = time.GetUtcNow();
            due = await db.BudgetAlerts.AsNoTracking()
                .Where(a => a.DeliveredAt == null && a.NextAttemptAt <= now)
                .OrderBy(a => a.NextAttemptAt).ThenBy(a => a.Id)
                .Take(BatchSize)
                .Select(a => new DueAlert(a.Id, a.BudgetId, a.Payload, a.Attempts, a.CreatedAt, a.NextAttemptAt))
                .ToListAsync(cancellationToken).ConfigureAwait(false);
        }
        // A slow receiver holds up only its own alert, not every budget's.
        await Parallel.ForEachAsync(due, new ParallelOptions { MaxDegreeOfParallelism = MaxConcurrentDeliveries, CancellationToken = cancellationToken },
            DeliverAsync).ConfigureAwait(false);
        return due.Count == BatchSize;
    }

    private async Task<DateTimeOffset?> NextDueAsync(CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        var next = await db.BudgetAlerts.AsNoTracking()
            .Where(a => a.DeliveredAt == null && a.NextAttemptAt < Never)
            .OrderBy(a => a.NextAttemptAt)
            .Select(a => new { a.NextAttemptAt })
            .FirstOrDefaultAsync(cancellationToken).ConfigureAwait(false);
        return next?.NextAttemptAt;
    }

    private async ValueTask DeliverAsync(DueAlert alert, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        var leaseUntil = time.GetUtcNow() + Lease;
        var claimed = await db.BudgetAlerts
            .Where(a => a.Id == alert.Id && a.DeliveredAt == null && a.NextAttemptAt == alert.NextAttemptAt)
            .ExecuteUpdateAsync(s => s.SetProperty(a => a.NextAttemptAt, leaseUntil), cancellationToken).ConfigureAwait(false);
        if (claimed == 0)
        {
            return; // another pass or gateway has it
        }

        // The budget's URL and secret as they are now: a corrected alert_url applies to alerts still being retried.
        var budget = await db.Budgets.AsNoTracking().Where(b => b.Id == alert.BudgetId)
            .Select(b => new { b.AlertUrl, b.AlertSecret }).FirstOrDefaultAsync(cancellationToken).ConfigureAwait(false);
        string? error;
        var hopeless = false;
        if (budget?.AlertUrl is null || budget.AlertSecret is null || !BudgetAlertSecrets.TryValidateUrl(budget.AlertUrl, out _))
        {
            error = "the budget no longer has an alert_url";
            hopeless = true;
        }
        else if (secrets.Unprotect(budget.AlertSecret) is not { } secret)
        {
            // Not hopeless: the data-protection key ring may be restored.
            error = "the signing secret cannot be read with this gateway's data-protection keys";
        }
        else
        {
            error = await PostAsync(budget.AlertUrl, secret, alert.Payload, cancellationToken).ConfigureAwait(false);
        }

        var attempts = alert.Attempts + 1;
        var now = time.GetUtcNow();
        if (error is null)
        {
            await db.BudgetAlerts.Where(a => a.Id == alert.Id).ExecuteUpdateAsync(s => s
                .SetProperty(a => a.Attempts, attempts)
                .SetProperty(a => a.DeliveredAt, now)
                .SetProperty(a => a.LastError, (string?)null), CancellationToken.None).ConfigureAwait(false);
            Log.Delivered(logger, alert.Id, alert.BudgetId, attempts);
        }
        else if (hopeless || now - alert.CreatedAt >= GiveUpAfter)
        {
            var reason = $"{GaveUp} after {attempts} attempts: {error}";
            await db.BudgetAlerts.Where(a => a.Id == alert.Id).ExecuteUpdateAsync(s => s
                .SetProperty(a => a.Attempts, attempts)
                .SetProperty(a => a.NextAttemptAt, Never)
                .SetProperty(a => a.LastError, reason), CancellationToken.None).ConfigureAwait(false);
            Log.GaveUp(logger, alert.Id, alert.BudgetId, attempts, error);
        }
        else
        {
            var retryAt = now + RetryDelay(attempts);
            await db.BudgetAlerts.Where(a => a.Id == alert.Id).ExecuteUpdateAsync(s => s
                .SetProperty(a => a.Attempts, attempts)
                .SetProperty(a => a.NextAttemptAt, retryAt)
                .SetProperty(a => a.LastError, error), CancellationToken.None).ConfigureAwait(false);
            Log.AttemptFailed(logger, alert.Id, alert.BudgetId, attempts, error, RetryDelay(attempts).TotalSeconds);
        }
    }

    /// <summary>One signed <c>POST</c>; null when the receiver acknowledged it with a 2xx, else what went wrong (never the payload or secret).</summary>
    private async Task<string?> PostAsync(string url, string secret, string payload, CancellationToken cancellationToken)
    {
        var body = Encoding.UTF8.GetBytes(payload);
        using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        request.Headers.TryAddWithoutValidation(SignatureHeader, Signature(secret, time.GetUtcNow().ToUnixTimeSeconds(), body));
        try
        {
            using var response = await httpClients.CreateClient(ClientName)
                .SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
            return response.IsSuccessStatusCode ? null : $"HTTP {(int)response.StatusCode}";
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return $"no answer within {RequestTimeout.TotalSeconds} s";
        }
        catch (HttpRequestException e)
        {
            return $"request failed ({e.HttpRequestError})";
        }
    }

    private sealed record DueAlert(long Id, string BudgetId, string Payload, int Attempts, DateTimeOffset CreatedAt, DateTimeOffset NextAttemptAt);

    private static partial class Log
    {
        [LoggerMessage(EventId = 9205, Level = LogLevel.Debug, Message = "Budget alert {AlertId} (budget {BudgetId}) delivered on attempt {Attempts}")]
        public static partial void Delivered(ILogger logger, long alertId, string budgetId, int attempts);

        [LoggerMessage(EventId = 9206, Level = LogLevel.Information, Message = "Budget alert {AlertId} (budget {BudgetId}) attempt {Attempts} failed: {Error}; next in {RetrySeconds} s")]
        public static partial void AttemptFailed(ILogger logger, long alertId, string budgetId, int attempts, string error, double retrySeconds);

        [LoggerMessage(EventId = 9207, Level = LogLevel.Warning, Message = "Budget alert {AlertId} (budget {BudgetId}) given up after {Attempts} attempts: {Error}")]
        public static partial void GaveUp(ILogger logger, long alertId, string budgetId, int attempts, string error);

        [LoggerMessage(EventId = 9208, Level = LogLevel.Warning, Message = "Sending budget alerts failed; trying again shortly")]
        public static partial void PassFailed(ILogger logger, Exception exception);
    }
}
