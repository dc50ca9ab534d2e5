using Microsoft.Extensions.DependencyInjection;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>
/// Two gateway nodes on one database: a grant or key revoked through one node stops working on the other within
/// a second (each node polls the revocation log), and at once on the node that revoked it.
/// </summary>
public sealed class RevocationAcrossNodesTests(OAuthGateway gateway) : IClassFixture<OAuthGateway>
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(1);

    private static async Task<HttpStatusCode> ModelsAsync(HttpClient client)
    {
        using var response = await client.GetAsync("v1/models");
        return response.StatusCode;
    }

    /// <summary>Polls until the credential is refused; returns how long that took.</summary>
    private static async Task<TimeSpan> TimeUntilRefusedAsync(HttpClient client)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(5))
        {
            if (await ModelsAsync(client) == HttpStatusCode.Unauthorized)
            {
                return clock.Elapsed;
            }
            await Task.Delay(20);
        }
        return TimeSpan.MaxValue;
    }

    [Fact]
    public async Task A_grant_revoked_on_one_node_is_refused_by_the_other_within_a_second()
    {
        var (node2, origin2) = await gateway.StartNodeAsync();
        try
        {
            var access = (await CodeFlow.RunAsync(gateway, gateway.A, gateway.A.ClientId, gateway.A.ClientSecret, ["lattice:compute:inference"]))["access_token"]!.GetValue<string>();
            using var onNode2 = gateway.Client(access, origin2);
            using var onNode1 = gateway.Client(access);
            // Node 2 read the signing key node 1 created from disk, so it accepts node 1's tokens and publishes the same key.
            Assert.Equal(HttpStatusCode.OK, await ModelsAsync(onNode2));
            using (var anonymous1 = gateway.Client(null))
            using (var anonymous2 = gateway.Client(null, origin2))
            {
                Assert.Equal(await anonymous1.GetStringAsync(".well-known/jwks"), await anonymous2.GetStringAsync(".well-known/jwks"));
            }

            var grant = CodeFlow.Payload(access)["oi_au_id"]!.GetValue<string>();
            await OAuthGateway.PostAsync(gateway.Client(gateway.A.Key), $"admin/v1/grants/{grant}/revoke", new JsonObject());
            var revokedAt = Stopwatch.StartNew();
            Assert.Equal(HttpStatusCode.Unauthorized, await ModelsAsync(onNode1));
            var took = await TimeUntilRefusedAsync(onNode2);
            Assert.True(revokedAt.Elapsed <= Bound, $"node 2 still accepted the revoked grant after {revokedAt.Elapsed.TotalMilliseconds:F0} ms");
            Assert.NotEqual(TimeSpan.MaxValue, took);

            using var response = await onNode2.GetAsync("v1/models");
            var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
            Assert.Equal("revoked_grant", error["code"]!.GetValue<string>());
        }
        finally
        {
            await node2.StopAsync();
            await node2.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_key_revoked_on_one_node_is_refused_by_the_other_within_a_second()
    {
        var (node2, origin2) = await gateway.StartNodeAsync();
        try
        {
            var created = await OAuthGateway.PostAsync(gateway.Client(gateway.A.Key), $"admin/v1/workspaces/{gateway.A.WorkspaceId}/keys",
                new JsonObject { ["name"] = "short-lived", ["scopes"] = new JsonArray("lattice:compute:inference") });
            // Node 2 learns of keys created elsewhere when it reloads; a revocation is what must travel fast.
            using var onNode2 = gateway.Client(created["key"]!.GetValue<string>(), origin2);
            await node2.Services.GetRequiredService<Lattice.Gateway.Auth.ApiKeyStore>().ReloadAsync();
            Assert.Equal(HttpStatusCode.OK, await ModelsAsync(onNode2));

            await OAuthGateway.PostAsync(gateway.Client(gateway.A.Key), $"admin/v1/keys/{created["id"]}/revoke", new JsonObject());
            var revokedAt = Stopwatch.StartNew();
            Assert.NotEqual(TimeSpan.MaxValue, await TimeUntilRefusedAsync(onNode2));
            Assert.True(revokedAt.Elapsed <= Bound, $"node 2 still accepted the revoked key after {revokedAt.Elapsed.TotalMilliseconds:F0} ms");
        }
        finally
        {
            await node2.StopAsync();
            await node2.DisposeAsync();
        }
    }
}
