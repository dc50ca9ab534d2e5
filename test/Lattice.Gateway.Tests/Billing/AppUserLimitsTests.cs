using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Lattice.Gateway.Tests.Identity;

namespace Lattice.Gateway.Tests.Billing;

/// <summary>An OAuth app's limits and per-user budgets hold for each of its users separately.</summary>
public sealed class AppUserLimitsTests(OAuthGateway gateway) : IClassFixture<OAuthGateway>
{
    private static readonly string[] Scopes = ["lattice:compute:inference"];

    private static StringContent Chat(string model = "lovelace:chat") => new(
        $$"""{"model":"{{model}}","messages":[{"role":"user","content":"one two three"}]}""", Encoding.UTF8, "application/json");

    /// <summary>A second member of tenant A's workspace, as a tenant record for the token helper.</summary>
    private async Task<OAuthGateway.Tenant> SecondUserAsync()
    {
        var email = $"second-{Guid.NewGuid():N}@example.test";
        var user = (await OAuthGateway.PostAsync(gateway.Admin, "admin/v1/users", new JsonObject { ["email"] = email, ["name"] = "Second", ["password"] = OAuthGateway.Password }))["id"]!.GetValue<string>();
        await OAuthGateway.PostAsync(gateway.Admin, $"admin/v1/workspaces/{gateway.A.WorkspaceId}/members", new JsonObject { ["user_id"] = user });
        return gateway.A with { UserId = user, Email = email };
    }

    [Fact]
    public async Task An_apps_limits_and_per_user_budget_apply_to_each_user_of_the_app_separately()
    {
        var a = gateway.A;
        using var admin = gateway.Client(a.Key);
        using (var set = await admin.PutAsJsonAsync($"admin/v1/apps/{a.ClientId}/limits", new JsonObject { ["requests_per_minute"] = 2 }))
        {
            Assert.Equal(HttpStatusCode.OK, set.StatusCode);
        }
        await OAuthGateway.PostAsync(gateway.Admin, "admin/v1/models", new JsonObject
        {
            ["id"] = "lovelace:per-user-priced",
            ["prices"] = new JsonObject { ["per_request"] = 0.1 },
            ["offers"] = new JsonArray(new JsonObject { ["base_url"] = gateway.StandInUrl + "/v1", ["upstream_model"] = "standin-chat", ["credential"] = "standin" }),
        });
        // Each user of the app may spend $0.10 a month: one priced request.
        var budget = await OAuthGateway.PostAsync(admin, $"admin/v1/workspaces/{a.WorkspaceId}/budgets",
            new JsonObject { ["scope"] = "app_user", ["subject_id"] = a.ClientId, ["amount_usd"] = "0.1" });

        var second = await SecondUserAsync();
        using var first = gateway.Client(await Credentials.TokenAsync(gateway, a, Scopes));
        using var other = gateway.Client(await Credentials.TokenAsync(gateway, second, a.ClientId, a.ClientSecret, Scopes));

        using (var r = await first.PostAsync("v1/chat/completions", Chat("lovelace:per-user-priced")))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Equal("1", r.Headers.GetValues("x-ratelimit-remaining-requests").Single());
        }
        using (var r = await first.PostAsync("v1/chat/completions", Chat("lovelace:per-user-priced")))
        {
            // The first user's budget is spent...
            Assert.Equal(HttpStatusCode.TooManyRequests, r.StatusCode);
            Assert.Equal("insufficient_quota", (await r.Content.ReadFromJsonAsync<JsonObject>())!["error"]!["code"]!.GetValue<string>());
        }
        using (var r = await other.PostAsync("v1/chat/completions", Chat("lovelace:per-user-priced")))
        {
            // ...the second user's is not, and neither is their rate limit.
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Equal("1", r.Headers.GetValues("x-ratelimit-remaining-requests").Single());
        }
        using (var r = await first.PostAsync("v1/chat/completions", Chat()))
        {
            // A refused request gave its request back: the first user still has one this minute.
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Equal("0", r.Headers.GetValues("x-ratelimit-remaining-requests").Single());
        }
        using (var r = await first.PostAsync("v1/chat/completions", Chat()))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, r.StatusCode);
            Assert.Equal("rate_limit_exceeded", (await r.Content.ReadFromJsonAsync<JsonObject>())!["error"]!["code"]!.GetValue<string>());
        }

        var spent = (await admin.GetFromJsonAsync<JsonObject>($"admin/v1/budgets/{budget["id"]}?user_id={a.UserId}"))!;
        Assert.Equal("0.1", spent["spent_usd"]!.GetValue<string>());
        Assert.Equal(a.UserId, spent["user_id"]!.GetValue<string>());
    }
}
