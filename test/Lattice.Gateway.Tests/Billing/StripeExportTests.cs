using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Billing.Stripe;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Tests.Identity;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Billing;

/// <summary>
/// The Stripe export against a stand-in speaking Stripe's meter-event wire format: every charged record of a workspace
/// with a customer reaches it once (identifier = request id, value = pico-USD), 429 and 500 are retried after the
/// backoff on the gateway's clock, and a gateway stopped in the middle resumes at its cursor.
/// </summary>
public sealed class StripeExportTests : IAsyncLifetime
{
    private static readonly DateTimeOffset Now = new(2026, 3, 15, 12, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan RetryBaseDelay = TimeSpan.FromSeconds(2);
    private const string Prices = "{\"input_per_mtok\":0.15,\"output_per_mtok\":0.6}";
    private const string EventName = "lattice_usage";

    private StripeStandIn _stripe = null!;
    private BillingHost _host = null!;
    private string _billed = "";
    private string _unbilled = "";

    public async Task InitializeAsync()
    {
        _stripe = await StripeStandIn.StartAsync();
        _host = await BillingHost.StartAsync(Now, new()
        {
            ["Lattice:Stripe:ApiKey"] = StripeStandIn.ApiKey,
            ["Lattice:Stripe:MeterEventName"] = EventName,
            ["Lattice:Stripe:BaseUrl"] = _stripe.Url,
            ["Lattice:Stripe:BatchSize"] = "10",
            ["Lattice:Stripe:Concurrency"] = "4",
            ["Lattice:Stripe:PollInterval"] = "00:00:01",
            ["Lattice:Stripe:RetryBaseDelay"] = "00:00:02",
            ["Lattice:Stripe:RetryMaxDelay"] = "00:00:08",
        });
        _stripe.Clock = _host.Time;
        (_billed, _) = await _host.NewWorkspaceAsync("billed");
        (_unbilled, _) = await _host.NewWorkspaceAsync("unbilled");
        using var admin = _host.Client(BillingHost.AdminKey);
        var (status, body) = await Credentials.SendAsync(admin, "PUT", $"admin/v1/workspaces/{_billed}/billing", new JsonObject { ["stripe_customer_id"] = "cus_Billed123" });
        Assert.True(status == HttpStatusCode.OK, body);
    }

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        await _stripe.DisposeAsync();
    }

    /// <summary>
    /// <paramref name="count"/> charged records of the billed workspace with odd costs, interleaved with records that
    /// must never be sent: a free one, and the unbilled workspace's. Returns the billed ones by request id.
    /// </summary>
    private async Task<Dictionary<string, UsageRecordEntity>> SeedAsync(int count)
    {
        var billed = new Dictionary<string, UsageRecordEntity>();
        var all = new List<UsageRecordEntity>();
        for (var i = 0; i < count; i++)
        {
            var record = BillingHost.Record($"req_s{i:D3}", Now.AddMinutes(-count + i).AddMilliseconds(i * 7), _billed, 1_000_003L * (i + 1) + i, Prices);
            billed[record.RequestId] = record;
            all.Add(record);
            if (i % 10 == 3)
            {
                all.Add(BillingHost.Record($"req_u{i:D3}", Now.AddMinutes(-count + i), _unbilled, 77, Prices));
            }
        }
        all.Add(BillingHost.Record("req_free", Now.AddMinutes(-1), _billed, 0));
        await _host.SeedAsync(all);
        return billed;
    }

    /// <summary>Moves the gateway's clock a second at a time (its poll and backoff waits) until <paramref name="done"/> holds.</summary>
    private async Task PumpUntilAsync(Func<bool> done, string what)
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (!done())
        {
            Assert.False(deadline.IsCancellationRequested, "Timed out waiting for " + what);
            _host.Time.Advance(TimeSpan.FromSeconds(1));
            await _stripe.WaitUntilAsync(done, TimeSpan.FromMilliseconds(100));
        }
    }

    private async Task<List<(long Position, string RequestId)>> LedgerOrderAsync()
    {
        await using var scope = _host.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        var rows = await db.Database.SqlQueryRaw<LedgerRow>("SELECT rowid AS \"Position\", \"RequestId\" FROM \"usage_records\" ORDER BY rowid").ToListAsync();
        return rows.Select(r => (r.Position, r.RequestId)).ToList();
    }

    private sealed class LedgerRow
    {
        public long Position { get; set; }
        public required string RequestId { get; set; }
    }

    private async Task<long> CursorAsync()
    {
        await using var scope = _host.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        return await db.ExportCursors.AsNoTracking().Where(c => c.Name == "stripe").Select(c => c.Position).FirstOrDefaultAsync();
    }

    private static void AssertEventsMatch(Dictionary<string, UsageRecordEntity> billed, IEnumerable<StripeStandIn.MeterEvent> events)
    {
        foreach (var e in events)
        {
            Assert.True(billed.TryGetValue(e.Identifier, out var record), "Sent a record that is not billable: " + e.Identifier);
            Assert.Equal(EventName, e.EventName);
            Assert.Equal("cus_Billed123", e.CustomerId);
            Assert.Equal(record.CostPicoUsd.ToString(CultureInfo.InvariantCulture), e.Value);
            Assert.Equal(record.CreatedAt.ToUnixTimeSeconds(), e.Timestamp);
        }
    }

    [Fact]
    public async Task Every_charged_record_of_a_customer_reaches_stripe_exactly_once()
    {
        var billed = await SeedAsync(35);
        var last = (await LedgerOrderAsync())[^1].Position;
        long cursor = 0;
        await PumpUntilAsync(() => _stripe.Accepted.Count >= 35 && (cursor = CursorAsync().GetAwaiter().GetResult()) == last, "every event and the cursor at the end");

        Assert.Equal(last, cursor);
        Assert.Equal(billed.Keys.Order(StringComparer.Ordinal), _stripe.Accepted.Select(e => e.Identifier).Order(StringComparer.Ordinal));
        Assert.Equal(35, _stripe.Attempts.Count);
        AssertEventsMatch(billed, _stripe.Accepted);
        // The ledger's total is Stripe's total.
        Assert.Equal(billed.Values.Sum(r => r.CostPicoUsd), _stripe.Accepted.Sum(e => long.Parse(e.Value, CultureInfo.InvariantCulture)));
    }

    [Theory]
    [InlineData(429)]
    [InlineData(500)]
    public async Task A_failed_event_is_sent_again_after_the_backoff_and_taken_once(int status)
    {
        _stripe.FailNext(status);
        var billed = await SeedAsync(12);
        await PumpUntilAsync(() => _stripe.Accepted.Count >= 12, "every event");

        var failed = Assert.Single(_stripe.Attempts, a => a.Status == status);
        var retried = Assert.Single(_stripe.Attempts, a => a.Identifier == failed.Identifier && a.Status == 200);
        Assert.True(retried.ReceivedAt - failed.ReceivedAt >= RetryBaseDelay, $"Retried after {retried.ReceivedAt - failed.ReceivedAt}, before the backoff.");
        Assert.Equal(13, _stripe.Attempts.Count);
        Assert.Equal(billed.Keys.Order(StringComparer.Ordinal), _stripe.Accepted.Select(e => e.Identifier).Order(StringComparer.Ordinal));
        AssertEventsMatch(billed, _stripe.Accepted);
    }

    [Fact]
    public async Task A_gateway_stopped_in_the_middle_resumes_at_its_cursor_and_misses_nothing()
    {
        var billed = await SeedAsync(45);
        var order = await LedgerOrderAsync();
        // Stripe stops answering after 25 events: two batches of 10 are done, the third is in flight.
        _stripe.HoldAfter(25);
        await PumpUntilAsync(() => _stripe.Accepted.Count >= 25 && _stripe.Held > 0, "25 events and one held");
        await _host.StopAsync();

        // The cursor is at the end of a batch of ledger records (10 each, billable or not), every billable record up
        // to it was taken, and the batch after it was not finished.
        long cursor;
        await using (var db = _host.OpenDatabase())
        {
            cursor = await db.ExportCursors.AsNoTracking().Where(c => c.Name == "stripe").Select(c => c.Position).SingleAsync();
        }
        var batchEnd = order.FindIndex(r => r.Position == cursor) + 1;
        Assert.True(batchEnd >= 10 && batchEnd % 10 == 0, $"The cursor {cursor} is not at a batch's end.");
        var accepted = _stripe.Accepted.Select(e => e.Identifier).ToHashSet();
        Assert.All(order.Take(batchEnd).Where(r => billed.ContainsKey(r.RequestId)), r => Assert.Contains(r.RequestId, accepted));
        var inFlight = order.Skip(batchEnd).Take(10).Where(r => billed.ContainsKey(r.RequestId)).Select(r => r.RequestId).ToList();
        Assert.Contains(inFlight, id => !accepted.Contains(id));

        _stripe.Release();
        await _host.RestartAsync();
        await PumpUntilAsync(() => _stripe.Accepted.Select(e => e.Identifier).Distinct().Count() >= 45, "every event after the restart");

        Assert.Equal(billed.Keys.Order(StringComparer.Ordinal), _stripe.Accepted.Select(e => e.Identifier).Distinct().Order(StringComparer.Ordinal));
        // Only the batch in flight at the stop can have been sent twice, under the same identifiers (Stripe keeps one).
        var twice = _stripe.Accepted.GroupBy(e => e.Identifier).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
        Assert.All(twice, id => Assert.Contains(id, inFlight));
        AssertEventsMatch(billed, _stripe.Accepted);
    }

    [Fact]
    public async Task The_billing_route_is_the_operators_and_checks_the_customer_id()
    {
        using var admin = _host.Client(BillingHost.AdminKey);
        var (status, body) = await Credentials.SendAsync(admin, "GET", $"admin/v1/workspaces/{_billed}/billing");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal($"{{\"object\":\"workspace.billing\",\"workspace_id\":\"{_billed}\",\"stripe_customer_id\":\"cus_Billed123\"}}", body);

        foreach (var (bad, param) in new (JsonNode Body, string? Param)[]
        {
            (new JsonObject { ["stripe_customer_id"] = "acct_123" }, "stripe_customer_id"),
            (new JsonObject { ["stripe_customer_id"] = 42 }, "stripe_customer_id"),
            (new JsonObject(), "stripe_customer_id"),
            (new JsonObject { ["stripe_customer_id"] = null, ["extra"] = 1 }, "extra"),
        })
        {
            var (badStatus, error) = await Credentials.SendAsync(admin, "PUT", $"admin/v1/workspaces/{_billed}/billing", bad);
            Assert.Equal(HttpStatusCode.BadRequest, badStatus);
            Assert.Equal(param, Credentials.Error(error)["param"]?.GetValue<string>());
        }

        var (missing, notFound) = await Credentials.SendAsync(admin, "PUT", "admin/v1/workspaces/ws_nope/billing", new JsonObject { ["stripe_customer_id"] = null });
        Assert.Equal(HttpStatusCode.NotFound, missing);
        Assert.Equal("not_found", Credentials.Error(notFound)["code"]!.GetValue<string>());

        // A workspace's own admin key does not choose who pays.
        var (_, workspaceAdmin) = await _host.NewWorkspaceAsync("self", Scopes.WorkspaceAdmin);
        using var self = _host.Client(workspaceAdmin);
        var (forbidden, scopeError) = await Credentials.SendAsync(self, "PUT", $"admin/v1/workspaces/{_billed}/billing", new JsonObject { ["stripe_customer_id"] = null });
        Assert.Equal(HttpStatusCode.Forbidden, forbidden);
        Assert.Equal("insufficient_scopes", Credentials.Error(scopeError)["code"]!.GetValue<string>());

        var (cleared, clearedBody) = await Credentials.SendAsync(admin, "PUT", $"admin/v1/workspaces/{_billed}/billing", new JsonObject { ["stripe_customer_id"] = null });
        Assert.Equal(HttpStatusCode.OK, cleared);
        Assert.Null(JsonNode.Parse(clearedBody)!["stripe_customer_id"]);
    }

    [Theory]
    [InlineData(200, null, MeterEventOutcome.Accepted)]
    [InlineData(400, null, MeterEventOutcome.Rejected)]
    [InlineData(400, true, MeterEventOutcome.Retry)]
    [InlineData(404, null, MeterEventOutcome.Rejected)]
    [InlineData(401, null, MeterEventOutcome.Retry)]
    [InlineData(403, null, MeterEventOutcome.Retry)]
    [InlineData(409, null, MeterEventOutcome.Retry)]
    [InlineData(409, false, MeterEventOutcome.Rejected)]
    [InlineData(429, null, MeterEventOutcome.Retry)]
    [InlineData(500, false, MeterEventOutcome.Retry)]
    [InlineData(503, null, MeterEventOutcome.Retry)]
    public void Each_answer_has_one_meaning(int status, bool? shouldRetry, MeterEventOutcome expected)
    {
        Assert.Equal(expected, StripeMeterEvents.Classify(status, shouldRetry));
    }
}
