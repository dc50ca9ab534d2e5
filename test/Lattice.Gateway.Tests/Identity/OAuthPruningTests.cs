using System.Net;
using System.Text.Json.Nodes;
using Lattice.Gateway.Identity;
using Microsoft.Extensions.DependencyInjection;
using OpenIddict.Abstractions;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>The OAuth tables do not grow without end: what can no longer be used is deleted, what can is kept.</summary>
public sealed class OAuthPruningTests(OAuthGateway gateway) : IClassFixture<OAuthGateway>
{
    private static readonly string[] Scopes = ["lattice:compute:inference", "offline_access"];

    private async Task<object?> AuthorizationAsync(string id)
    {
        await using var scope = gateway.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<IOpenIddictAuthorizationManager>().FindByIdAsync(id);
    }

    private async Task<JsonArray> GrantsAsync(OAuthGateway.Tenant tenant)
    {
        using var admin = gateway.Client(tenant.Key);
        return JsonNode.Parse(await admin.GetStringAsync($"admin/v1/workspaces/{tenant.WorkspaceId}/grants"))!["data"]!.AsArray();
    }

    [Fact]
    public async Task A_revoked_grant_and_its_tokens_are_deleted_once_old_enough_and_a_grant_in_force_keeps_working()
    {
        var pruner = gateway.Services.GetRequiredService<OAuthPruner>();
        var revoked = await CodeFlow.RunAsync(gateway, gateway.A, gateway.A.ClientId, gateway.A.ClientSecret, Scopes);
        var kept = await CodeFlow.RunAsync(gateway, gateway.B, gateway.B.ClientId, gateway.B.ClientSecret, Scopes);
        var revokedId = CodeFlow.Payload(revoked["access_token"]!.GetValue<string>())["oi_au_id"]!.GetValue<string>();
        var keptId = CodeFlow.Payload(kept["access_token"]!.GetValue<string>())["oi_au_id"]!.GetValue<string>();
        await OAuthGateway.PostAsync(gateway.Client(gateway.A.Key), $"admin/v1/grants/{revokedId}/revoke", new JsonObject());
        Assert.Contains(await GrantsAsync(gateway.A), g => g!["id"]!.GetValue<string>() == revokedId);

        // Too young: a spent or revoked token is remembered for as long as a refresh token lives.
        Assert.Equal(default, await pruner.PruneAsync(pruner.Threshold));
        Assert.NotNull(await AuthorizationAsync(revokedId));

        // Once everything so far counts as old, the revoked grant goes, with its tokens and its workspace record.
        var result = await pruner.PruneAsync(DateTimeOffset.UtcNow.AddMinutes(1));
        Assert.Equal(1, result.Authorizations);
        Assert.Equal(1, result.Grants);
        Assert.True(result.Tokens >= 2, $"pruned {result.Tokens} tokens"); // the redeemed code and the revoked refresh token
        Assert.Null(await AuthorizationAsync(revokedId));
        Assert.DoesNotContain(await GrantsAsync(gateway.A), g => g!["id"]!.GetValue<string>() == revokedId);

        // The grant in force is untouched: it is listed, and its refresh token still works.
        Assert.NotNull(await AuthorizationAsync(keptId));
        Assert.Contains(await GrantsAsync(gateway.B), g => g!["id"]!.GetValue<string>() == keptId);
        var refreshed = await CodeFlow.TokenAsync(gateway, new()
        {
            ["grant_type"] = "refresh_token",
            ["refresh_token"] = kept["refresh_token"]!.GetValue<string>(),
            ["client_id"] = gateway.B.ClientId,
            ["client_secret"] = gateway.B.ClientSecret,
        });
        using var api = gateway.Client(refreshed["access_token"]!.GetValue<string>());
        using var models = await api.GetAsync("v1/models");
        Assert.Equal(HttpStatusCode.OK, models.StatusCode);
    }
}
