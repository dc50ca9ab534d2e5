using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Billing.Invoices;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Tests.Identity;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Billing;

/// <summary>
/// <c>/v1/invoices</c> over a ledger seeded directly: totals equal the ledger's sum to the pico-dollar, UTC month
/// boundaries, lines per model, task and prices, draft then final after the grace period (a fake clock), a final
/// invoice unchanged by late records, the CSV, and one workspace never seeing another's invoice.
/// </summary>
public abstract class InvoiceTests : IAsyncLifetime
{
    /// <summary>The <c>Lattice:Database</c> setting; null: SQLite.</summary>
    protected abstract Task<string?> DatabaseAsync();

    protected virtual void Started(IServiceProvider services)
    {
    }

    /// <summary>Mid-March 2026, UTC: March is open.</summary>
    private static readonly DateTimeOffset Now = new(2026, 3, 15, 12, 0, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset March = new(2026, 3, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset April = new(2026, 4, 1, 0, 0, 0, TimeSpan.Zero);

    private const string CheapPrices = "{\"input_per_mtok\":0.15,\"output_per_mtok\":0.6}";
    private const string DearPrices = "{\"input_per_mtok\":2.5,\"cached_input_per_mtok\":1.25,\"output_per_mtok\":10}";

    private BillingHost _host = null!;
    private string _workspace = "";
    private string _key = "";
    private string _otherKey = "";

    public async Task InitializeAsync()
    {
        _host = await BillingHost.StartAsync(Now, database: await DatabaseAsync());
        Started(_host.Services);
        (_workspace, _key) = await _host.NewWorkspaceAsync("a", Scopes.UsageRead);
        (_, _otherKey) = await _host.NewWorkspaceAsync("b", Scopes.UsageRead);
    }

    public async Task DisposeAsync() => await _host.DisposeAsync();

    private string MarchId => InvoiceBook.IdFor(_workspace, March);

    private async Task<JsonObject> GetJsonAsync(string path, string? key = null)
    {
        using var http = _host.Client(key ?? _key);
        using var response = await http.GetAsync(path);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{path}: {(int)response.StatusCode} {text}");
        return JsonNode.Parse(text)!.AsObject();
    }

    private static decimal Usd(JsonNode? node) => decimal.Parse(node!.GetValue<string>(), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture);

    [Fact]
    public async Task The_total_is_the_sum_of_the_months_ledger_costs_to_the_pico_dollar()
    {
        var random = new Random(9);
        var records = new List<UsageRecordEntity>();
        long expected = 0;
        string[] models = ["lovelace:chat", "lovelace:embed", "lovelace:whisper"];
        for (var i = 0; i < 600; i++)
        {
            // Odd costs: sums that any rounding or floating point would get wrong.
            var cost = random.NextInt64(1, 5_000_000_000) * 7 + 3;
            var at = March + TimeSpan.FromSeconds(random.NextInt64(0, 31L * 86400));
            records.Add(BillingHost.Record($"req_m{i:D4}", at, _workspace, cost, i % 2 == 0 ? CheapPrices : DearPrices, models[i % 3]));
            expected += cost;
        }
        // The month's edges, in UTC: the last millisecond of February and the first of April are not March's.
        records.Add(BillingHost.Record("req_feb", March.AddMilliseconds(-1), _workspace, 1_000_000, CheapPrices));
        records.Add(BillingHost.Record("req_apr", April, _workspace, 2_000_000, CheapPrices));
        records.Add(BillingHost.Record("req_first_ms", March, _workspace, 5, CheapPrices));
        records.Add(BillingHost.Record("req_last_ms", April.AddMilliseconds(-1), _workspace, 11, CheapPrices));
        expected += 16;
        // Free (no prices, no cost): not billing.
        records.Add(BillingHost.Record("req_free", March.AddDays(2), _workspace, 0));
        await _host.SeedAsync(records);

        var invoice = await GetJsonAsync($"v1/invoices/{MarchId}");
        Assert.Equal("invoice", invoice["object"]!.GetValue<string>());
        Assert.Equal(MarchId, invoice["id"]!.GetValue<string>());
        Assert.Equal(_workspace, invoice["workspace_id"]!.GetValue<string>());
        Assert.Equal(March.ToUnixTimeSeconds(), invoice["period_start"]!.GetValue<long>());
        Assert.Equal(April.ToUnixTimeSeconds(), invoice["period_end"]!.GetValue<long>());
        Assert.Equal("usd", invoice["currency"]!.GetValue<string>());
        Assert.Equal("draft", invoice["status"]!.GetValue<string>());
        Assert.Null(invoice["finalized_at"]);
        Assert.Equal(CostCalculator.FormatUsd(expected), invoice["total_usd"]!.GetValue<string>());
        Assert.Equal(CostCalculator.FormatUsd(expected), invoice["subtotal_usd"]!.GetValue<string>());

        var lines = invoice["lines"]!.AsArray();
        Assert.Equal(expected, lines.Sum(l => (long)(Usd(l!["amount_usd"]) * CostCalculator.PicoPerUsd)));
        Assert.Equal(602, lines.Sum(l => l!["quantities"]!["requests"]!.GetValue<long>()));
        // The ledger's own sum, read back independently.
        await using var scope = _host.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        var ledger = await db.UsageRecords.Where(r => r.WorkspaceId == _workspace && r.CreatedAt >= March && r.CreatedAt < April).SumAsync(r => r.CostPicoUsd);
        Assert.Equal(ledger, expected);
    }

    [Fact]
    public async Task Lines_are_one_per_model_task_and_prices_with_exact_amounts()
    {
        await _host.SeedAsync(
        [
            BillingHost.Record("req_1", March.AddDays(1), _workspace, 1_000_001, CheapPrices),
            BillingHost.Record("req_2", March.AddDays(2), _workspace, 2_000_002, CheapPrices),
            // The same model and task at new prices (a price change mid-month): a line of its own.
            BillingHost.Record("req_3", March.AddDays(3), _workspace, 30_000_003, DearPrices),
            BillingHost.Record("req_4", March.AddDays(4), _workspace, 7, CheapPrices, task: "embeddings"),
            // Charged at a price and cost nothing (e.g. a failed request): counted, amount 0.
            BillingHost.Record("req_5", March.AddDays(5), _workspace, 0, DearPrices),
        ]);

        var lines = (await GetJsonAsync($"v1/invoices/{MarchId}"))["lines"]!.AsArray();
        Assert.Equal(3, lines.Count);
        var cheap = lines[0]!;
        Assert.Equal("lovelace:chat", cheap["model"]!.GetValue<string>());
        Assert.Equal("chat.completions", cheap["task"]!.GetValue<string>());
        Assert.Equal("0.000003000003", cheap["amount_usd"]!.GetValue<string>());
        Assert.Equal(
            "{\"requests\":2,\"input_tokens\":200,\"cached_input_tokens\":20,\"output_tokens\":40,\"audio_seconds\":0}",
            cheap["quantities"]!.ToJsonString());
        Assert.Equal(
            "{\"input_per_mtok\":0.15,\"cached_input_per_mtok\":null,\"output_per_mtok\":0.6,\"audio_per_minute\":null,\"per_request\":null}",
            cheap["unit_prices"]!.ToJsonString());
        var dear = lines[1]!;
        Assert.Equal("chat.completions", dear["task"]!.GetValue<string>());
        Assert.Equal("0.000030000003", dear["amount_usd"]!.GetValue<string>());
        Assert.Equal(2, dear["quantities"]!["requests"]!.GetValue<long>());
        Assert.Equal(1.25m, dear["unit_prices"]!["cached_input_per_mtok"]!.GetValue<decimal>());
        Assert.Equal("embeddings", lines[2]!["task"]!.GetValue<string>());
        Assert.Equal("0.000000000007", lines[2]!["amount_usd"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_month_is_a_draft_through_the_grace_period_then_final_and_never_changes()
    {
        await _host.SeedAsync([BillingHost.Record("req_1", March.AddDays(3), _workspace, 1_000, CheapPrices)]);

        // Half an hour after March ended: within the (default, one hour) grace period a late record still counts.
        _host.Time.SetUtcNow(April.AddMinutes(30));
        await _host.SeedAsync([BillingHost.Record("req_late", April.AddMilliseconds(-1), _workspace, 20, CheapPrices)]);
        var draft = await GetJsonAsync($"v1/invoices/{MarchId}");
        Assert.Equal("draft", draft["status"]!.GetValue<string>());
        Assert.Equal(CostCalculator.FormatUsd(1_020), draft["total_usd"]!.GetValue<string>());

        _host.Time.SetUtcNow(April.AddHours(1));
        var final = await GetJsonAsync($"v1/invoices/{MarchId}");
        Assert.Equal("final", final["status"]!.GetValue<string>());
        Assert.Equal(April.AddHours(1).ToUnixTimeSeconds(), final["finalized_at"]!.GetValue<long>());
        Assert.Equal(CostCalculator.FormatUsd(1_020), final["total_usd"]!.GetValue<string>());

        // A record arriving after finalisation does not change the invoice, byte for byte.
        await _host.SeedAsync([BillingHost.Record("req_too_late", March.AddDays(10), _workspace, 999_999, CheapPrices)]);
        _host.Time.Advance(TimeSpan.FromDays(3));
        var again = await GetJsonAsync($"v1/invoices/{MarchId}");
        Assert.Equal(final.ToJsonString(), again.ToJsonString());

        // The list: April's draft first, then March's final invoice.
        var list = await GetJsonAsync("v1/invoices");
        Assert.Equal("list", list["object"]!.GetValue<string>());
        Assert.False(list["has_more"]!.GetValue<bool>());
        Assert.Equal([InvoiceBook.IdFor(_workspace, April), MarchId], list["data"]!.AsArray().Select(i => i!["id"]!.GetValue<string>()));
        Assert.Equal(["draft", "final"], list["data"]!.AsArray().Select(i => i!["status"]!.GetValue<string>()));
        Assert.Equal(final.ToJsonString(), list["data"]![1]!.ToJsonString());
    }

    [Fact]
    public async Task The_background_finaliser_writes_due_invoices_once()
    {
        await _host.SeedAsync(
        [
            BillingHost.Record("req_jan", March.AddMonths(-2).AddDays(5), _workspace, 3, CheapPrices),
            BillingHost.Record("req_mar", March.AddDays(5), _workspace, 4, CheapPrices),
        ]);
        _host.Time.SetUtcNow(April.AddHours(2));
        async Task<int> FinalizeAsync()
        {
            await using var scope = _host.Services.CreateAsyncScope();
            return await scope.ServiceProvider.GetRequiredService<InvoiceBook>().FinalizeDueAsync(CancellationToken.None);
        }
        // The background service may have run already on the advanced clock; either way January to March are written once.
        await FinalizeAsync();
        Assert.Equal(0, await FinalizeAsync());

        await using var scope = _host.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        var stored = await db.Invoices.AsNoTracking().Where(i => i.WorkspaceId == _workspace).OrderBy(i => i.PeriodStart).ToListAsync();
        Assert.Equal([March.AddMonths(-2), March.AddMonths(-1), March], stored.Select(i => i.PeriodStart));
        Assert.Equal([3L, 0L, 4L], stored.Select(i => i.SubtotalPicoUsd));
    }

    [Fact]
    public async Task The_csv_has_one_row_per_line_and_its_amounts_add_up_to_the_total()
    {
        await _host.SeedAsync(
        [
            BillingHost.Record("req_1", March.AddDays(1), _workspace, 1_000_001, CheapPrices),
            BillingHost.Record("req_2", March.AddDays(2), _workspace, 30_000_003, DearPrices),
            BillingHost.Record("req_3", March.AddDays(3), _workspace, 123, CheapPrices, model: "acme:odd,name\"x"),
        ]);
        var invoice = await GetJsonAsync($"v1/invoices/{MarchId}");

        using var http = _host.Client(_key);
        using var response = await http.GetAsync($"v1/invoices/{MarchId}/lines.csv");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/csv", response.Content.Headers.ContentType!.MediaType);
        var csv = await response.Content.ReadAsStringAsync();
        Assert.Equal(
            InvoiceCsv.Header + "\r\n"
            + "\"acme:odd,name\"\"x\",chat.completions,1,100,10,20,0,0.15,,0.6,,,0.000000000123\r\n"
            + "lovelace:chat,chat.completions,1,100,10,20,0,0.15,,0.6,,,0.000001000001\r\n"
            + "lovelace:chat,chat.completions,1,100,10,20,0,2.5,1.25,10,,,0.000030000003\r\n",
            csv);
        var amounts = csv.Split("\r\n", StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(row => decimal.Parse(row[(row.LastIndexOf(',') + 1)..], CultureInfo.InvariantCulture));
        Assert.Equal(Usd(invoice["total_usd"]), amounts.Sum());
    }

    [Fact]
    public async Task Another_workspaces_invoice_is_not_found_and_an_access_token_is_refused()
    {
        await _host.SeedAsync([BillingHost.Record("req_1", March.AddDays(1), _workspace, 5, CheapPrices)]);
        using var other = _host.Client(_otherKey);
        foreach (var path in new[] { $"v1/invoices/{MarchId}", $"v1/invoices/{MarchId}/lines.csv", "v1/invoices/in_202603_zzzzzzzzzzzz", "v1/invoices/nonsense" })
        {
            var (status, body) = await Credentials.SendAsync(other, "GET", path);
            Assert.Equal(HttpStatusCode.NotFound, status);
            Assert.Equal("not_found", Credentials.Error(body)["code"]!.GetValue<string>());
        }
        // B's own list never shows A's records.
        var list = await GetJsonAsync("v1/invoices", _otherKey);
        Assert.All(list["data"]!.AsArray(), i => Assert.Equal("0", i!["total_usd"]!.GetValue<string>()));

        // A key without usage:read.
        var (_, inferenceOnly) = await _host.NewWorkspaceAsync("c", Scopes.Inference);
        using var noScope = _host.Client(inferenceOnly);
        var (forbidden, error) = await Credentials.SendAsync(noScope, "GET", "v1/invoices");
        Assert.Equal(HttpStatusCode.Forbidden, forbidden);
        Assert.Equal("insufficient_scopes", Credentials.Error(error)["code"]!.GetValue<string>());
    }
}

public sealed class SqliteInvoiceTests : InvoiceTests
{
    protected override Task<string?> DatabaseAsync() => Task.FromResult<string?>(null);
}

[Collection(PostgresCollection.Name)]
public sealed class PostgresInvoiceTests(PostgresFixture postgres) : InvoiceTests
{
    protected override async Task<string?> DatabaseAsync() => await postgres.DatabaseAsync(GetType());

    protected override void Started(IServiceProvider services) => PostgresFixture.AssertOnPostgres(services);
}
