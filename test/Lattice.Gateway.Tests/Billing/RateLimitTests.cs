using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Gateway.Tests.Metering;

namespace Lattice.Gateway.Tests.Billing;

/// <summary>
/// Rate limits on keys and workspaces: requests and tokens per minute as token buckets, requests in flight, OpenAI's
/// 429 and its headers. A gateway of its own, so its clock moves for these tests only.
/// </summary>
public sealed class RateLimitTests(GatewayFixture gateway) : RateLimitCases(gateway), IClassFixture<GatewayFixture>;

/// <summary>The same cases with the counters in Redis (<c>Lattice:Redis</c>).</summary>
[Trait("Category", "ScaleOut")]
public sealed class RedisRateLimitTests(RedisGatewayFixture gateway) : RateLimitCases(gateway), IClassFixture<RedisGatewayFixture>;

public abstract class RateLimitCases(GatewayFixture gateway)
{
    private static StringContent Chat(string model = "lovelace:chat", int? maxTokens = null) => new(
        $$"""{"model":"{{model}}","messages":[{"role":"user","content":"one two three"}]{{(maxTokens is { } m ? $",\"max_tokens\":{m}" : "")}}}""",
        Encoding.UTF8, "application/json");

    private async Task<HttpClient> KeyWithLimitsAsync(JsonObject limits, string? workspaceId = null)
    {
        var created = await GatewayFixture.PostAsync(gateway.Admin, $"/admin/v1/workspaces/{workspaceId ?? gateway.WorkspaceId}/keys",
            new JsonObject { ["name"] = "limited", ["limits"] = limits });
        Assert.Equal(limits.ToJsonString(), Limits(created).ToJsonString());
        return gateway.Client(created["key"]!.GetValue<string>());
    }

    private static JsonObject Limits(JsonObject key)
    {
        var limits = key["limits"]!.AsObject();
        var present = new JsonObject();
        foreach (var (name, value) in limits)
        {
            if (value is not null)
            {
                present[name] = value.DeepClone();
            }
        }
        return present;
    }

    private static string Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? string.Join(",", values) : "(none)";

    private static async Task<JsonObject> ErrorOf(HttpResponseMessage response) =>
        (await response.Content.ReadFromJsonAsync<JsonObject>())!["error"]!.AsObject();

    [Fact]
    public async Task Requests_per_minute_refill_continuously_and_a_refusal_says_how_long_to_wait()
    {
        using var client = await KeyWithLimitsAsync(new JsonObject { ["requests_per_minute"] = 2 });

        using (var first = await client.PostAsync("/v1/chat/completions", Chat()))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
            Assert.Equal("2", Header(first, "x-ratelimit-limit-requests"));
            Assert.Equal("1", Header(first, "x-ratelimit-remaining-requests"));
            Assert.Equal("30s", Header(first, "x-ratelimit-reset-requests"));
            Assert.Equal("(none)", Header(first, "x-ratelimit-limit-tokens"));
        }
        using (var second = await client.PostAsync("/v1/chat/completions", Chat()))
        {
            Assert.Equal(HttpStatusCode.OK, second.StatusCode);
            Assert.Equal("0", Header(second, "x-ratelimit-remaining-requests"));
            Assert.Equal("1m0s", Header(second, "x-ratelimit-reset-requests"));
        }
        using (var refused = await client.PostAsync("/v1/chat/completions", Chat()))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.Equal("30", Header(refused, "retry-after"));
            Assert.Equal("0", Header(refused, "x-ratelimit-remaining-requests"));
            var error = await ErrorOf(refused);
            Assert.Equal("rate_limit_exceeded", error["code"]!.GetValue<string>());
            Assert.Equal("requests", error["type"]!.GetValue<string>());
            Assert.Equal("Rate limit reached for lovelace:chat on requests per min (RPM): Limit 2. Please try again in 30s.", error["message"]!.GetValue<string>());
            // The refusal is recorded, and costs nothing.
            var record = await Ledger.RecordAsync(gateway.Factory.Services, refused.Headers.GetValues("x-request-id").Single());
            Assert.Equal("rate_limit_exceeded", record.Status);
            Assert.Equal(429, record.HttpStatus);
            Assert.Null(record.ServedBy);
            Assert.Equal(0, record.CostPicoUsd);
        }

        // Half a minute refills one request.
        gateway.Time.Advance(TimeSpan.FromSeconds(30));
        using var again = await client.PostAsync("/v1/chat/completions", Chat());
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        Assert.Equal("0", Header(again, "x-ratelimit-remaining-requests"));
    }

    [Fact]
    public async Task Tokens_per_minute_count_the_input_estimate_and_max_tokens_then_settle_to_the_actual_count()
    {
        using var client = await KeyWithLimitsAsync(new JsonObject { ["tokens_per_minute"] = 1000 });
        var body = Chat(maxTokens: 500);
        var estimate = (body.Headers.ContentLength!.Value + 3) / 4 + 500;

        using (var first = await client.PostAsync("/v1/chat/completions", body))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
            Assert.Equal("1000", Header(first, "x-ratelimit-limit-tokens"));
            // At admission the whole estimate is taken...
            Assert.Equal((1000 - estimate).ToString(System.Globalization.CultureInfo.InvariantCulture), Header(first, "x-ratelimit-remaining-tokens"));
        }
        // ...and when the answer ends, only what it used (3 prompt + 5 completion tokens) stays taken.
        using (var second = await client.PostAsync("/v1/chat/completions", Chat(maxTokens: 500)))
        {
            Assert.Equal(HttpStatusCode.OK, second.StatusCode);
            Assert.Equal((1000 - 8 - estimate).ToString(System.Globalization.CultureInfo.InvariantCulture), Header(second, "x-ratelimit-remaining-tokens"));
        }
        using (var tooLarge = await client.PostAsync("/v1/chat/completions", Chat(maxTokens: 5000)))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, tooLarge.StatusCode);
            var error = await ErrorOf(tooLarge);
            Assert.Equal("rate_limit_exceeded", error["code"]!.GetValue<string>());
            Assert.Equal("tokens", error["type"]!.GetValue<string>());
            Assert.StartsWith("Request too large for lovelace:chat on tokens per min (TPM): Limit 1000, Requested ", error["message"]!.GetValue<string>());
            Assert.Equal("(none)", Header(tooLarge, "retry-after"));
        }
    }

    [Fact]
    public async Task Tokens_per_minute_refuse_when_the_bucket_is_short_and_say_when_it_has_refilled_enough()
    {
        using var client = await KeyWithLimitsAsync(new JsonObject { ["tokens_per_minute"] = 600 });
        var gate = new StandInGate();
        await gateway.AddModelAsync("lovelace:held-" + gate.Name, GatewayFixture.Offer(gateway.StandInUrl + "/v1", gate.UpstreamModel));
        var model = "lovelace:held-" + gate.Name;

        // A request in flight holds its whole estimate until it ends.
        var held = client.PostAsync("/v1/chat/completions", Chat(model, maxTokens: 400));
        await gate.WaitHeldAsync(1);
        using (var refused = await client.PostAsync("/v1/chat/completions", Chat(maxTokens: 400)))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            var error = await ErrorOf(refused);
            Assert.Equal("tokens", error["type"]!.GetValue<string>());
            // 600 per minute is 10 a second; what is missing decides the wait, in whole seconds rounded up.
            var retry = long.Parse(Header(refused, "retry-after"), System.Globalization.CultureInfo.InvariantCulture);
            Assert.InRange(retry, 1, 60);
            gateway.Time.Advance(TimeSpan.FromSeconds(retry));
        }
        using (var admitted = await client.PostAsync("/v1/chat/completions", Chat(maxTokens: 400)))
        {
            Assert.Equal(HttpStatusCode.OK, admitted.StatusCode);
        }
        await gate.ReleaseAsync();
        using var heldResponse = await held;
        Assert.Equal(HttpStatusCode.OK, heldResponse.StatusCode);
    }

    [Fact]
    public async Task A_key_may_have_only_so_many_requests_in_flight()
    {
        using var client = await KeyWithLimitsAsync(new JsonObject { ["max_concurrent"] = 1 });
        var gate = new StandInGate();
        var model = "lovelace:held-" + gate.Name;
        await gateway.AddModelAsync(model, GatewayFixture.Offer(gateway.StandInUrl + "/v1", gate.UpstreamModel));

        var held = client.PostAsync("/v1/chat/completions", Chat(model));
        await gate.WaitHeldAsync(1);
        using (var refused = await client.PostAsync("/v1/chat/completions", Chat()))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.Equal("1", Header(refused, "retry-after"));
            var error = await ErrorOf(refused);
            Assert.Equal("rate_limit_exceeded", error["code"]!.GetValue<string>());
            Assert.Equal("Too many requests in flight: Limit 1 concurrent requests. Please try again in 1s.", error["message"]!.GetValue<string>());
        }
        await gate.ReleaseAsync();
        using (var heldResponse = await held)
        {
            Assert.Equal(HttpStatusCode.OK, heldResponse.StatusCode);
        }
        // The slot came back when the first answer ended.
        using var next = await client.PostAsync("/v1/chat/completions", Chat());
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
    }

    [Fact]
    public async Task A_workspace_limit_holds_across_all_its_keys_and_the_tightest_limit_is_reported()
    {
        var ws = await GatewayFixture.PostAsync(gateway.Admin, "/admin/v1/workspaces", new JsonObject { ["name"] = "limited workspace" });
        var wsId = ws["id"]!.GetValue<string>();
        using var set = await gateway.Admin.PutAsJsonAsync($"/admin/v1/workspaces/{wsId}/limits", new JsonObject { ["requests_per_minute"] = 3 });
        Assert.Equal(HttpStatusCode.OK, set.StatusCode);
        Assert.Equal($$"""{"scope":"workspace","id":"{{wsId}}","limits":{"requests_per_minute":3,"tokens_per_minute":null,"max_concurrent":null},"object":"limits"}""",
            await set.Content.ReadAsStringAsync());

        using var a = await KeyWithLimitsAsync(new JsonObject { ["requests_per_minute"] = 10 }, wsId);
        var bKey = await GatewayFixture.PostAsync(gateway.Admin, $"/admin/v1/workspaces/{wsId}/keys", new JsonObject { ["name"] = "b" });
        using var b = gateway.Client(bKey["key"]!.GetValue<string>());

        var models = await GatewayFixture.PostAsync(gateway.Admin, "/admin/v1/models", new JsonObject
        {
            ["id"] = "lovelace:ws-" + wsId,
            ["offers"] = new JsonArray(GatewayFixture.Offer(gateway.StandInUrl + "/v1", "standin-chat")),
        });
        var model = models["id"]!.GetValue<string>();

        using (var r = await a.PostAsync("/v1/chat/completions", Chat(model)))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            // The workspace's 3 is tighter than the key's 10.
            Assert.Equal("3", Header(r, "x-ratelimit-limit-requests"));
            Assert.Equal("2", Header(r, "x-ratelimit-remaining-requests"));
        }
        using (var r = await b.PostAsync("/v1/chat/completions", Chat(model)))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Equal("1", Header(r, "x-ratelimit-remaining-requests"));
        }
        using (var r = await b.PostAsync("/v1/chat/completions", Chat(model)))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }
        using (var r = await a.PostAsync("/v1/chat/completions", Chat(model)))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, r.StatusCode);
        }
    }

    [Fact]
    public async Task A_caller_without_limits_gets_no_rate_limit_headers()
    {
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/v1/chat/completions", Chat());
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.DoesNotContain(response.Headers, h => h.Key.StartsWith("x-ratelimit", StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public async Task Limits_change_through_the_admin_api_and_bad_limits_are_named()
    {
        var created = await GatewayFixture.PostAsync(gateway.Admin, $"/admin/v1/workspaces/{gateway.WorkspaceId}/keys", new JsonObject { ["name"] = "patch me" });
        var keyId = created["id"]!.GetValue<string>();
        Assert.Null(created["limits"]);

        using (var patch = await gateway.Admin.PatchAsJsonAsync($"/admin/v1/keys/{keyId}", new JsonObject { ["limits"] = new JsonObject { ["requests_per_minute"] = 1 } }))
        {
            Assert.Equal(HttpStatusCode.OK, patch.StatusCode);
            var key = (await patch.Content.ReadFromJsonAsync<JsonObject>())!;
            Assert.Equal(1, key["limits"]!["requests_per_minute"]!.GetValue<int>());
        }
        using var client = gateway.Client(created["key"]!.GetValue<string>());
        using (var ok = await client.PostAsync("/v1/chat/completions", Chat()))
        {
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }
        using (var refused = await client.PostAsync("/v1/chat/completions", Chat()))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        }
        using (var clear = await gateway.Admin.PutAsJsonAsync($"/admin/v1/keys/{keyId}/limits", new JsonObject()))
        {
            Assert.Equal($$"""{"scope":"key","id":"{{keyId}}","limits":null,"object":"limits"}""", await clear.Content.ReadAsStringAsync());
        }
        using (var free = await client.PostAsync("/v1/chat/completions", Chat()))
        {
            Assert.Equal(HttpStatusCode.OK, free.StatusCode);
        }

        foreach (var (body, param) in new[]
        {
            (new JsonObject { ["requests_per_minute"] = 0 }, "limits.requests_per_minute"),
            (new JsonObject { ["tokens_per_minute"] = -5 }, "limits.tokens_per_minute"),
            (new JsonObject { ["max_concurrent"] = "4" }, "limits.max_concurrent"),
            (new JsonObject { ["rpm"] = 4 }, "limits.rpm"),
        })
        {
            using var bad = await gateway.Admin.PutAsJsonAsync($"/admin/v1/keys/{keyId}/limits", body);
            Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
            Assert.Equal(param, (await ErrorOf(bad))["param"]!.GetValue<string>());
        }
    }

    [Fact]
    public async Task Another_workspaces_key_app_or_workspace_limits_are_not_found()
    {
        var other = await GatewayFixture.PostAsync(gateway.Admin, "/admin/v1/workspaces", new JsonObject { ["name"] = "other" });
        var otherId = other["id"]!.GetValue<string>();
        var otherKey = await GatewayFixture.PostAsync(gateway.Admin, $"/admin/v1/workspaces/{otherId}/keys", new JsonObject { ["name"] = "theirs" });
        // A workspace admin of the test workspace.
        var mine = await GatewayFixture.PostAsync(gateway.Admin, $"/admin/v1/workspaces/{gateway.WorkspaceId}/keys",
            new JsonObject { ["name"] = "ws admin", ["scopes"] = new JsonArray("lattice:workspace:admin") });
        using var admin = gateway.Client(mine["key"]!.GetValue<string>());

        foreach (var path in new[] { $"/admin/v1/keys/{otherKey["id"]}/limits", $"/admin/v1/workspaces/{otherId}/limits" })
        {
            using var get = await admin.GetAsync(path);
            Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
            using var put = await admin.PutAsJsonAsync(path, new JsonObject { ["requests_per_minute"] = 1 });
            Assert.Equal(HttpStatusCode.NotFound, put.StatusCode);
        }
        using var own = await admin.GetAsync($"/admin/v1/workspaces/{gateway.WorkspaceId}/limits");
        Assert.Equal(HttpStatusCode.OK, own.StatusCode);
    }
}
