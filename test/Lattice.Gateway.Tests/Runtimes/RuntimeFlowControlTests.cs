using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Lattice.Gateway.Runtimes;
using Lattice.Runtime.Connection;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Runtimes;

/// <summary>
/// Flow control end to end: a real daemon and the gateway on loopback, and a client that reads an endless stream a
/// kilobyte at a time. The engine waits for credit, and the gateway holds at most one window of the stream.
/// </summary>
public sealed class RuntimeFlowControlTests : IClassFixture<LiveGateway>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly LiveGateway _gateway;

    public RuntimeFlowControlTests(LiveGateway gateway) => _gateway = gateway;

    /// <summary>Waits on counters of the daemon and the gateway (checked until they hold or the test gives up).</summary>
    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        using var giveUp = new CancellationTokenSource(Timeout);
        while (!condition())
        {
            Assert.False(giveUp.IsCancellationRequested, "never: " + what);
            await Task.Delay(5, CancellationToken.None);
        }
    }

    private static async Task ReadExactlyAsync(Stream body, int count)
    {
        var buffer = new byte[count];
        await body.ReadExactlyAsync(buffer).AsTask().WaitAsync(Timeout);
    }

    [Fact]
    public async Task A_client_reading_an_endless_stream_slowly_makes_the_engine_wait_for_credit_and_the_gateway_hold_one_window()
    {
        var engine = new EndlessEngine("endless");
        await using var runtime = await TestRuntimes.ConnectAsync(_gateway, _gateway.KeyA, engine);
        var link = _gateway.Services.GetRequiredService<RuntimeRegistry>().Find(runtime.LatticeId)!;
        Assert.True(link.FlowControl);

        using var http = _gateway.Client(_gateway.KeyA);
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
        {
            Content = new StringContent($$"""{"model":"lattice:personal:{{runtime.LatticeId}}","messages":[{"role":"user","content":"hi"}],"stream":true}""",
                Encoding.UTF8, "application/json"),
        };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await using var body = await response.Content.ReadAsStreamAsync();

        for (var round = 0; round < 3; round++)
        {
            // A kilobyte at a time, with a pause (on counters, not a clock) after each: the engine outruns the client
            // until the sockets between them are full, then it waits for credit.
            await ReadExactlyAsync(body, 1024);
            await WaitUntilAsync(() => runtime.Client.WaitingForCredit == 1, "the engine waits for credit");
            var written = engine.Written;
            Assert.InRange(link.BufferedBytes, 0, RuntimeLinkLimits.WindowBytes);
            Assert.Equal(1, link.InFlight);

            // The client takes a few megabytes (the sockets' buffers and more): the gateway's relay takes bytes from
            // the window, gives them back as credit, and the engine goes on.
            await ReadExactlyAsync(body, 8 * 1024 * 1024);
            await WaitUntilAsync(() => engine.Written > written, "the engine goes on once the client reads");
            Assert.InRange(link.BufferedBytes, 0, RuntimeLinkLimits.WindowBytes);
        }
    }
}

/// <summary>A live gateway that allows two personal runtimes per workspace.</summary>
public sealed class CappedGateway() : LiveGateway(new Dictionary<string, string?> { ["Lattice:Runtimes:MaxPerWorkspace"] = "2" });

/// <summary><c>Lattice:Runtimes:MaxPerWorkspace</c>: creating (or pairing) a personal runtime beyond the cap is 409 <c>runtime_limit_reached</c>.</summary>
public sealed class RuntimeCapTests : IClassFixture<CappedGateway>
{
    private readonly CappedGateway _gateway;

    public RuntimeCapTests(CappedGateway gateway) => _gateway = gateway;

    private async Task<(HttpStatusCode Status, JsonNode Body)> CreateAsync(string key)
    {
        using var http = _gateway.Client(key);
        using var response = await http.PostAsync("v1/personal-runtimes",
            new StringContent("""{"displayName":"laptop","executionBackend":"local-model"}""", Encoding.UTF8, "application/json"));
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!);
    }

    [Fact]
    public async Task A_workspace_gets_its_cap_of_runtimes_then_409_runtime_limit_reached_for_creating_or_pairing_and_room_again_after_a_revoke()
    {
        var (first, created) = await CreateAsync(_gateway.KeyA);
        Assert.Equal(HttpStatusCode.Created, first);
        Assert.Equal(HttpStatusCode.Created, (await CreateAsync(_gateway.KeyA)).Status);

        var (status, error) = await CreateAsync(_gateway.KeyA);
        Assert.Equal(HttpStatusCode.Conflict, status);
        Assert.Equal("""{"error":{"message":"This workspace already has 2 personal runtimes, the most it may have; revoke one first.","type":"invalid_request_error","param":null,"code":"runtime_limit_reached"}}""",
            error.ToJsonString());

        // Another workspace has its own count.
        var (createdInB, recordInB) = await CreateAsync(_gateway.KeyB);
        Assert.Equal(HttpStatusCode.Created, createdInB);

        // A revoked runtime no longer counts.
        using var http = _gateway.Client(_gateway.KeyA);
        var id = created["runtime"]!["latticeId"]!.GetValue<string>();
        using (var revoked = await http.PostAsync($"v1/personal-runtimes/{id}/revoke", null))
        {
            Assert.Equal(HttpStatusCode.OK, revoked.StatusCode);
        }
        Assert.Equal(HttpStatusCode.Created, (await CreateAsync(_gateway.KeyA)).Status);

        // Records from before the cap was lowered stay, but no more get paired: two paired runtimes already in B.
        await using (var scope = _gateway.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<Lattice.Gateway.Persistence.LatticeDbContext>();
            var workspace = recordInB["runtime"]!["accountId"]!.GetValue<string>();
            for (var i = 0; i < 2; i++)
            {
                db.Runtimes.Add(new Lattice.Gateway.Persistence.RuntimeEntity
                {
                    LatticeId = $"lat_before_the_cap_{i}", WorkspaceId = workspace, DisplayName = "old", ExecutionBackend = "local-model",
                    CredentialHash = $"hash_{i}", CreatedAt = DateTimeOffset.UtcNow, UpdatedAt = DateTimeOffset.UtcNow,
                });
            }
            await db.SaveChangesAsync();
        }
        using var anonymous = new HttpClient { BaseAddress = new Uri(_gateway.Origin + "/") };
        using var pair = await anonymous.PostAsync("v1/runtimes/pair", new StringContent(
            new JsonObject { ["bootstrapToken"] = recordInB["bootstrapToken"]!.GetValue<string>() }.ToJsonString(), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Conflict, pair.StatusCode);
        Assert.Equal("runtime_limit_reached", JsonNode.Parse(await pair.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
    }
}
