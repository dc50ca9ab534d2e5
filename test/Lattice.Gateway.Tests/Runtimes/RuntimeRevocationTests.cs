using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;
using Lattice.Gateway.Runtimes;
using Lattice.Gateway.Tests.Identity;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Protocol.Runtime;
using Lattice.Runtime.Connection;
using Lattice.Runtime.Engines;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Runtimes;

/// <summary>
/// A revoked runtime loses its link everywhere: on every node (through the revocation log), when the revocation lands
/// while its hello is still on the way, when an operator revokes it, and when its owner leaves the workspace.
/// </summary>
public abstract class RuntimeRevocationTests(OAuthGateway gateway)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private static StringContent Chat(string model) => new(
        $$"""{"model":"{{model}}","messages":[{"role":"user","content":"hi"}]}""", Encoding.UTF8, "application/json");

    /// <summary>A runtime record made with <paramref name="owner"/>'s credential, paired through <paramref name="origin"/>.</summary>
    private static async Task<RuntimeCredentials> PairedAsync(HttpClient owner, string origin)
    {
        var created = await OAuthGateway.PostAsync(owner, "v1/personal-runtimes", new JsonObject { ["displayName"] = "laptop", ["executionBackend"] = "local-model" });
        return await RuntimeCredentials.PairAsync(new Uri(origin), created["bootstrapToken"]!.GetValue<string>(), CancellationToken.None);
    }

    private static RuntimeRegistry Links(IServiceProvider services) => services.GetRequiredService<RuntimeRegistry>();

    private async Task<string> StatusAsync(HttpClient viewer, string latticeId) =>
        JsonNode.Parse(await viewer.GetStringAsync($"v1/personal-runtimes/{latticeId}"))!["status"]!.GetValue<string>();

    [Fact]
    public async Task A_runtime_revoked_on_one_node_loses_its_link_to_the_other_within_a_second()
    {
        var (node2, origin2) = await gateway.StartNodeAsync();
        try
        {
            using var owner = gateway.Client(gateway.A.Key);
            var credentials = await PairedAsync(owner, origin2);
            await using var runtime = await TestRuntimes.StartAsync(credentials, new FixedEngine());
            Assert.NotNull(Links(node2.Services).Find(credentials.LatticeId));

            await OAuthGateway.PostAsync(owner, $"v1/personal-runtimes/{credentials.LatticeId}/revoke", new JsonObject());
            await RevocationAcrossNodesTests.TwoReadsLaterAsync(node2);

            Assert.Null(Links(node2.Services).Find(credentials.LatticeId));
            Assert.Equal(LinkExit.CredentialRejected, await runtime.Run.WaitAsync(TimeSpan.FromSeconds(60)));
        }
        finally
        {
            await node2.ShutDownAsync();
        }
    }

    [Fact]
    public async Task A_hosted_runtime_an_operator_revokes_on_one_node_is_never_dispatched_to_by_the_other()
    {
        var hosted = await OAuthGateway.PostAsync(gateway.Admin, "admin/v1/runtimes", new JsonObject { ["display_name"] = "rack" });
        var id = hosted["lattice_id"]!.GetValue<string>();
        var model = "lovelace:rack-" + id;
        await OAuthGateway.PostAsync(gateway.Admin, "admin/v1/models", new JsonObject
        {
            ["id"] = model,
            ["offers"] = new JsonArray(new JsonObject { ["runtime"] = id, ["upstream_model"] = "fixed" }),
        });
        var (node2, origin2) = await gateway.StartNodeAsync();
        try
        {
            var credentials = await RuntimeCredentials.PairAsync(new Uri(origin2), hosted["bootstrap_token"]!.GetValue<string>(), CancellationToken.None);
            await using var runtime = await TestRuntimes.StartAsync(credentials, new FixedEngine());
            using var onNode2 = gateway.Client(gateway.B.Key, origin2);
            using (var before = await onNode2.PostAsync("v1/chat/completions", Chat(model)))
            {
                Assert.Equal(HttpStatusCode.OK, before.StatusCode);
            }

            var revoked = await OAuthGateway.PostAsync(gateway.Admin, $"admin/v1/runtimes/{id}/revoke", new JsonObject());
            Assert.Equal("revoked", revoked["status"]!.GetValue<string>());
            Assert.True(revoked["hosted"]!.GetValue<bool>());
            Assert.NotNull(revoked["revoked_at"]);
            await RevocationAcrossNodesTests.TwoReadsLaterAsync(node2);

            using (var after = await onNode2.PostAsync("v1/chat/completions", Chat(model)))
            {
                Assert.Equal(HttpStatusCode.ServiceUnavailable, after.StatusCode);
                Assert.Equal("no_capacity", JsonNode.Parse(await after.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
            }
            Assert.Equal(LinkExit.CredentialRejected, await runtime.Run.WaitAsync(TimeSpan.FromSeconds(60)));
        }
        finally
        {
            await node2.ShutDownAsync();
        }
    }

    [Fact]
    public async Task An_operator_revokes_a_personal_runtime_of_any_workspace_and_an_unknown_one_is_404()
    {
        using var owner = gateway.Client(gateway.A.Key);
        var credentials = await PairedAsync(owner, gateway.Origin);
        await using var runtime = await TestRuntimes.StartAsync(credentials, new FixedEngine());

        var revoked = await OAuthGateway.PostAsync(gateway.Admin, $"admin/v1/runtimes/{credentials.LatticeId}/revoke", new JsonObject());
        Assert.Equal(gateway.A.WorkspaceId, revoked["workspace_id"]!.GetValue<string>());
        Assert.False(revoked["hosted"]!.GetValue<bool>());
        Assert.Null(Links(gateway.Services).Find(credentials.LatticeId));
        Assert.Equal("revoked", await StatusAsync(owner, credentials.LatticeId));
        Assert.Equal(LinkExit.CredentialRejected, await runtime.Run.WaitAsync(TimeSpan.FromSeconds(60)));

        using var unknown = await gateway.Admin.PostAsync("admin/v1/runtimes/lat_00000000000000000000/revoke", null);
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Equal("The runtime 'lat_00000000000000000000' does not exist.",
            JsonNode.Parse(await unknown.Content.ReadAsStringAsync())!["error"]!["message"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_revocation_while_the_hello_is_on_the_way_closes_the_link_instead_of_welcoming_it()
    {
        using var owner = gateway.Client(gateway.A.Key);
        var credentials = await PairedAsync(owner, gateway.Origin);
        using var timeout = new CancellationTokenSource(Timeout);
        using var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("Authorization", "Bearer " + credentials.Credential);
        // The upgrade checks the credential; the hello is not sent yet.
        await socket.ConnectAsync(new Uri("ws" + gateway.Origin["http".Length..] + RuntimeLink.ConnectPath), timeout.Token);

        await OAuthGateway.PostAsync(owner, $"v1/personal-runtimes/{credentials.LatticeId}/revoke", new JsonObject());
        var hello = Frame.Json(FrameType.Hello, 0, new HelloMessage("test", 1, []), ProtocolJsonContext.Default.HelloMessage);
        await socket.SendAsync(hello, WebSocketMessageType.Binary, true, timeout.Token);

        var first = await socket.ReceiveAsync(new byte[4096], timeout.Token);
        Assert.Equal(WebSocketMessageType.Close, first.MessageType);
        Assert.Equal(WebSocketCloseStatus.PolicyViolation, first.CloseStatus);
        Assert.Equal("runtime credential revoked", first.CloseStatusDescription);
        Assert.Null(Links(gateway.Services).Find(credentials.LatticeId));
        Assert.Equal("revoked", await StatusAsync(owner, credentials.LatticeId));
    }

    [Fact]
    public async Task Removing_a_member_revokes_their_runtimes_and_cuts_their_links_but_not_the_workspace_runtimes()
    {
        var tenant = await gateway.NewTenantAsync("leaver");
        var access = (await CodeFlow.RunAsync(gateway, tenant, tenant.ClientId, tenant.ClientSecret, ["lattice:compute:personal_runtime:manage"]))["access_token"]!.GetValue<string>();
        using var member = gateway.Client(access);
        using var workspace = gateway.Client(tenant.Key);
        var owned = await PairedAsync(member, gateway.Origin);
        var shared = await PairedAsync(workspace, gateway.Origin);
        await using var ownedRuntime = await TestRuntimes.StartAsync(owned, new FixedEngine());
        await using var sharedRuntime = await TestRuntimes.StartAsync(shared, new FixedEngine());

        using (var removed = await workspace.DeleteAsync($"admin/v1/workspaces/{tenant.WorkspaceId}/members/{tenant.UserId}"))
        {
            Assert.Equal(HttpStatusCode.NoContent, removed.StatusCode);
        }

        Assert.Null(Links(gateway.Services).Find(owned.LatticeId));
        Assert.Equal("revoked", await StatusAsync(workspace, owned.LatticeId));
        Assert.Equal(LinkExit.CredentialRejected, await ownedRuntime.Run.WaitAsync(TimeSpan.FromSeconds(60)));
        Assert.NotNull(Links(gateway.Services).Find(shared.LatticeId));
        Assert.Equal("reachable", await StatusAsync(workspace, shared.LatticeId));
    }
}

public sealed class SqliteRuntimeRevocationTests(OAuthGateway gateway) : RuntimeRevocationTests(gateway), IClassFixture<OAuthGateway>;

[Collection(PostgresCollection.Name)]
public sealed class PostgresRuntimeRevocationTests(PostgresOAuthGateway gateway) : RuntimeRevocationTests(gateway.Gateway), IClassFixture<PostgresOAuthGateway>;
