using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lattice.Runtime.Connection;
using Lattice.Runtime.Engines;

namespace Lattice.Gateway.Tests.Runtimes;

/// <summary>Personal runtimes end to end in one process: records, pairing, the real WebSocket link, routing, faults.</summary>
public sealed class RuntimeLinkTests : IClassFixture<LiveGateway>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly LiveGateway _gateway;

    public RuntimeLinkTests(LiveGateway gateway) => _gateway = gateway;

    private Task<(string LatticeId, string Token)> CreateAsync(string key, string name = "laptop") => TestRuntimes.CreateAsync(_gateway, key, name);

    private Task<TestRuntimes.Runtime> ConnectAsync(string key, params IEngine[] engines) => TestRuntimes.ConnectAsync(_gateway, key, engines);

    private static Task<TestRuntimes.Runtime> StartAsync(RuntimeCredentials credentials, params IEngine[] engines) => TestRuntimes.StartAsync(credentials, engines);

    private static StringContent Chat(string model, bool stream = false) => new(
        $$"""{"model":"{{model}}","messages":[{"role":"user","content":"hi"}],"stream":{{(stream ? "true" : "false")}}}""", Encoding.UTF8, "application/json");

    private async Task<string> StatusOfAsync(string key, string latticeId)
    {
        using var http = _gateway.Client(key);
        var record = JsonNode.Parse(await http.GetStringAsync($"v1/personal-runtimes/{latticeId}"))!;
        return record["status"]!.GetValue<string>();
    }

    [Fact]
    public async Task A_runtime_goes_from_unpaired_to_reachable_to_offline()
    {
        var (id, token) = await CreateAsync(_gateway.KeyA);
        Assert.Equal("unpaired", await StatusOfAsync(_gateway.KeyA, id));
        var credentials = await RuntimeCredentials.PairAsync(new Uri(_gateway.Origin), token, CancellationToken.None);
        Assert.StartsWith("lrt_", credentials.Credential, StringComparison.Ordinal);
        Assert.Equal("offline", await StatusOfAsync(_gateway.KeyA, id));

        await using (await StartAsync(credentials, new FixedEngine()))
        {
            Assert.Equal("reachable", await StatusOfAsync(_gateway.KeyA, id));
            using var http = _gateway.Client(_gateway.KeyA);
            var list = JsonNode.Parse(await http.GetStringAsync("v1/personal-runtimes"))!["runtimes"]!.AsArray();
            var mine = list.Single(r => r!["latticeId"]!.GetValue<string>() == id)!;
            Assert.Equal("lattice:personal:" + id, mine["modelId"]!.GetValue<string>());
            Assert.Equal("chat.completions", mine["capabilities"]![0]!["task"]!.GetValue<string>());
        }

        var deadline = DateTime.UtcNow + Timeout;
        while (await StatusOfAsync(_gateway.KeyA, id) != "offline" && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }
        Assert.Equal("offline", await StatusOfAsync(_gateway.KeyA, id));

        // The bootstrap token was one-time.
        await Assert.ThrowsAsync<PairingException>(() => RuntimeCredentials.PairAsync(new Uri(_gateway.Origin), token, CancellationToken.None));
    }

    [Fact]
    public async Task Chat_reaches_exactly_that_runtime_streaming_and_not()
    {
        await using var runtime = await ConnectAsync(_gateway.KeyA, new FixedEngine(streamChunks: 3));
        using var http = _gateway.Client(_gateway.KeyA);
        var model = "lattice:personal:" + runtime.LatticeId;

        using var plain = await http.PostAsync("v1/chat/completions", Chat(model));
        Assert.Equal(HttpStatusCode.OK, plain.StatusCode);
        var answer = JsonNode.Parse(await plain.Content.ReadAsStringAsync())!;
        Assert.Equal("Hello from the fixed engine.", answer["choices"]![0]!["message"]!["content"]!.GetValue<string>());
        // The engine calls itself "fixed"; the client is told the id it asked for.
        Assert.Equal(model, answer["model"]!.GetValue<string>());

        using var streamed = await http.PostAsync("v1/chat/completions", Chat(model, stream: true));
        Assert.Equal("text/event-stream", streamed.Content.Headers.ContentType?.MediaType);
        var text = await streamed.Content.ReadAsStringAsync();
        Assert.Equal(3, text.Split("\"content\":\"tick \"").Length - 1);
        Assert.EndsWith("data: [DONE]\n\n", text, StringComparison.Ordinal);
        var chunks = Infrastructure.Sse.DataEvents(text).SkipLast(1).ToList();
        Assert.Equal(4, chunks.Count);
        Assert.All(chunks, c => Assert.Equal(model, JsonNode.Parse(c)!["model"]!.GetValue<string>()));
    }

    [Fact]
    public async Task Another_workspace_sees_no_such_runtime()
    {
        await using var runtime = await ConnectAsync(_gateway.KeyA, new FixedEngine());
        using var other = _gateway.Client(_gateway.KeyB);
        using var dispatch = await other.PostAsync("v1/chat/completions", Chat("lattice:personal:" + runtime.LatticeId));
        Assert.Equal(HttpStatusCode.NotFound, dispatch.StatusCode);
        Assert.Contains("personal_lattice_not_found", await dispatch.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        using var get = await other.GetAsync($"v1/personal-runtimes/{runtime.LatticeId}");
        Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
        using var revoke = await other.PostAsync($"v1/personal-runtimes/{runtime.LatticeId}/revoke", null);
        Assert.Equal(HttpStatusCode.NotFound, revoke.StatusCode);
        var list = JsonNode.Parse(await other.GetStringAsync("v1/personal-runtimes"))!["runtimes"]!.AsArray();
        Assert.DoesNotContain(list, r => r!["latticeId"]!.GetValue<string>() == runtime.LatticeId);
    }

    [Fact]
    public async Task An_offline_runtime_is_409_and_a_task_it_cannot_serve_is_400()
    {
        var (id, _) = await CreateAsync(_gateway.KeyA);
        using var http = _gateway.Client(_gateway.KeyA);
        using var offline = await http.PostAsync("v1/chat/completions", Chat("lattice:personal:" + id));
        Assert.Equal(HttpStatusCode.Conflict, offline.StatusCode);
        Assert.Contains("runtime_unreachable", await offline.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        await using var runtime = await ConnectAsync(_gateway.KeyA, new FixedEngine());
        using var embed = await http.PostAsync("v1/embeddings", new StringContent($$"""{"model":"lattice:personal:{{runtime.LatticeId}}","input":"x"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, embed.StatusCode);
        Assert.Contains("model_not_supported", await embed.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Fifty_concurrent_streams_share_one_link()
    {
        await using var runtime = await ConnectAsync(_gateway.KeyA, new FixedEngine(streamChunks: 20));
        using var http = _gateway.Client(_gateway.KeyA);
        var model = "lattice:personal:" + runtime.LatticeId;
        var bodies = await Task.WhenAll(Enumerable.Range(0, 50).Select(async _ =>
        {
            using var response = await http.PostAsync("v1/chat/completions", Chat(model, stream: true));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return await response.Content.ReadAsStringAsync();
        })).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.All(bodies, b =>
        {
            Assert.Equal(20, b.Split("tick ").Length - 1);
            Assert.EndsWith("data: [DONE]\n\n", b, StringComparison.Ordinal);
        });
    }

    [Fact]
    public async Task A_client_that_leaves_cancels_the_engine()
    {
        var engine = new SlowEngine("slow", TimeSpan.FromMilliseconds(200), 100);
        await using var runtime = await ConnectAsync(_gateway.KeyA, engine);
        using var http = _gateway.Client(_gateway.KeyA);
        using (var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = Chat("lattice:personal:" + runtime.LatticeId, stream: true) })
        using (var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            await using var body = await response.Content.ReadAsStreamAsync();
            Assert.True(await body.ReadAsync(new byte[16]).AsTask().WaitAsync(Timeout) > 0);
        }
        await engine.Cancelled.WaitAsync(Timeout);
    }

    [Fact]
    public async Task Revoking_cuts_the_link_mid_stream_and_the_daemon_stops()
    {
        var engine = new SlowEngine("slow", TimeSpan.FromMilliseconds(100), 200);
        var runtime = await ConnectAsync(_gateway.KeyA, engine);
        using var http = _gateway.Client(_gateway.KeyA);
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = Chat("lattice:personal:" + runtime.LatticeId, stream: true) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var reading = response.Content.ReadAsStringAsync();
        await engine.FirstChunkSent.WaitAsync(Timeout);

        using (var revoke = await http.PostAsync($"v1/personal-runtimes/{runtime.LatticeId}/revoke", null))
        {
            Assert.Equal(HttpStatusCode.OK, revoke.StatusCode);
            Assert.Equal("revoked", JsonNode.Parse(await revoke.Content.ReadAsStringAsync())!["status"]!.GetValue<string>());
        }

        var text = await reading.WaitAsync(Timeout);
        Assert.DoesNotContain("[DONE]", text, StringComparison.Ordinal);
        var last = text.TrimEnd('\n').Split("\n\n")[^1];
        Assert.StartsWith("data: {\"error\":", last, StringComparison.Ordinal);
        Assert.Equal("personal_lattice_relay_unavailable", JsonDocument.Parse(last["data: ".Length..]).RootElement.GetProperty("error").GetProperty("code").GetString());

        Assert.Equal(LinkExit.CredentialRejected, await runtime.Run.WaitAsync(TimeSpan.FromSeconds(60)));
        using var after = await http.PostAsync("v1/chat/completions", Chat("lattice:personal:" + runtime.LatticeId));
        Assert.Equal(HttpStatusCode.Conflict, after.StatusCode);
    }

    [Fact]
    public async Task A_daemon_that_dies_mid_stream_ends_the_stream_with_an_error_event()
    {
        var engine = new SlowEngine("slow", TimeSpan.FromMilliseconds(100), 200);
        var runtime = await ConnectAsync(_gateway.KeyA, engine);
        using var http = _gateway.Client(_gateway.KeyA);
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = Chat("lattice:personal:" + runtime.LatticeId, stream: true) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var reading = response.Content.ReadAsStringAsync();
        await engine.FirstChunkSent.WaitAsync(Timeout);

        await runtime.DisposeAsync();

        var text = await reading.WaitAsync(Timeout);
        Assert.Contains("data: {\"i\":0}", text, StringComparison.Ordinal);
        Assert.Contains("personal_lattice_relay_unavailable", text, StringComparison.Ordinal);
        Assert.DoesNotContain("[DONE]", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_hosted_runtime_serves_a_catalog_model()
    {
        var hosted = await LiveGateway.PostAsync(_gateway.Admin, "admin/v1/runtimes", new JsonObject { ["display_name"] = "rack-1" });
        var id = hosted["lattice_id"]!.GetValue<string>();
        var credentials = await RuntimeCredentials.PairAsync(new Uri(_gateway.Origin), hosted["bootstrap_token"]!.GetValue<string>(), CancellationToken.None);
        await LiveGateway.PostAsync(_gateway.Admin, "admin/v1/models", new JsonObject
        {
            ["id"] = "lovelace:fixed-" + id,
            ["offers"] = new JsonArray(new JsonObject { ["runtime"] = id, ["upstream_model"] = "fixed" }),
        });
        using var http = _gateway.Client(_gateway.KeyB);
        using (var before = await http.PostAsync("v1/chat/completions", Chat("lovelace:fixed-" + id)))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, before.StatusCode);
            // The same status and type as every other no_capacity (GatewayError.NoCapacity).
            var error = JsonNode.Parse(await before.Content.ReadAsStringAsync())!["error"]!;
            Assert.Equal("no_capacity", error["code"]!.GetValue<string>());
            Assert.Equal("server_error", error["type"]!.GetValue<string>());
        }

        await using var runtime = await StartAsync(credentials, new FixedEngine());
        using var response = await http.PostAsync("v1/chat/completions", Chat("lovelace:fixed-" + id));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var text = await response.Content.ReadAsStringAsync();
        Assert.Contains("Hello from the fixed engine.", text, StringComparison.Ordinal);
        Assert.Equal("lovelace:fixed-" + id, JsonNode.Parse(text)!["model"]!.GetValue<string>());

        using var streamed = await http.PostAsync("v1/chat/completions", Chat("lovelace:fixed-" + id, stream: true));
        var chunks = Infrastructure.Sse.DataEvents(await streamed.Content.ReadAsStringAsync()).ToList();
        Assert.Equal("[DONE]", chunks[^1]);
        Assert.Equal(10, chunks.Count);
        Assert.All(chunks.SkipLast(1), c => Assert.Equal("lovelace:fixed-" + id, JsonNode.Parse(c)!["model"]!.GetValue<string>()));
    }
}
