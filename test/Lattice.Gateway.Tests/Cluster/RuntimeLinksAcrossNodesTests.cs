using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Lattice.Gateway.Cluster;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Runtimes;
using Lattice.Gateway.Tests.Hosting;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Gateway.Tests.Metering;
using Lattice.Gateway.Tests.Runtimes;
using Lattice.Runtime.Connection;
using Lattice.Runtime.Engines;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Cluster;

/// <summary>
/// A runtime linked to one node, used through the others: its requests are forwarded to the node holding the link
/// (found by its lease in Redis) and answered byte for byte as that node answers them, metered once by the node the
/// client reached. Revoking it anywhere cuts the link; a node that dies holding it makes it unreachable, not a hang,
/// until its lease lapses.
/// </summary>
[Trait("Category", "ScaleOut")]
public sealed class RuntimeLinksAcrossNodesTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static StringContent Chat(string model, bool stream) => new(
        $$"""{"model":"{{model}}","stream":{{(stream ? "true" : "false")}},"messages":[{"role":"user","content":"hi"}]}""",
        Encoding.UTF8, "application/json");

    private sealed record Answer(HttpStatusCode Status, string? ContentType, string Body, string RequestId)
    {
        public string? Code => Status == HttpStatusCode.OK ? null : JsonNode.Parse(Body)!["error"]!["code"]?.GetValue<string>();
    }

    private static async Task<Answer> ChatAsync(GatewayCluster cluster, int node, string key, string model, bool stream = false)
    {
        using var client = cluster.Client(node, key);
        using var response = await client.PostAsync("v1/chat/completions", Chat(model, stream)).WaitAsync(Timeout);
        var body = await response.Content.ReadAsStringAsync();
        return new Answer(response.StatusCode, response.Content.Headers.ContentType?.ToString(), body, response.Headers.GetValues("x-request-id").Single());
    }

    /// <summary>A personal runtime of <paramref name="key"/>'s workspace, paired with and linked to node <paramref name="node"/>.</summary>
    private static async Task<TestRuntimes.Runtime> LinkAsync(GatewayCluster cluster, string key, int node, params IEngine[] engines) =>
        await TestRuntimes.StartAsync(await PairAsync(cluster, key, node), engines);

    /// <summary>A personal runtime of <paramref name="key"/>'s workspace, paired with node <paramref name="node"/>: its credentials.</summary>
    private static async Task<RuntimeCredentials> PairAsync(GatewayCluster cluster, string key, int node)
    {
        using var http = cluster.Client(node, key);
        var created = await GatewayFixture.PostAsync(http, "v1/personal-runtimes", new JsonObject { ["displayName"] = "laptop", ["executionBackend"] = "local-model" });
        return await RuntimeCredentials.PairAsync(new Uri(cluster.Origin(node)), created["bootstrapToken"]!.GetValue<string>(), CancellationToken.None);
    }

    private static RuntimeRegistry Links(GatewayCluster cluster, int node) => cluster.Services(node).GetRequiredService<RuntimeRegistry>();

    /// <summary>The usage records of <paramref name="workspaceId"/>, once every node has written its queue.</summary>
    private static async Task<List<UsageRecordEntity>> RecordsAsync(GatewayCluster cluster, string workspaceId)
    {
        for (var node = 0; node < cluster.Count; node++)
        {
            await cluster.Services(node).GetRequiredService<UsageLedger>().FlushAsync().WaitAsync(Timeout);
        }
        await using var scope = cluster.Services(0).CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        return await db.UsageRecords.AsNoTracking().Where(r => r.WorkspaceId == workspaceId).ToListAsync();
    }

    [Fact]
    public async Task Requests_sent_to_other_nodes_reach_the_link_and_get_the_same_bytes_metered_once_by_the_node_they_entered()
    {
        await using var cluster = await GatewayCluster.StartAsync(await RedisServer.Shared());
        var (ws, _, key) = await cluster.WorkspaceWithKeyAsync();
        await using var runtime = await LinkAsync(cluster, key, 0, new FixedEngine());
        await cluster.AddNodesAsync(2);
        var model = "lattice:personal:" + runtime.LatticeId;
        // The link is on node 0 alone.
        Assert.NotNull(Links(cluster, 0).Find(runtime.LatticeId));
        Assert.Null(Links(cluster, 1).Find(runtime.LatticeId));
        Assert.Null(Links(cluster, 2).Find(runtime.LatticeId));

        var requests = new List<(string RequestId, int Node, bool Stream)>();
        foreach (var stream in new[] { false, true })
        {
            var direct = await ChatAsync(cluster, 0, key, model, stream);
            Assert.True(direct.Status == HttpStatusCode.OK, direct.Body);
            Assert.Contains($"\"model\":\"{model}\"", direct.Body, StringComparison.Ordinal);
            if (stream)
            {
                Assert.EndsWith("data: [DONE]\n\n", direct.Body, StringComparison.Ordinal);
            }
            requests.Add((direct.RequestId, 0, stream));
            for (var node = 1; node < 3; node++)
            {
                var forwarded = await ChatAsync(cluster, node, key, model, stream);
                Assert.Equal(HttpStatusCode.OK, forwarded.Status);
                Assert.Equal(direct.ContentType, forwarded.ContentType);
                Assert.Equal(direct.Body, forwarded.Body);
                requests.Add((forwarded.RequestId, node, stream));
            }
        }

        // One record per request, each written by the node the client reached and naming the personal runtime, with the
        // runtime's own count; the node holding the link wrote none for the requests it ran for the others.
        var records = await RecordsAsync(cluster, ws);
        Assert.Equal(requests.Select(r => r.RequestId).Order(StringComparer.Ordinal), records.Select(r => r.RequestId).Order(StringComparer.Ordinal));
        foreach (var (requestId, _, stream) in requests)
        {
            var record = records.Single(r => r.RequestId == requestId);
            Assert.Equal(ServedByKinds.PersonalRuntime, record.ServedBy);
            Assert.Equal(runtime.LatticeId, record.ServedById);
            Assert.Equal(UsageStatuses.Ok, record.Status);
            Assert.Equal(stream, record.Stream);
            Assert.Equal((1L, stream ? 8L : 5L), (record.PromptTokens, record.CompletionTokens));
            Assert.False(record.Estimated);
        }
    }

    [Fact]
    public async Task Revoking_a_runtime_on_one_node_cuts_its_link_on_the_node_that_holds_it()
    {
        await using var cluster = await GatewayCluster.StartAsync(await RedisServer.Shared());
        var (_, _, key) = await cluster.WorkspaceWithKeyAsync();
        await using var runtime = await LinkAsync(cluster, key, 0, new FixedEngine());
        await cluster.AddNodesAsync(2);
        Assert.Equal(HttpStatusCode.OK, (await ChatAsync(cluster, 2, key, "lattice:personal:" + runtime.LatticeId)).Status);

        using (var onNode2 = cluster.Client(2, key))
        {
            await GatewayFixture.PostAsync(onNode2, $"v1/personal-runtimes/{runtime.LatticeId}/revoke", new JsonObject());
        }

        // Node 0 hears of it through the change feed (pushed through Redis: the clock stands still) and cuts the link;
        // the daemon's reconnect is refused.
        Assert.Equal(LinkExit.CredentialRejected, await runtime.Run.WaitAsync(Timeout));
        Assert.Null(Links(cluster, 0).Find(runtime.LatticeId));
    }

    [Fact]
    public async Task A_node_that_dies_holding_a_link_makes_the_runtime_unreachable_elsewhere_and_its_lease_lapses()
    {
        await using var cluster = await GatewayCluster.StartAsync(await RedisServer.Shared());
        var (_, _, key) = await cluster.WorkspaceWithKeyAsync();
        await using var runtime = await LinkAsync(cluster, key, 0, new FixedEngine());
        await cluster.AddNodesAsync(1);
        var model = "lattice:personal:" + runtime.LatticeId;
        var leases = cluster.Services(1).GetRequiredService<LinkLeases>();
        Assert.Equal(HttpStatusCode.OK, (await ChatAsync(cluster, 1, key, model)).Status);
        var origin0 = new Uri(cluster.Origin(0) + "/");

        await cluster.KillAsync(0);

        // The lease still names node 0, which refuses the connection: a clean 409, as for any runtime that is offline.
        Assert.Equal(origin0, (await leases.FindAsync(runtime.LatticeId))?.Node);
        var refused = await ChatAsync(cluster, 1, key, model);
        Assert.Equal((HttpStatusCode.Conflict, "runtime_unreachable"), (refused.Status, refused.Code));

        // Nobody renews it: once it has lapsed, routing no longer points at node 0 at all.
        cluster.Time.Advance(LinkLeases.Lease + TimeSpan.FromSeconds(1));
        Assert.Null(await leases.FindAsync(runtime.LatticeId));
        var offline = await ChatAsync(cluster, 1, key, model);
        Assert.Equal((HttpStatusCode.Conflict, "runtime_unreachable"), (offline.Status, offline.Code));
    }

    [Fact]
    public async Task A_stream_whose_holding_node_dies_mid_answer_ends_with_an_error_event_and_one_record()
    {
        await using var cluster = await GatewayCluster.StartAsync(await RedisServer.Shared());
        var (ws, _, key) = await cluster.WorkspaceWithKeyAsync();
        var engine = new SlowEngine("slow", TimeSpan.FromMilliseconds(20), 100_000);
        await using var runtime = await LinkAsync(cluster, key, 0, engine);
        await cluster.AddNodesAsync(1);

        using var client = cluster.Client(1, key);
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = Chat("lattice:personal:" + runtime.LatticeId, stream: true) };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: {\"i\":0", await reader.ReadLineAsync().WaitAsync(Timeout), StringComparison.Ordinal);

        await cluster.KillAsync(0);

        // The client is not left hanging: the stream ends with an error event.
        var rest = await reader.ReadToEndAsync().WaitAsync(Timeout);
        var last = rest.Trim('\n').Split("\n\n")[^1];
        Assert.StartsWith("data: {\"error\":", last, StringComparison.Ordinal);
        Assert.Equal("personal_lattice_relay_unavailable", JsonNode.Parse(last["data: ".Length..])!["error"]!["code"]!.GetValue<string>());

        var record = Assert.Single(await RecordsAsync(cluster, ws));
        Assert.Equal(response.Headers.GetValues("x-request-id").Single(), record.RequestId);
        Assert.Equal(runtime.LatticeId, record.ServedById);
    }

    [Fact]
    public async Task Every_node_reports_the_same_status_for_a_runtime_whatever_node_holds_its_link()
    {
        await using var cluster = await GatewayCluster.StartAsync(await RedisServer.Shared());
        var (_, _, key) = await cluster.WorkspaceWithKeyAsync();
        await cluster.AddNodesAsync(2);
        // One runtime linked to node 0, one to node 2, one paired but never linked, one never paired.
        var credentials0 = await PairAsync(cluster, key, 0);
        await using var onNode0 = await TestRuntimes.StartAsync(credentials0, new FixedEngine());
        await using var onNode2 = await LinkAsync(cluster, key, 2, new FixedEngine("other"));
        var idleCredentials = await PairAsync(cluster, key, 1);
        using var http0 = cluster.Client(0, key);
        var unpaired = (await GatewayFixture.PostAsync(http0, "v1/personal-runtimes", new JsonObject { ["displayName"] = "new", ["executionBackend"] = "local-model" }))["runtime"]!["latticeId"]!.GetValue<string>();
        var expected = new Dictionary<string, string>
        {
            [onNode0.LatticeId] = "reachable", [onNode2.LatticeId] = "reachable", [idleCredentials.LatticeId] = "offline", [unpaired] = "unpaired",
        };

        for (var node = 0; node < 3; node++)
        {
            using var http = cluster.Client(node, key);
            var list = (await http.GetFromJsonAsync<JsonObject>("v1/personal-runtimes"))!["runtimes"]!.AsArray();
            Assert.Equal(expected, list.ToDictionary(r => r!["latticeId"]!.GetValue<string>(), r => r!["status"]!.GetValue<string>()));
            // The capabilities the daemon announced, wherever its link is.
            Assert.Equal("fixed", list.Single(r => r!["latticeId"]!.GetValue<string>() == onNode0.LatticeId)!["capabilities"]![0]!["model"]!.GetValue<string>());
            Assert.Equal("other", list.Single(r => r!["latticeId"]!.GetValue<string>() == onNode2.LatticeId)!["capabilities"]![0]!["model"]!.GetValue<string>());
            foreach (var (id, status) in expected)
            {
                Assert.Equal(status, (await http.GetFromJsonAsync<JsonObject>($"v1/personal-runtimes/{id}"))!["status"]!.GetValue<string>());
            }
            // What `lattice ping` asks each node, with the runtime's own credential.
            using var daemon = cluster.Client(node, credentials0.Credential);
            Assert.Equal("reachable", (await daemon.GetFromJsonAsync<JsonObject>("v1/runtimes/me"))!["status"]!.GetValue<string>());
            using var idleDaemon = cluster.Client(node, idleCredentials.Credential);
            Assert.Equal("offline", (await idleDaemon.GetFromJsonAsync<JsonObject>("v1/runtimes/me"))!["status"]!.GetValue<string>());
        }

        // Node 0 dies holding its link: once its lease has lapsed, every node left says offline.
        await cluster.KillAsync(0);
        cluster.Time.Advance(LinkLeases.Lease + TimeSpan.FromSeconds(1));
        for (var node = 1; node < 3; node++)
        {
            using var http = cluster.Client(node, key);
            Assert.Equal("offline", (await http.GetFromJsonAsync<JsonObject>($"v1/personal-runtimes/{onNode0.LatticeId}"))!["status"]!.GetValue<string>());
            var list = (await http.GetFromJsonAsync<JsonObject>("v1/personal-runtimes"))!["runtimes"]!.AsArray();
            Assert.Equal("offline", list.Single(r => r!["latticeId"]!.GetValue<string>() == onNode0.LatticeId)!["status"]!.GetValue<string>());
        }
    }

    [Fact]
    public async Task A_cancelled_forwarded_stream_is_recorded_with_the_runtimes_count_as_a_cancelled_local_one_is()
    {
        await using var cluster = await GatewayCluster.StartAsync(await RedisServer.Shared());
        var (ws, _, key) = await cluster.WorkspaceWithKeyAsync();
        var engine = new StallingEngine(chunks: 3);
        await using var runtime = await LinkAsync(cluster, key, 0, engine);
        await cluster.AddNodesAsync(1);
        var model = "lattice:personal:" + runtime.LatticeId;

        // The same request, entering the node holding the link and entering another; each client leaves after the
        // three events the runtime sends before it stalls.
        var ids = new List<string>();
        foreach (var node in new[] { 0, 1 })
        {
            using var client = cluster.Client(node, key);
            using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = Chat(model, stream: true) };
            using (var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).WaitAsync(Timeout))
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                ids.Add(response.Headers.GetValues("x-request-id").Single());
                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
                for (var events = 0; events < 3;)
                {
                    var line = await reader.ReadLineAsync().WaitAsync(Timeout);
                    Assert.NotNull(line);
                    if (line.StartsWith("data: ", StringComparison.Ordinal))
                    {
                        events++;
                    }
                }
            }
            await engine.Cancelled.WaitAsync(Timeout);
            engine.Reset();
        }

        var local = await Ledger.RecordAsync(cluster.Services(0), ids[0]);
        var forwarded = await Ledger.RecordAsync(cluster.Services(1), ids[1]);
        // The runtime's own count of what it generated before the cancel, on both: not an estimate of what was relayed.
        Assert.Equal((UsageStatuses.Cancelled, 1L, 3L, false), (local.Status, local.Usage.PromptTokens, local.Usage.CompletionTokens, local.Usage.Estimated));
        Assert.Equal((local.Status, local.Usage, local.ServedById, local.Stream), (forwarded.Status, forwarded.Usage, forwarded.ServedById, forwarded.Stream));
        // Exactly one record each: the node holding the link wrote none for the request it ran for node 1.
        Assert.Equal(ids.Order(StringComparer.Ordinal), (await RecordsAsync(cluster, ws)).Select(r => r.RequestId).Order(StringComparer.Ordinal));
    }

    /// <summary>Streams <c>chunks</c> events, counting each, then waits for the cancel: a cancelled request's count is always (1, chunks).</summary>
    private sealed class StallingEngine(int chunks) : IEngine
    {
        private TaskCompletionSource _cancelled = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Cancelled => Volatile.Read(ref _cancelled).Task;
        public void Reset() => Volatile.Write(ref _cancelled, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        public string Kind => "stalling";
        public IReadOnlyList<EngineCapability> Capabilities { get; } = [new("chat.completions", "stalling", null)];
        public Task LoadAsync(IProgress<double>? progress, CancellationToken cancellationToken) => Task.CompletedTask;

        public async Task<EngineUsage> ExecuteAsync(EngineRequest request, IEngineOutput output, CancellationToken cancellationToken)
        {
            await output.StartAsync(200, "text/event-stream", cancellationToken);
            for (var i = 0; i < chunks; i++)
            {
                output.ReportUsage(new EngineUsage(1, i + 1));
                await output.WriteAsync(Encoding.UTF8.GetBytes($"data: {{\"i\":{i}}}\n\n"), cancellationToken);
            }
            try
            {
                await Task.Delay(System.Threading.Timeout.Infinite, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                Volatile.Read(ref _cancelled).TrySetResult();
                throw;
            }
            return new EngineUsage(1, chunks);
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    [Fact]
    public async Task The_internal_channel_answers_404_to_anyone_without_the_cluster_secret()
    {
        await using var cluster = await GatewayCluster.StartAsync(await RedisServer.Shared());
        var (_, _, key) = await cluster.WorkspaceWithKeyAsync();
        await using var runtime = await LinkAsync(cluster, key, 0, new FixedEngine());
        using var http = new HttpClient { BaseAddress = new Uri(cluster.Origin(0) + "/"), Timeout = TimeSpan.FromSeconds(30) };
        var path = NodeEndpoints.DispatchPath(runtime.LatticeId);

        async Task<(HttpStatusCode Status, string? ContentType, string Body)> SendAsync(HttpMethod method, Action<HttpRequestHeaders> headers)
        {
            using var request = new HttpRequestMessage(method, path) { Content = Chat("fixed", false) };
            request.Headers.TryAddWithoutValidation(NodeEndpoints.TaskHeader, "chat.completions");
            request.Headers.TryAddWithoutValidation(NodeEndpoints.ModelHeader, "fixed");
            headers(request.Headers);
            using var response = await http.SendAsync(request);
            return (response.StatusCode, response.Content.Headers.ContentType?.MediaType, await response.Content.ReadAsStringAsync());
        }

        var refusals = new (string Name, HttpMethod Method, Action<HttpRequestHeaders> Headers)[]
        {
            ("no secret", HttpMethod.Post, _ => { }),
            ("a wrong secret", HttpMethod.Post, h => h.Add(NodeEndpoints.SecretHeader, GatewayCluster.ClusterSecret[..^1] + "x")),
            ("the secret with another case", HttpMethod.Post, h => h.Add(NodeEndpoints.SecretHeader, GatewayCluster.ClusterSecret.ToUpperInvariant())),
            ("the secret twice", HttpMethod.Post, h => h.Add(NodeEndpoints.SecretHeader, [GatewayCluster.ClusterSecret, GatewayCluster.ClusterSecret])),
            ("the secret as a bearer token", HttpMethod.Post, h => h.Authorization = new AuthenticationHeaderValue("Bearer", GatewayCluster.ClusterSecret)),
            ("a developer key", HttpMethod.Post, h => h.Authorization = new AuthenticationHeaderValue("Bearer", key)),
            ("the admin key", HttpMethod.Post, h => h.Authorization = new AuthenticationHeaderValue("Bearer", GatewayCluster.AdminKey)),
            ("the secret but GET", HttpMethod.Get, h => h.Add(NodeEndpoints.SecretHeader, GatewayCluster.ClusterSecret)),
        };
        foreach (var (name, method, headers) in refusals)
        {
            var (status, _, body) = await SendAsync(method, headers);
            Assert.True(status == HttpStatusCode.NotFound, $"{name}: {(int)status} {body}");
            Assert.Equal("invalid_request_error", JsonNode.Parse(body)!["error"]!["type"]!.GetValue<string>());
            Assert.StartsWith("Invalid URL", JsonNode.Parse(body)!["error"]!["message"]!.GetValue<string>(), StringComparison.Ordinal);
        }

        // With the secret, the same request runs on the link.
        var (okStatus, contentType, _) = await SendAsync(HttpMethod.Post, h => h.Add(NodeEndpoints.SecretHeader, GatewayCluster.ClusterSecret));
        Assert.Equal((HttpStatusCode.OK, "application/vnd.lattice.hop"), (okStatus, contentType));
    }
}
