using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.AspNetCore.WebUtilities;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>Authorization code + PKCE, consent, tokens, refresh rotation, revocation and introspection, over real HTTP.</summary>
public abstract class OAuthFlowTests(OAuthGateway gateway)
{
    [Fact]
    public async Task Discovery_document_names_the_endpoints_and_S256_only()
    {
        using var http = gateway.Client(null);
        var doc = JsonNode.Parse(await http.GetStringAsync(".well-known/openid-configuration"))!;
        Assert.Equal(gateway.Origin + "/connect/authorize", doc["authorization_endpoint"]!.GetValue<string>());
        Assert.Equal(gateway.Origin + "/connect/token", doc["token_endpoint"]!.GetValue<string>());
        Assert.Equal(gateway.Origin + "/connect/revoke", doc["revocation_endpoint"]!.GetValue<string>());
        Assert.Equal(gateway.Origin + "/connect/introspect", doc["introspection_endpoint"]!.GetValue<string>());
        Assert.Equal(gateway.Origin + "/connect/device", doc["device_authorization_endpoint"]!.GetValue<string>());
        Assert.Equal(gateway.Origin + "/.well-known/jwks", doc["jwks_uri"]!.GetValue<string>());
        Assert.Equal(["S256"], doc["code_challenge_methods_supported"]!.AsArray().Select(n => n!.GetValue<string>()));
        var scopes = doc["scopes_supported"]!.AsArray().Select(n => n!.GetValue<string>()).ToList();
        Assert.All(OAuthGateway.AllLatticeScopes, s => Assert.Contains(s, scopes));

        var jwks = JsonNode.Parse(await http.GetStringAsync(".well-known/jwks"))!;
        var key = Assert.Single(jwks["keys"]!.AsArray())!;
        Assert.Equal("RSA", key["kty"]!.GetValue<string>());
    }

    [Fact]
    public async Task Code_flow_with_PKCE_issues_a_JWT_that_dispatches()
    {
        var tokens = await CodeFlow.RunAsync(gateway, gateway.A, gateway.A.ClientId, gateway.A.ClientSecret,
            ["lattice:compute:inference", "offline_access"]);
        var access = tokens["access_token"]!.GetValue<string>();
        Assert.StartsWith("eyJ", access);
        Assert.Equal("Bearer", tokens["token_type"]!.GetValue<string>());
        Assert.NotNull(tokens["refresh_token"]);

        var payload = CodeFlow.Payload(access);
        Assert.Equal(gateway.A.UserId, payload["sub"]!.GetValue<string>());
        Assert.Equal(gateway.A.ClientId, payload["client_id"]!.GetValue<string>());
        Assert.Equal("lattice", payload["aud"]!.GetValue<string>());
        Assert.Equal(gateway.A.WorkspaceId, payload["lattice_ws"]!.GetValue<string>());
        Assert.Contains("lattice:compute:inference", payload["scope"]!.GetValue<string>().Split(' '));
        Assert.True(payload["exp"]!.GetValue<long>() > DateTimeOffset.UtcNow.ToUnixTimeSeconds());

        using var api = gateway.Client(access);
        using var response = await api.PostAsJsonAsync("v1/chat/completions", new JsonObject
        {
            ["model"] = "lovelace:chat",
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hello" }),
        });
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, body);
        Assert.Contains("You said: hello", body);
    }

    [Fact]
    public async Task Operators_list_users_without_their_password_hashes()
    {
        var text = await gateway.Admin.GetStringAsync("admin/v1/users");
        var users = JsonNode.Parse(text)!["data"]!.AsArray();
        var a = Assert.Single(users, u => u!["id"]!.GetValue<string>() == gateway.A.UserId)!;
        Assert.Equal(gateway.A.Email, a["email"]!.GetValue<string>());
        Assert.Equal(["created_at", "email", "email_verified", "id", "name"], a.AsObject().Select(p => p.Key).Order());
        Assert.DoesNotContain("password", text, StringComparison.OrdinalIgnoreCase);
    }
}

public sealed class SqliteOAuthFlowTests(OAuthGateway gateway) : OAuthFlowTests(gateway), IClassFixture<OAuthGateway>;

[Collection(PostgresCollection.Name)]
public sealed class PostgresOAuthFlowTests(PostgresOAuthGateway gateway) : OAuthFlowTests(gateway.Gateway), IClassFixture<PostgresOAuthGateway>;
