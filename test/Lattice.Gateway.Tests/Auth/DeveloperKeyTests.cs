using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Auth;

public abstract class DeveloperKeyTests(GatewayFixture gateway)
{
    private static StringContent Chat() => new("""{"model":"lovelace:chat","messages":[{"role":"user","content":"hi"}]}""", Encoding.UTF8, "application/json");

    [Fact]
    public async Task A_key_works_as_bearer_and_as_x_api_key()
    {
        using var bearer = gateway.DevClient();
        Assert.Equal(HttpStatusCode.OK, (await bearer.PostAsync("/v1/chat/completions", Chat())).StatusCode);

        using var plain = gateway.Client();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat() };
        request.Headers.Add("x-api-key", gateway.ApiKey);
        Assert.Equal(HttpStatusCode.OK, (await plain.SendAsync(request)).StatusCode);
    }

    [Fact]
    public async Task A_revoked_key_fails_on_the_very_next_request()
    {
        var created = await GatewayFixture.PostAsync(gateway.Admin, $"/admin/v1/workspaces/{gateway.WorkspaceId}/keys", new JsonObject { ["name"] = "to-revoke" });
        var secret = created["key"]!.GetValue<string>();
        using var client = gateway.Client(secret);
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync("/v1/chat/completions", Chat())).StatusCode);

        await GatewayFixture.PostAsync(gateway.Admin, $"/admin/v1/keys/{created["id"]}/revoke", new JsonObject());

        using var after = await client.PostAsync("/v1/chat/completions", Chat());
        Assert.Equal(HttpStatusCode.Unauthorized, after.StatusCode);
        Assert.Contains("invalid_api_key", await after.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_expired_key_fails()
    {
        var expiresAt = gateway.Time.GetUtcNow().AddHours(1).ToUnixTimeSeconds();
        var created = await GatewayFixture.PostAsync(gateway.Admin, $"/admin/v1/workspaces/{gateway.WorkspaceId}/keys", new JsonObject { ["name"] = "short", ["expires_at"] = expiresAt });
        using var client = gateway.Client(created["key"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync("/v1/chat/completions", Chat())).StatusCode);

        // Fake time only moves forward; the other keys of the fixture never expire.
        gateway.Time.Advance(TimeSpan.FromHours(2));
        using var after = await client.PostAsync("/v1/chat/completions", Chat());
        Assert.Equal(HttpStatusCode.Unauthorized, after.StatusCode);
        Assert.Contains("expired", await after.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Keys_are_listed_without_secrets_and_stored_hashed()
    {
        var created = await GatewayFixture.PostAsync(gateway.Admin, $"/admin/v1/workspaces/{gateway.WorkspaceId}/keys", new JsonObject { ["name"] = "listed" });
        var secret = created["key"]!.GetValue<string>();
        Assert.StartsWith("sk_", secret, StringComparison.Ordinal);

        var list = await gateway.Admin.GetStringAsync($"/admin/v1/workspaces/{gateway.WorkspaceId}/keys");
        Assert.DoesNotContain(secret, list, StringComparison.Ordinal);
        Assert.Contains(created["id"]!.GetValue<string>(), list, StringComparison.Ordinal);

        using var scope = gateway.Factory.Services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<Lattice.Gateway.Persistence.LatticeDbContext>();
        var row = db.ApiKeys.Single(k => k.Id == created["id"]!.GetValue<string>());
        Assert.NotEqual(secret, row.Hash);
        Assert.Equal(Lattice.Gateway.Auth.ApiKeySecrets.Hash(secret), row.Hash);
    }

    [Fact]
    public async Task A_key_without_the_inference_scope_cannot_dispatch()
    {
        var secret = await gateway.CreateKeyAsync(new JsonObject { ["name"] = "catalog-only", ["scopes"] = new JsonArray("lattice:compute:catalog:read") });
        using var client = gateway.Client(secret);
        using var response = await client.PostAsync("/v1/chat/completions", Chat());
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        var error = (await response.Content.ReadFromJsonAsync<JsonObject>())!["error"]!;
        Assert.Equal("insufficient_scopes", error["code"]!.GetValue<string>());
        Assert.Contains("lattice:compute:inference", error["message"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/v1/models")).StatusCode);
    }
}

[Collection(GatewayCollection.Name)]
public sealed class SqliteDeveloperKeyTests(GatewayFixture gateway) : DeveloperKeyTests(gateway);

[Collection(PostgresCollection.Name)]
public sealed class PostgresDeveloperKeyTests(PostgresGatewayFixture gateway) : DeveloperKeyTests(gateway), IClassFixture<PostgresGatewayFixture>;
