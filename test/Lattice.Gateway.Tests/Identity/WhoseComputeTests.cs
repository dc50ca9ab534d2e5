using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Lattice.Runtime.Connection;
using Lattice.Runtime.Engines;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>
/// An access token dispatches to the granting user's own personal runtime — a real daemon link — and lists it;
/// another user's token in the same workspace finds no such runtime.
/// </summary>
public sealed class WhoseComputeTests(OAuthGateway gateway) : IClassFixture<OAuthGateway>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private static StringContent Chat(string model) => new(
        $$"""{"model":"{{model}}","messages":[{"role":"user","content":"hi"}]}""", Encoding.UTF8, "application/json");

    [Fact]
    public async Task A_token_reaches_its_users_own_runtime_and_no_one_elses()
    {
        string[] scopes = ["lattice:compute:inference", "lattice:compute:personal_runtime:manage"];
        var owner = (await CodeFlow.RunAsync(gateway, gateway.A, gateway.A.ClientId, gateway.A.ClientSecret, scopes))["access_token"]!.GetValue<string>();

        // A second user of the same workspace.
        var email = $"colleague-{Guid.NewGuid():N}@example.test";
        var colleagueId = (await OAuthGateway.PostAsync(gateway.Admin, "admin/v1/users", new JsonObject { ["email"] = email, ["password"] = OAuthGateway.Password }))["id"]!.GetValue<string>();
        await OAuthGateway.PostAsync(gateway.Admin, $"admin/v1/workspaces/{gateway.A.WorkspaceId}/members", new JsonObject { ["user_id"] = colleagueId });
        var colleagueTenant = gateway.A with { UserId = colleagueId, Email = email };
        var colleague = (await CodeFlow.RunAsync(gateway, colleagueTenant, gateway.A.ClientId, gateway.A.ClientSecret, scopes))["access_token"]!.GetValue<string>();

        // The owner creates a runtime with their token and a daemon pairs and connects it.
        using var asOwner = gateway.Client(owner);
        var created = await OAuthGateway.PostAsync(asOwner, "v1/personal-runtimes", new JsonObject { ["displayName"] = "owner's laptop", ["executionBackend"] = "local-model" });
        var latticeId = created["runtime"]!["latticeId"]!.GetValue<string>();
        var credentials = await RuntimeCredentials.PairAsync(new Uri(gateway.Origin), created["bootstrapToken"]!.GetValue<string>(), CancellationToken.None);
        var client = new RuntimeClient(credentials, new EngineSet([new FixedEngine()]), 4);
        var connected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        client.Status += s =>
        {
            if (s.StartsWith("connected", StringComparison.Ordinal))
            {
                connected.TrySetResult();
            }
        };
        using var stop = new CancellationTokenSource();
        var run = client.RunAsync(stop.Token);
        try
        {
            await connected.Task.WaitAsync(Timeout);
            var model = "lattice:personal:" + latticeId;

            using (var answer = await asOwner.PostAsync("v1/chat/completions", Chat(model)))
            {
                var text = await answer.Content.ReadAsStringAsync();
                Assert.True(answer.StatusCode == HttpStatusCode.OK, text);
                Assert.Equal("Hello from the fixed engine.", JsonNode.Parse(text)!["choices"]![0]!["message"]!["content"]!.GetValue<string>());
            }
            var listed = JsonNode.Parse(await asOwner.GetStringAsync("v1/personal-runtimes"))!["runtimes"]!.AsArray();
            Assert.Contains(listed, r => r!["latticeId"]!.GetValue<string>() == latticeId && r["status"]!.GetValue<string>() == "reachable");

            using var asColleague = gateway.Client(colleague);
            using (var refused = await asColleague.PostAsync("v1/chat/completions", Chat(model)))
            {
                Assert.Equal(HttpStatusCode.NotFound, refused.StatusCode);
                Assert.Equal("personal_lattice_not_found", JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
            }
            var theirs = JsonNode.Parse(await asColleague.GetStringAsync("v1/personal-runtimes"))!["runtimes"]!.AsArray();
            Assert.DoesNotContain(theirs, r => r!["latticeId"]!.GetValue<string>() == latticeId);

            // The workspace's developer key is the workspace's: it reaches the runtime too.
            using var asKey = gateway.Client(gateway.A.Key);
            using var byKey = await asKey.PostAsync("v1/chat/completions", Chat(model));
            Assert.Equal(HttpStatusCode.OK, byKey.StatusCode);

            // Workspace B's key never does.
            using var asB = gateway.Client(gateway.B.Key);
            using var byB = await asB.PostAsync("v1/chat/completions", Chat(model));
            Assert.Equal(HttpStatusCode.NotFound, byB.StatusCode);
        }
        finally
        {
            await stop.CancelAsync();
            await run.WaitAsync(Timeout);
        }
    }
}
