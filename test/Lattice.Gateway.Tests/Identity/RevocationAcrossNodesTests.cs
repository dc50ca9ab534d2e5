using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Lattice.Gateway.Changes;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>
/// Two gateway nodes on one database: a grant or key revoked through one node stops working on the other within
/// a second (each node polls the revocation log and the change feed), and at once on the node that revoked it.
/// </summary>
public abstract class RevocationAcrossNodesTests(OAuthGateway gateway)
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(1);

    private static async Task<HttpStatusCode> ModelsAsync(HttpClient client)
    {
        using var response = await client.GetAsync("v1/models");
        return response.StatusCode;
    }

    /// <summary>
    /// Waits until <paramref name="node"/> has read the revocation log twice more. The first read may have begun
    /// before the revocation was committed; the second began after it. Counting reads rather than timing them keeps
    /// the test exact on a loaded machine; the second-long bound follows from the read interval (asserted below).
    /// </summary>
    internal static async Task TwoReadsLaterAsync(WebApplication node)
    {
        var poller = node.Services.GetRequiredService<ChangeFeedPoller>();
        // Waits on the poller's own signal; the bound only keeps a node that stopped reading from hanging the run.
        await poller.ReadsAsync(poller.CompletedReads + 2).WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public void A_node_reads_the_revocation_log_often_enough_to_bite_within_a_second()
    {
        // A revocation committed just after a read began is seen by the next read, one interval later.
        Assert.True(ChangeFeedPoller.Interval * 2 <= Bound);
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
            Assert.Equal(HttpStatusCode.Unauthorized, await ModelsAsync(onNode1));
            await TwoReadsLaterAsync(node2);

            using var response = await onNode2.GetAsync("v1/models");
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
            Assert.Equal("revoked_grant", error["code"]!.GetValue<string>());
        }
        finally
        {
            await node2.ShutDownAsync();
        }
    }

    [Fact]
    public async Task A_reused_refresh_token_revokes_the_grant_and_every_access_token_it_minted_on_every_node()
    {
        var (node2, origin2) = await gateway.StartNodeAsync();
        try
        {
            var a = gateway.A;
            Dictionary<string, string> Refresh(string token) => new()
            {
                ["grant_type"] = "refresh_token", ["refresh_token"] = token, ["client_id"] = a.ClientId, ["client_secret"] = a.ClientSecret,
            };
            var first = await CodeFlow.RunAsync(gateway, a, a.ClientId, a.ClientSecret, ["lattice:compute:inference", "offline_access"]);
            var spent = first["refresh_token"]!.GetValue<string>();
            var second = await CodeFlow.TokenAsync(gateway, Refresh(spent));
            string[] minted = [first["access_token"]!.GetValue<string>(), second["access_token"]!.GetValue<string>()];
            foreach (var access in minted)
            {
                using var onNode2 = gateway.Client(access, origin2);
                Assert.Equal(HttpStatusCode.OK, await ModelsAsync(onNode2));
            }

            // Someone else presents the spent refresh token: the grant goes, with every access token minted from it.
            var reused = await CodeFlow.TokenAsync(gateway, Refresh(spent), HttpStatusCode.BadRequest);
            Assert.Equal("invalid_grant", reused["error"]!.GetValue<string>());
            foreach (var access in minted)
            {
                using var onNode1 = gateway.Client(access);
                await AssertRevokedGrantAsync(onNode1);
            }
            await TwoReadsLaterAsync(node2);
            foreach (var access in minted)
            {
                using var onNode2 = gateway.Client(access, origin2);
                await AssertRevokedGrantAsync(onNode2);
            }
            // The rotated refresh token, the legitimate client's, is gone with the grant.
            var rotated = await CodeFlow.TokenAsync(gateway, Refresh(second["refresh_token"]!.GetValue<string>()), HttpStatusCode.BadRequest);
            Assert.Equal("invalid_grant", rotated["error"]!.GetValue<string>());
        }
        finally
        {
            await node2.ShutDownAsync();
        }
    }

    private static async Task AssertRevokedGrantAsync(HttpClient client)
    {
        using var response = await client.GetAsync("v1/models");
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("revoked_grant", JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_key_revoked_on_one_node_is_refused_by_the_other_within_a_second()
    {
        var (node2, origin2) = await gateway.StartNodeAsync();
        try
        {
            var created = await OAuthGateway.PostAsync(gateway.Client(gateway.A.Key), $"admin/v1/workspaces/{gateway.A.WorkspaceId}/keys",
                new JsonObject { ["name"] = "short-lived", ["scopes"] = new JsonArray("lattice:compute:inference") });
            // Node 2 finds the new key in the database on its first request.
            using var onNode2 = gateway.Client(created["key"]!.GetValue<string>(), origin2);
            Assert.Equal(HttpStatusCode.OK, await ModelsAsync(onNode2));

            await OAuthGateway.PostAsync(gateway.Client(gateway.A.Key), $"admin/v1/keys/{created["id"]}/revoke", new JsonObject());
            await TwoReadsLaterAsync(node2);
            Assert.Equal(HttpStatusCode.Unauthorized, await ModelsAsync(onNode2));
        }
        finally
        {
            await node2.ShutDownAsync();
        }
    }
}

public sealed class SqliteRevocationAcrossNodesTests(OAuthGateway gateway) : RevocationAcrossNodesTests(gateway), IClassFixture<OAuthGateway>;

[Collection(PostgresCollection.Name)]
public sealed class PostgresRevocationAcrossNodesTests(PostgresOAuthGateway gateway) : RevocationAcrossNodesTests(gateway.Gateway), IClassFixture<PostgresOAuthGateway>;
