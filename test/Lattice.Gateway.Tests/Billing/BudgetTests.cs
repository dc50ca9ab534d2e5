using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Billing;

/// <summary>Budgets reserve a request's worst case at admission and settle to what the ledger charged.</summary>
public sealed class BudgetTests(GatewayFixture gateway) : BudgetCases(gateway), IClassFixture<GatewayFixture>;

/// <summary>The same cases with the counters in Redis (<c>Lattice:Redis</c>).</summary>
[Trait("Category", "ScaleOut")]
public sealed class RedisBudgetTests(RedisGatewayFixture gateway) : BudgetCases(gateway), IClassFixture<RedisGatewayFixture>;

public abstract class BudgetCases(GatewayFixture gateway)
{
    private static StringContent Chat(string model, int? maxTokens = null) => new(
        $$"""{"model":"{{model}}","messages":[{"role":"user","content":"one two three"}]{{(maxTokens is { } m ? $",\"max_tokens\":{m}" : "")}}}""",
        Encoding.UTF8, "application/json");

    /// <summary>A model of its own on the stand-in, at <paramref name="prices"/>.</summary>
    private async Task<string> PricedModelAsync(JsonObject prices, string upstreamModel = "standin-chat")
    {
        var id = "lovelace:priced-" + Guid.NewGuid().ToString("N")[..10];
        await GatewayFixture.PostAsync(gateway.Admin, "/admin/v1/models", new JsonObject
        {
            ["id"] = id,
            ["prices"] = prices,
            ["offers"] = new JsonArray(GatewayFixture.Offer(gateway.StandInUrl + "/v1", upstreamModel)),
        });
        return id;
    }

    private async Task<(string Id, HttpClient Client)> KeyAsync()
    {
        var created = await GatewayFixture.PostAsync(gateway.Admin, $"/admin/v1/workspaces/{gateway.WorkspaceId}/keys", new JsonObject { ["name"] = "budgeted" });
        return (created["id"]!.GetValue<string>(), gateway.Client(created["key"]!.GetValue<string>()));
    }

    private async Task<JsonObject> BudgetAsync(JsonObject body, string? workspaceId = null)
    {
        using var response = await gateway.Admin.PostAsJsonAsync($"/admin/v1/workspaces/{workspaceId ?? gateway.WorkspaceId}/budgets", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Created, text);
        return JsonNode.Parse(text)!.AsObject();
    }

    private async Task<JsonObject> GetBudgetAsync(string id) =>
        (await gateway.Admin.GetFromJsonAsync<JsonObject>($"/admin/v1/budgets/{id}"))!;

    private async Task<long> LedgerCostAsync(string keyId)
    {
        var services = gateway.Factory.Services;
        await services.GetRequiredService<UsageLedger>().FlushAsync();
        await using var scope = services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        return await db.UsageRecords.Where(r => r.KeyId == keyId).SumAsync(r => r.CostPicoUsd);
    }

    [Fact]
    public async Task A_budget_that_covers_ten_requests_serves_ten_of_a_hundred_sent_at_once()
    {
        var model = await PricedModelAsync(new JsonObject { ["per_request"] = 0.001 });
        var (keyId, client) = await KeyAsync();
        var budget = await BudgetAsync(new JsonObject { ["scope"] = "key", ["subject_id"] = keyId, ["amount_usd"] = "0.01" });
        Assert.Equal("0.01", budget["amount_usd"]!.GetValue<string>());
        Assert.Equal("0", budget["spent_usd"]!.GetValue<string>());

        var responses = await Task.WhenAll(Enumerable.Range(0, 100).Select(_ => client.PostAsync("/v1/chat/completions", Chat(model))));
        var served = responses.Count(r => r.StatusCode == HttpStatusCode.OK);
        var refused = responses.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests).ToList();
        Assert.Equal(10, served);
        Assert.Equal(90, refused.Count);
        var error = (await refused[0].Content.ReadFromJsonAsync<JsonObject>())!["error"]!;
        Assert.Equal("insufficient_quota", error["code"]!.GetValue<string>());
        Assert.Equal("insufficient_quota", error["type"]!.GetValue<string>());
        Assert.Contains(budget["id"]!.GetValue<string>(), error["message"]!.GetValue<string>());
        Assert.False(refused[0].Headers.Contains("retry-after"));
        foreach (var r in responses)
        {
            r.Dispose();
        }

        // The ledger's spend is the budget, to the pico-dollar, and nothing is left reserved.
        Assert.Equal(10 * 1_000_000_000L, await LedgerCostAsync(keyId));
        var after = await GetBudgetAsync(budget["id"]!.GetValue<string>());
        Assert.Equal("0.01", after["spent_usd"]!.GetValue<string>());
        Assert.Equal("0", after["reserved_usd"]!.GetValue<string>());
    }

    [Fact]
    public async Task The_worst_case_is_reserved_while_a_request_runs_and_settles_to_its_actual_cost()
    {
        var gate = new StandInGate();
        // $1 per million input tokens, $2 per million output tokens.
        var model = await PricedModelAsync(new JsonObject { ["input_per_mtok"] = 1, ["output_per_mtok"] = 2 }, gate.UpstreamModel);
        var (keyId, client) = await KeyAsync();
        var budget = await BudgetAsync(new JsonObject { ["scope"] = "key", ["subject_id"] = keyId, ["amount_usd"] = 1 });
        var id = budget["id"]!.GetValue<string>();

        var body = Chat(model, maxTokens: 100);
        var bytes = body.Headers.ContentLength!.Value;
        var running = client.PostAsync("/v1/chat/completions", body);
        await gate.WaitHeldAsync(1);
        // Every byte of the body counted as an input token, and all of max_tokens as output.
        var reserved = CostCalculator.FormatUsd(bytes * 1_000_000 + 100 * 2_000_000);
        Assert.Equal(reserved, (await GetBudgetAsync(id))["reserved_usd"]!.GetValue<string>());

        await gate.ReleaseAsync();
        using (var response = await running)
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        // 3 input tokens at $1/M and 5 output tokens at $2/M.
        var settled = await GetBudgetAsync(id);
        Assert.Equal("0.000013", settled["spent_usd"]!.GetValue<string>());
        Assert.Equal("0", settled["reserved_usd"]!.GetValue<string>());
        Assert.Equal(13_000_000L, await LedgerCostAsync(keyId));
    }

    [Fact]
    public async Task A_request_that_fails_before_serving_releases_its_reservation_and_costs_nothing()
    {
        var model = await PricedModelAsync(new JsonObject { ["per_request"] = 0.5 }, "standin-fail-500");
        var (keyId, client) = await KeyAsync();
        var budget = await BudgetAsync(new JsonObject { ["scope"] = "key", ["subject_id"] = keyId, ["amount_usd"] = "0.5" });
        for (var i = 0; i < 3; i++)
        {
            using var failed = await client.PostAsync("/v1/chat/completions", Chat(model));
            Assert.Equal(HttpStatusCode.BadGateway, failed.StatusCode);
        }
        var after = await GetBudgetAsync(budget["id"]!.GetValue<string>());
        Assert.Equal("0", after["spent_usd"]!.GetValue<string>());
        Assert.Equal("0", after["reserved_usd"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_new_budget_starts_from_what_the_ledger_holds_for_the_month()
    {
        var model = await PricedModelAsync(new JsonObject { ["per_request"] = 0.25 });
        var ws = (await GatewayFixture.PostAsync(gateway.Admin, "/admin/v1/workspaces", new JsonObject { ["name"] = "spender" }))["id"]!.GetValue<string>();
        var key = await GatewayFixture.PostAsync(gateway.Admin, $"/admin/v1/workspaces/{ws}/keys", new JsonObject { ["name"] = "k" });
        using var client = gateway.Client(key["key"]!.GetValue<string>());
        for (var i = 0; i < 3; i++)
        {
            using var ok = await client.PostAsync("/v1/chat/completions", Chat(model));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        var budget = await BudgetAsync(new JsonObject { ["scope"] = "workspace", ["amount_usd"] = 1 }, ws);
        Assert.Equal("0.75", budget["spent_usd"]!.GetValue<string>());
        using (var last = await client.PostAsync("/v1/chat/completions", Chat(model)))
        {
            Assert.Equal(HttpStatusCode.OK, last.StatusCode);
        }
        using (var over = await client.PostAsync("/v1/chat/completions", Chat(model)))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, over.StatusCode);
        }

        // Raising the budget lets requests through again at once.
        using var raise = await gateway.Admin.PatchAsJsonAsync($"/admin/v1/budgets/{budget["id"]}", new JsonObject { ["amount_usd"] = "1.25" });
        Assert.Equal(HttpStatusCode.OK, raise.StatusCode);
        using var again = await client.PostAsync("/v1/chat/completions", Chat(model));
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
    }

    [Fact]
    public async Task Free_requests_are_never_refused_by_a_spent_budget()
    {
        var priced = await PricedModelAsync(new JsonObject { ["per_request"] = 1 });
        var (keyId, client) = await KeyAsync();
        await BudgetAsync(new JsonObject { ["scope"] = "key", ["subject_id"] = keyId, ["amount_usd"] = 1 });
        using (var spend = await client.PostAsync("/v1/chat/completions", Chat(priced)))
        {
            Assert.Equal(HttpStatusCode.OK, spend.StatusCode);
        }
        using (var refused = await client.PostAsync("/v1/chat/completions", Chat(priced)))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        }
        using var free = await client.PostAsync("/v1/chat/completions", Chat("lovelace:chat"));
        Assert.Equal(HttpStatusCode.OK, free.StatusCode);
    }

    [Fact]
    public async Task Budgets_are_validated_and_another_workspaces_are_not_found()
    {
        var (keyId, _) = await KeyAsync();
        foreach (var (body, param, status) in new (JsonObject, string?, HttpStatusCode)[]
        {
            (new JsonObject { ["scope"] = "key", ["subject_id"] = keyId }, "amount_usd", HttpStatusCode.BadRequest),
            (new JsonObject { ["scope"] = "key", ["subject_id"] = keyId, ["amount_usd"] = -1 }, "amount_usd", HttpStatusCode.BadRequest),
            (new JsonObject { ["scope"] = "key", ["subject_id"] = keyId, ["amount_usd"] = "ten" }, "amount_usd", HttpStatusCode.BadRequest),
            (new JsonObject { ["scope"] = "team", ["amount_usd"] = 1 }, "scope", HttpStatusCode.BadRequest),
            (new JsonObject { ["scope"] = "key", ["amount_usd"] = 1 }, "subject_id", HttpStatusCode.BadRequest),
            (new JsonObject { ["scope"] = "key", ["subject_id"] = "key_nope", ["amount_usd"] = 1 }, null, HttpStatusCode.NotFound),
            (new JsonObject { ["scope"] = "app", ["subject_id"] = "nope", ["amount_usd"] = 1 }, null, HttpStatusCode.NotFound),
            (new JsonObject { ["scope"] = "key", ["subject_id"] = keyId, ["amount_usd"] = 1, ["period"] = "week" }, "period", HttpStatusCode.BadRequest),
        })
        {
            using var response = await gateway.Admin.PostAsJsonAsync($"/admin/v1/workspaces/{gateway.WorkspaceId}/budgets", body);
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(status == response.StatusCode, text);
            if (param is not null)
            {
                Assert.Equal(param, JsonNode.Parse(text)!["error"]!["param"]!.GetValue<string>());
            }
        }

        var budget = await BudgetAsync(new JsonObject { ["scope"] = "key", ["subject_id"] = keyId, ["amount_usd"] = 2 });
        using (var twice = await gateway.Admin.PostAsJsonAsync($"/admin/v1/workspaces/{gateway.WorkspaceId}/budgets",
            new JsonObject { ["scope"] = "key", ["subject_id"] = keyId, ["amount_usd"] = 3 }))
        {
            Assert.Equal(HttpStatusCode.Conflict, twice.StatusCode);
        }

        var other = (await GatewayFixture.PostAsync(gateway.Admin, "/admin/v1/workspaces", new JsonObject { ["name"] = "nosy" }))["id"]!.GetValue<string>();
        var nosyKey = await GatewayFixture.PostAsync(gateway.Admin, $"/admin/v1/workspaces/{other}/keys",
            new JsonObject { ["name"] = "nosy admin", ["scopes"] = new JsonArray("lattice:workspace:admin") });
        using var nosy = gateway.Client(nosyKey["key"]!.GetValue<string>());
        using (var get = await nosy.GetAsync($"/admin/v1/budgets/{budget["id"]}"))
        {
            Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
        }
        using (var delete = await nosy.DeleteAsync($"/admin/v1/budgets/{budget["id"]}"))
        {
            Assert.Equal(HttpStatusCode.NotFound, delete.StatusCode);
        }
        using (var list = await nosy.GetAsync($"/admin/v1/workspaces/{gateway.WorkspaceId}/budgets"))
        {
            Assert.Equal(HttpStatusCode.NotFound, list.StatusCode);
        }
        // Another workspace's key cannot be budgeted from this one.
        using (var foreign = await nosy.PostAsJsonAsync($"/admin/v1/workspaces/{other}/budgets",
            new JsonObject { ["scope"] = "key", ["subject_id"] = keyId, ["amount_usd"] = 1 }))
        {
            Assert.Equal(HttpStatusCode.NotFound, foreign.StatusCode);
        }
        using var mine = await gateway.Admin.DeleteAsync($"/admin/v1/budgets/{budget["id"]}");
        Assert.Equal($$"""{"id":"{{budget["id"]}}","object":"budget","deleted":true}""", await mine.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Spend_crossing_50_80_and_100_percent_is_posted_to_the_budgets_alert_url_once_each()
    {
        await using var receiver = await AlertReceiver.StartAsync();
        var model = await PricedModelAsync(new JsonObject { ["per_request"] = 0.25 });
        var (keyId, client) = await KeyAsync();
        var budget = await BudgetAsync(new JsonObject { ["scope"] = "key", ["subject_id"] = keyId, ["amount_usd"] = 1, ["alert_url"] = receiver.Url });
        var secret = budget["alert_secret"]!.GetValue<string>();
        Assert.StartsWith("whsec_", secret);
        Assert.Equal(receiver.Url, budget["alert_url"]!.GetValue<string>());
        // The secret is shown once: reading the budget again does not show it.
        Assert.Null((await GetBudgetAsync(budget["id"]!.GetValue<string>()))["alert_secret"]);

        for (var i = 0; i < 5; i++)
        {
            using var response = await client.PostAsync("/v1/chat/completions", Chat(model));
            Assert.Equal(i < 4 ? HttpStatusCode.OK : HttpStatusCode.TooManyRequests, response.StatusCode);
        }
        var thresholds = new List<int>();
        for (var i = 0; i < 3; i++)
        {
            var alert = await receiver.NextAsync();
            var data = JsonNode.Parse(alert.Body)!["data"]!;
            Assert.Equal(budget["id"]!.GetValue<string>(), data["budget_id"]!.GetValue<string>());
            // Signed with the secret the budget was created with.
            var parts = alert.Signature.Split(',').Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);
            var mac = Convert.ToHexStringLower(System.Security.Cryptography.HMACSHA256.HashData(
                Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes(parts["t"] + "." + alert.Body)));
            Assert.Equal(mac, parts["v1"]);
            thresholds.Add(data["threshold_percent"]!.GetValue<int>());
        }
        Assert.Equal([50, 80, 100], thresholds.Order());
        Assert.Equal(3, receiver.Count);
    }
}
