using System.Net;
using System.Text.Json.Nodes;
using Lattice.Gateway.Auth;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>
/// Private-only requests (a credential lacking <c>marketplace</c>, or carrying <c>workspace_only</c>) never reach
/// marketplace capacity: a model only the marketplace offers fails with 503 <c>no_capacity</c>, never a fallback.
/// </summary>
public sealed class PrivateOnlyTests(OAuthGateway gateway) : IClassFixture<OAuthGateway>
{
    private const string MarketOnly = "lovelace:market-only";
    private const string Hosted = "lovelace:chat";

    public static TheoryData<string, string[]> PrivateOnly => new()
    {
        { "lacks marketplace", [Scopes.Inference] },
        { "carries workspace_only", [Scopes.Inference, Scopes.Marketplace, Scopes.WorkspaceOnly] },
    };

    [Theory]
    [MemberData(nameof(PrivateOnly))]
    public async Task A_private_only_token_gets_no_capacity_for_a_marketplace_only_model(string why, string[] scopes)
    {
        using var http = gateway.Client(await Credentials.TokenAsync(gateway, gateway.A, scopes));
        await ExpectNoCapacityAsync(http, why == "lacks marketplace" ? Scopes.Marketplace : Scopes.WorkspaceOnly);
        // Private capacity still serves it.
        await ExpectServedAsync(http, Hosted);
    }

    [Fact]
    public async Task A_token_with_marketplace_and_without_workspace_only_reaches_the_marketplace()
    {
        using var http = gateway.Client(await Credentials.TokenAsync(gateway, gateway.A, [Scopes.Inference, Scopes.Marketplace]));
        await ExpectServedAsync(http, MarketOnly);
        await ExpectServedAsync(http, Hosted);
    }

    [Fact]
    public async Task Developer_keys_are_private_only_by_default()
    {
        var created = await OAuthGateway.PostAsync(gateway.Admin, $"admin/v1/workspaces/{gateway.A.WorkspaceId}/keys", new JsonObject { ["name"] = "defaults" });
        Assert.DoesNotContain(Scopes.Marketplace, created["scopes"]!.AsArray().Select(s => s!.GetValue<string>()));
        using var http = gateway.Client(created["key"]!.GetValue<string>());
        await ExpectNoCapacityAsync(http, Scopes.Marketplace);
        await ExpectServedAsync(http, Hosted);

        using var fixtureKey = gateway.Client(gateway.A.Key);
        await ExpectNoCapacityAsync(fixtureKey, Scopes.Marketplace);
    }

    [Fact]
    public async Task A_developer_key_given_marketplace_reaches_it_unless_it_also_carries_workspace_only()
    {
        using var market = gateway.Client(await Credentials.KeyAsync(gateway, gateway.A.WorkspaceId, [Scopes.Inference, Scopes.Marketplace]));
        await ExpectServedAsync(market, MarketOnly);

        using var workspaceOnly = gateway.Client(await Credentials.KeyAsync(gateway, gateway.A.WorkspaceId, [Scopes.Inference, Scopes.Marketplace, Scopes.WorkspaceOnly]));
        await ExpectNoCapacityAsync(workspaceOnly, Scopes.WorkspaceOnly);
    }

    private static async Task ExpectNoCapacityAsync(HttpClient http, string because)
    {
        foreach (var path in new[] { "v1/chat/completions", "v1/tasks/chat.completions" })
        {
            var (status, body) = await Credentials.SendAsync(http, "POST", path, Chat(MarketOnly));
            Assert.True(status == HttpStatusCode.ServiceUnavailable, $"{path}: {(int)status} {body}");
            var error = Credentials.Error(body);
            Assert.Equal("no_capacity", error["code"]!.GetValue<string>());
            Assert.Equal("server_error", error["type"]!.GetValue<string>());
            Assert.Contains(because, error["message"]!.GetValue<string>(), StringComparison.Ordinal);
        }
    }

    private static async Task ExpectServedAsync(HttpClient http, string model)
    {
        var (status, body) = await Credentials.SendAsync(http, "POST", "v1/chat/completions", Chat(model));
        Assert.True(status == HttpStatusCode.OK, $"{model}: {(int)status} {body}");
        Assert.Contains("You said: hi", body, StringComparison.Ordinal);
    }

    private static JsonObject Chat(string model) => new()
    {
        ["model"] = model,
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
    };
}
