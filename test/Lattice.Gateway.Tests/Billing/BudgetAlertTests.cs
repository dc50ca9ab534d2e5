using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Lattice.Gateway.Billing;
using Lattice.Gateway.Billing.Alerts;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Billing;

/// <summary>
/// Budget alerts from the real gateway host (real SQLite, Data Protection key ring in the data directory) to a receiver
/// on loopback started by the test: signed, retried with backoff on a fake clock, written and sent once per threshold,
/// and sent after a restart.
/// </summary>
public sealed class BudgetAlertTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private const string WorkspaceId = "ws_alerts";
    private const string BudgetId = "bud_alerts";
    private const long TenUsd = 10_000_000_000_000;

    // Whole seconds, so times read back from the database (milliseconds) compare exactly.
    private readonly DateTimeOffset _start = DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds());
    private readonly DateTimeOffset _periodStart = new(DateTimeOffset.UtcNow.Year, DateTimeOffset.UtcNow.Month, 1, 0, 0, 0, TimeSpan.Zero);
    private AlertReceiver _receiver = null!;
    private readonly string _secret = BudgetAlertSecrets.NewSecret();
    private readonly Channel<DateTimeOffset?> _parks = Channel.CreateUnbounded<DateTimeOffset?>();

    public async Task InitializeAsync() => _receiver = await AlertReceiver.StartAsync();

    public async Task DisposeAsync() => await _receiver.DisposeAsync();

    private BudgetAlert Alert(int threshold, long spent, string budgetId = BudgetId) => new(
        budgetId, WorkspaceId, BudgetScopes.Workspace, WorkspaceId, null, _periodStart, _periodStart.AddMonths(1),
        threshold, TenUsd, spent, _start);

    [Fact]
    public async Task Each_threshold_is_posted_once_signed_with_the_budget_secret()
    {
        await using var gateway = await StartGatewayAsync();
        await SeedAsync(gateway, _receiver.Url);
        await SeedAsync(gateway, alertUrl: null, budgetId: "bud_silent");

        Sink(gateway).Raise(Alert(50, 5_000_000_000_001));
        Sink(gateway).Raise(Alert(80, 8_000_000_000_000));
        Sink(gateway).Raise(Alert(50, 5_100_000_000_000)); // the same threshold again: not written, not sent
        Sink(gateway).Raise(Alert(50, 5_000_000_000_000, "bud_silent")); // no alert_url: nobody to tell
        Sink(gateway).Raise(Alert(100, 10_000_000_000_000));

        var received = new List<AlertReceiver.Request>();
        for (var i = 0; i < 3; i++)
        {
            received.Add(await _receiver.NextAsync());
        }
        // The outbox is written in the order alerts are raised, so once the 100 % row exists every earlier raise is settled.
        var rows = await RowsAsync(gateway);
        Assert.Equal([50, 80, 100], rows.Select(r => r.Threshold).Order());
        Assert.All(rows, r => Assert.Equal(BudgetId, r.BudgetId));

        var ids = new HashSet<string>();
        foreach (var (request, spent) in received.OrderBy(r => ThresholdOf(r.Body)).Zip(new[] { "5.000000000001", "8", "10" }))
        {
            Assert.Equal("application/json", request.ContentType);
            var timestamp = AssertSigned(request, _secret);
            Assert.Equal(_start.ToUnixTimeSeconds(), timestamp);
            var id = JsonNode.Parse(request.Body)!["id"]!.GetValue<string>();
            Assert.Matches("^evt_[0-9A-Za-z]{20}$", id);
            Assert.True(ids.Add(id));
            var threshold = ThresholdOf(request.Body);
            Assert.Equal(
                "{\"id\":\"" + id + "\",\"type\":\"budget.threshold_reached\",\"created\":" + _start.ToUnixTimeSeconds() + ","
                + "\"data\":{\"budget_id\":\"bud_alerts\",\"workspace_id\":\"ws_alerts\",\"scope\":\"workspace\",\"subject_id\":\"ws_alerts\","
                + "\"user_id\":null,\"threshold_percent\":" + threshold + ",\"amount_usd\":\"10\",\"spent_usd\":\"" + spent + "\","
                + "\"period_start\":" + _periodStart.ToUnixTimeSeconds() + ",\"period_end\":" + _periodStart.AddMonths(1).ToUnixTimeSeconds() + "}}",
                request.Body);
        }
        Assert.Equal(3, _receiver.Count);
    }

    [Fact]
    public async Task An_app_user_budget_alerts_once_per_user()
    {
        await using var gateway = await StartGatewayAsync();
        await SeedAsync(gateway, _receiver.Url, budgetScope: BudgetScopes.AppUser);
        BudgetAlert ForUser(string user) => Alert(80, 8_000_000_000_000) with { Scope = BudgetScopes.AppUser, SubjectId = "app_1", UserId = user };

        Sink(gateway).Raise(ForUser("user_a"));
        Sink(gateway).Raise(ForUser("user_a"));
        Sink(gateway).Raise(ForUser("user_b"));

        var users = new List<string>();
        for (var i = 0; i < 2; i++)
        {
            var request = await _receiver.NextAsync();
            var data = JsonNode.Parse(request.Body)!["data"]!;
            Assert.Equal(("app_user", "app_1"), (data["scope"]!.GetValue<string>(), data["subject_id"]!.GetValue<string>()));
            users.Add(data["user_id"]!.GetValue<string>());
        }
        Assert.Equal(["user_a", "user_b"], users.Order());
        Assert.Equal(["user_a", "user_b"], (await RowsAsync(gateway)).Select(r => r.UserId).Order());
        Assert.Equal(2, _receiver.Count);
    }

    [Fact]
    public async Task A_failing_receiver_gets_the_alert_again_after_5_s_then_10_s_and_acknowledges_the_third()
    {
        _receiver.FailFirst(2);
        await using var gateway = await StartGatewayAsync();
        var first = await RaiseAndFailFirstAsync(gateway, Alert(80, 8_000_000_000_000));
        var row = Assert.Single(await RowsAsync(gateway));
        Assert.Equal((1, "HTTP 500", (DateTimeOffset?)null), (row.Attempts, row.LastError, row.DeliveredAt));

        gateway.Time.Advance(TimeSpan.FromSeconds(5));
        var second = await _receiver.NextAsync();
        Assert.Equal(500, second.Status);
        await ParkedAtAsync(_start + TimeSpan.FromSeconds(15));

        gateway.Time.Advance(TimeSpan.FromSeconds(10));
        var third = await _receiver.NextAsync();
        Assert.Equal(200, third.Status);
        await ParkedAtAsync(null);

        // Every attempt sends the payload fixed when the alert was raised, signed at the time of that attempt.
        Assert.Equal(first.Body, second.Body);
        Assert.Equal(first.Body, third.Body);
        Assert.Equal(_start.ToUnixTimeSeconds(), AssertSigned(first, _secret));
        Assert.Equal(_start.ToUnixTimeSeconds() + 5, AssertSigned(second, _secret));
        Assert.Equal(_start.ToUnixTimeSeconds() + 15, AssertSigned(third, _secret));
        row = Assert.Single(await RowsAsync(gateway));
        Assert.Equal((3, (string?)null, (DateTimeOffset?)(_start + TimeSpan.FromSeconds(15))), (row.Attempts, row.LastError, row.DeliveredAt));
        Assert.Equal(3, _receiver.Count);
    }

    [Fact]
    public async Task An_alert_not_acknowledged_within_3_days_is_given_up()
    {
        _receiver.FailFirst(int.MaxValue);
        await using var gateway = await StartGatewayAsync();
        await RaiseAndFailFirstAsync(gateway, Alert(100, TenUsd));
        gateway.Time.Advance(BudgetAlertDeliverer.GiveUpAfter);
        Assert.Equal(500, (await _receiver.NextAsync()).Status);
        await ParkedAtAsync(null);

        var row = Assert.Single(await RowsAsync(gateway));
        Assert.Equal((2, "gave up after 2 attempts: HTTP 500", BudgetAlertDeliverer.Never, (DateTimeOffset?)null),
            (row.Attempts, row.LastError, row.NextAttemptAt, row.DeliveredAt));

        // Nothing more is sent: a later look finds nothing due.
        gateway.Time.Advance(TimeSpan.FromHours(1));
        await ParkedAtAsync(null);
        Assert.Equal(2, _receiver.Count);
    }

    [Fact]
    public async Task An_undelivered_alert_is_sent_by_the_next_gateway_and_not_written_again()
    {
        _receiver.FailFirst(1);
        await using var gateway = await StartGatewayAsync();
        var first = await RaiseAndFailFirstAsync(gateway, Alert(80, 8_000_000_000_000));

        // A new process a minute later, on the same data directory: the secret still reads, the row is due.
        var later = _start + TimeSpan.FromMinutes(1);
        await gateway.StopAsync();
        gateway.Time.SetUtcNow(later);
        await gateway.RestartAsync();
        var second = await _receiver.NextAsync();
        Assert.Equal(200, second.Status);
        Assert.Equal(first.Body, second.Body);
        Assert.Equal(later.ToUnixTimeSeconds(), AssertSigned(second, _secret));

        // The counters rebuilt after a restart may raise the same threshold again: it was written once, it is sent once.
        Sink(gateway).Raise(Alert(80, 8_000_000_000_000));
        Sink(gateway).Raise(Alert(100, TenUsd));
        var third = await _receiver.NextAsync();
        Assert.Equal(100, ThresholdOf(third.Body));
        Assert.Equal([80, 100], (await RowsAsync(gateway)).Select(r => r.Threshold).Order());
        Assert.Equal(3, _receiver.Count);
    }

    [Fact]
    public void A_secret_is_whsec_and_32_random_bytes_and_reads_back_only_through_data_protection()
    {
        var a = BudgetAlertSecrets.NewSecret();
        Assert.Matches("^whsec_[A-Za-z0-9_-]{43}$", a);
        Assert.NotEqual(a, BudgetAlertSecrets.NewSecret());
        Assert.Equal(32, Convert.FromBase64String(a[6..].Replace('-', '+').Replace('_', '/') + "=").Length);

        var secrets = new BudgetAlertSecrets(new Microsoft.AspNetCore.DataProtection.EphemeralDataProtectionProvider());
        var stored = secrets.Protect(a);
        Assert.DoesNotContain(a, stored, StringComparison.Ordinal);
        Assert.Equal(a, secrets.Unprotect(stored));
        Assert.Null(secrets.Unprotect("not-protected"));
        // Another key ring (another installation) cannot read it.
        Assert.Null(new BudgetAlertSecrets(new Microsoft.AspNetCore.DataProtection.EphemeralDataProtectionProvider()).Unprotect(stored));
    }

    [Theory]
    [InlineData("https://hooks.example.com/budget?token=abc", true)]
    [InlineData("http://127.0.0.1:8080/hook", true)]
    [InlineData(null, false)]
    [InlineData("", false)]
    [InlineData("/relative/path", false)]
    [InlineData("hooks.example.com/budget", false)]
    [InlineData("ftp://hooks.example.com/budget", false)]
    [InlineData("file:///etc/passwd", false)]
    [InlineData("https://user:pass@hooks.example.com/budget", false)]
    public void An_alert_url_must_be_an_absolute_http_or_https_url(string? url, bool valid)
    {
        Assert.Equal(valid, BudgetAlertSecrets.TryValidateUrl(url, out var error));
        if (!valid)
        {
            Assert.Equal((400, "invalid_request_error", "invalid_value", "alert_url"), (error.Status, error.Type, error.Code, error.Param));
        }
    }

    [Fact]
    public void The_retry_delay_doubles_from_5_s_up_to_an_hour()
    {
        var delays = Enumerable.Range(1, 12).Select(n => (int)BudgetAlertDeliverer.RetryDelay(n).TotalSeconds);
        Assert.Equal([5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600], delays);
        Assert.Equal(TimeSpan.FromHours(1), BudgetAlertDeliverer.RetryDelay(int.MaxValue));
    }

    /// <summary>The gateway at <see cref="_start"/> on its own fake clock, each node's deliverer reporting its sleeps to <see cref="_parks"/>.</summary>
    private Task<BillingHost> StartGatewayAsync() => BillingHost.StartAsync(_start, beforeStart: services =>
        services.GetRequiredService<BudgetAlertDeliverer>().Parked = due => _parks.Writer.TryWrite(due));

    /// <summary>
    /// Gives the budget the receiver's URL, raises <paramref name="alert"/> and checks that its first post was refused
    /// (500) and its retry parked 5 s later; returns that first post.
    /// </summary>
    private async Task<AlertReceiver.Request> RaiseAndFailFirstAsync(BillingHost gateway, BudgetAlert alert)
    {
        await SeedAsync(gateway, _receiver.Url);
        Sink(gateway).Raise(alert);
        var first = await _receiver.NextAsync();
        Assert.Equal(500, first.Status);
        await ParkedAtAsync(_start + TimeSpan.FromSeconds(5));
        return first;
    }

    private static IBudgetAlertSink Sink(BillingHost gateway) => gateway.Services.GetRequiredService<IBudgetAlertSink>();

    /// <summary>
    /// Waits for the deliverer to go to sleep expecting <paramref name="due"/> as the next alert's time (null: nothing
    /// pending). A sleep cut short by a wake-up from the outbox parks again with the same time, so earlier sleeps are
    /// passed over; a deliverer that never parks at <paramref name="due"/> fails the test with every sleep it took.
    /// </summary>
    private async Task ParkedAtAsync(DateTimeOffset? due)
    {
        var seen = new List<DateTimeOffset?>();
        using var deadline = new CancellationTokenSource(Timeout);
        try
        {
            while (true)
            {
                var parked = await _parks.Reader.ReadAsync(deadline.Token);
                if (parked == due)
                {
                    return;
                }
                seen.Add(parked);
            }
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested)
        {
            Assert.Fail($"the deliverer never parked until {due?.ToString("O") ?? "nothing pending"}; it parked until: " +
                string.Join(", ", seen.Select(d => d?.ToString("O") ?? "nothing pending")));
        }
    }

    private static async Task<List<BudgetAlertEntity>> RowsAsync(BillingHost gateway)
    {
        await using var scope = gateway.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<LatticeDbContext>().BudgetAlerts.AsNoTracking().OrderBy(a => a.Id).ToListAsync();
    }

    /// <summary>Checks the signature header as a receiver would, from the documented scheme alone; returns its timestamp.</summary>
    private static long AssertSigned(AlertReceiver.Request request, string secret)
    {
        var parts = request.Signature.Split(',').Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);
        Assert.Equal(["t", "v1"], parts.Keys);
        using var hmac = new HMACSHA256(Encoding.UTF8.GetBytes(secret));
        var expected = Convert.ToHexString(hmac.ComputeHash(Encoding.UTF8.GetBytes(parts["t"] + "." + request.Body))).ToLowerInvariant();
        Assert.Equal(expected, parts["v1"]);
        return long.Parse(parts["t"], CultureInfo.InvariantCulture);
    }

    private static int ThresholdOf(string body) => JsonNode.Parse(body)!["data"]!["threshold_percent"]!.GetValue<int>();

    private async Task SeedAsync(BillingHost gateway, string? alertUrl, string budgetId = BudgetId, string budgetScope = BudgetScopes.Workspace)
    {
        await using var scope = gateway.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        if (!await db.Workspaces.AnyAsync(w => w.Id == WorkspaceId))
        {
            db.Workspaces.Add(new WorkspaceEntity { Id = WorkspaceId, Name = "alerts", CreatedAt = _start });
        }
        db.Budgets.Add(new BudgetEntity
        {
            Id = budgetId,
            WorkspaceId = WorkspaceId,
            Scope = budgetScope,
            SubjectId = budgetId == BudgetId ? WorkspaceId : budgetId,
            AmountPicoUsd = TenUsd,
            AlertUrl = alertUrl,
            AlertSecret = alertUrl is null ? null : gateway.Services.GetRequiredService<BudgetAlertSecrets>().Protect(_secret),
            CreatedAt = _start,
            UpdatedAt = _start,
        });
        await db.SaveChangesAsync();
    }
}
