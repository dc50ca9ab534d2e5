using System.ClientModel;
using System.ClientModel.Primitives;
using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Lattice.Testing;
using OpenAI;
using OpenAI.Chat;

namespace Lattice.EndToEnd.Tests;

/// <summary>
/// Three real gateway processes on one PostgreSQL and one Redis, a real daemon told of all three and linked to the
/// first, and the node holding the link killed with SIGKILL in the middle of a stream that entered another node.
/// </summary>
[Trait("Category", "ScaleOut")]
public sealed class NodeFailoverTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(180);

    [Fact]
    public async Task Killing_the_node_holding_a_link_mid_stream_fails_the_stream_moves_the_daemon_and_keeps_one_record()
    {
        var root = Directory.CreateTempSubdirectory("lattice-failover-").FullName;
        try
        {
            // PostgreSQL and Redis as deploy/local-cluster.sh starts them (its stores only); the nodes are started here,
            // so that one of them can be killed.
            await using var stores = await ProcessHost.StartAsync("bash", [Path.Combine(RepoPaths.RepoRoot, "deploy", "local-cluster.sh")],
                new Dictionary<string, string?> { ["LATTICE_NODES"] = "0" },
                line => line == "LATTICE_CLUSTER_READY", StartTimeout);
            try
            {
                await WithNodesAsync(root, stores);
            }
            finally
            {
                // Ctrl-C: the script stops PostgreSQL and Redis and removes its directory.
                using (var interrupt = System.Diagnostics.Process.Start("kill", ["-INT", stores.ProcessId.ToString(CultureInfo.InvariantCulture)]))
                {
                    await interrupt.WaitForExitAsync();
                }
                await stores.WaitForExitAsync(Timeout);
            }
        }
        finally
        {
            try
            {
                Directory.Delete(root, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static async Task WithNodesAsync(string root, ProcessHost stores)
    {
        var storesLine = stores.Output.Split('\n').Select(l => l.TrimEnd('\r')).Single(l => l.StartsWith("LATTICE_STORES=", StringComparison.Ordinal));
        var (database, redis) = (storesLine["LATTICE_STORES=".Length..].Split(' ')[0], storesLine.Split(' ')[^1]);
        var adminKey = "sk_admin_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
        var secret = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        var urls = Enumerable.Range(0, 3).Select(_ => $"http://127.0.0.1:{ProcessHost.FreeTcpPort().ToString(CultureInfo.InvariantCulture)}").ToArray();
        // Started at once, as a deployment's nodes are: one migrates the database, the others wait for it.
        var starting = urls.Select(url => ProcessHost.StartDotnetAsync("Lattice.Gateway", [], new Dictionary<string, string?>
        {
            ["Lattice__Database"] = database,
            ["Lattice__Redis"] = redis,
            ["Lattice__AdminKey"] = adminKey,
            ["Lattice__Cluster__Secret"] = secret,
            ["Lattice__Cluster__NodeUrl"] = url,
            ["Lattice__DataDirectory"] = Path.Combine(root, "data"),
            ["Lattice__PublicUrl"] = url,
            ["ASPNETCORE_URLS"] = url,
            ["Logging__LogLevel__Default"] = "Warning",
            ["Logging__LogLevel__Microsoft.Hosting.Lifetime"] = "Information",
        }, line => line.Contains("Application started", StringComparison.Ordinal), StartTimeout)).ToArray();
        try
        {
            await RunAsync(root, urls, await Task.WhenAll(starting), adminKey);
        }
        finally
        {
            foreach (var node in starting.Where(t => t.IsCompletedSuccessfully))
            {
                await node.Result.DisposeAsync();
            }
        }
    }

    private static async Task RunAsync(string root, string[] urls, ProcessHost[] nodes, string adminKey)
    {
        var (a, b, c) = (urls[0], urls[1], urls[2]);
        string apiKey;
        using (var admin = Client(a, adminKey))
        {
            var workspace = await PostAsync(admin, "admin/v1/workspaces", new JsonObject { ["name"] = "failover" });
            apiKey = (await PostAsync(admin, $"admin/v1/workspaces/{workspace["id"]}/keys", new JsonObject { ["name"] = "failover" }))["key"]!.GetValue<string>();
        }

        // A daemon told of the three nodes, paired through node A and linked to it (the first it is given); its only
        // model streams 100 chunks, 100 ms apart.
        var config = Path.Combine(root, "ticker.toml");
        await File.WriteAllTextAsync(config, RuntimeStackFixture.TickerConfig);
        using var http = Client(a, apiKey);
        var created = await PostAsync(http, "v1/personal-runtimes", new JsonObject { ["displayName"] = "failover", ["executionBackend"] = "local-model" });
        var latticeId = created["runtime"]!["latticeId"]!.GetValue<string>();
        var model = "lattice:personal:" + latticeId;
        await using var daemon = await ProcessHost.StartAsync(ProcessHost.DotnetHost,
            [StackFixture.LatticeDll, "relay", "connect", "--gateway", a, "--gateway", b, "--gateway", c,
                "--token", created["bootstrapToken"]!.GetValue<string>(), "--config", config, "--data-dir", Path.Combine(root, "daemon")],
            null, line => line.Contains($"connected as {latticeId} to {a}", StringComparison.Ordinal), StartTimeout);
        // Node B knows of the link from its lease before the request is sent.
        await StatusAsync(b, apiKey, latticeId, "reachable");

        var requestIds = new RequestIds();
        var options = new OpenAIClientOptions { Endpoint = new Uri(b + "/v1"), NetworkTimeout = Timeout };
        options.AddPolicy(requestIds, PipelinePosition.PerCall);
        var chatB = new OpenAIClient(new ApiKeyCredential(apiKey), options).GetChatClient(model);

        // A stream entering node B, forwarded to node A; node A is killed once the first chunk is in.
        var updates = new List<StreamingChatCompletionUpdate>();
        await foreach (var update in chatB.CompleteChatStreamingAsync([new UserChatMessage("tick")]).WithCancellation(new CancellationTokenSource(Timeout).Token))
        {
            updates.Add(update);
            if (updates.Count(u => u.ContentUpdate.Count > 0) == 1 && update.ContentUpdate.Count > 0)
            {
                Kill(nodes[0]);
            }
        }
        // The stream ends early, never finished, with the error event (the SDK yields it as an update, with its JSON).
        Assert.InRange(updates.Count(u => u.ContentUpdate.Count > 0), 1, 99);
        Assert.DoesNotContain(updates, u => u.FinishReason is not null);
        var last = ModelReaderWriter.Write(updates[^1]).ToString();
        Assert.Contains("\"personal_lattice_relay_unavailable\"", last, StringComparison.Ordinal);
        var killedRequest = Assert.Single(requestIds.Seen);

        // The daemon moves to a node still alive, which takes the lease over; every node left says so.
        var moved = await daemon.WaitForOutputAsync(l => l.Contains($"connected as {latticeId} to ", StringComparison.Ordinal)
            && !l.Contains($"to {a}", StringComparison.Ordinal), Timeout);
        Assert.True(moved.Contains(b, StringComparison.Ordinal) || moved.Contains(c, StringComparison.Ordinal), moved);
        await StatusAsync(b, apiKey, latticeId, "reachable");
        await StatusAsync(c, apiKey, latticeId, "reachable");

        // The next requests, through node B and through node C, are served whole.
        var served = new List<string>();
        foreach (var url in new[] { b, c })
        {
            var ids = new RequestIds();
            var nodeOptions = new OpenAIClientOptions { Endpoint = new Uri(url + "/v1"), NetworkTimeout = Timeout };
            nodeOptions.AddPolicy(ids, PipelinePosition.PerCall);
            var chat = new OpenAIClient(new ApiKeyCredential(apiKey), nodeOptions).GetChatClient(model);
            var chunks = 0;
            await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage("tick")]).WithCancellation(new CancellationTokenSource(Timeout).Token))
            {
                chunks += update.ContentUpdate.Count > 0 ? 1 : 0;
            }
            Assert.Equal(100, chunks);
            served.Add(Assert.Single(ids.Seen));
        }

        // The ledger, read through node C: exactly one record of the killed request (node B's), one of each other.
        var records = await UsageRecordsAsync(c, apiKey, [killedRequest, .. served]);
        Assert.Equal(3, records.Count);
        Assert.Single(records, r => r["request_id"]!.GetValue<string>() == killedRequest);
        Assert.NotEqual("ok", records.Single(r => r["request_id"]!.GetValue<string>() == killedRequest)["status"]!.GetValue<string>());
        Assert.All(records.Where(r => r["request_id"]!.GetValue<string>() != killedRequest), r => Assert.Equal("ok", r["status"]!.GetValue<string>()));
    }

    /// <summary>SIGKILL: the process gets no chance to clean anything up (its link leases stay in Redis).</summary>
    private static void Kill(ProcessHost node)
    {
        using var kill = System.Diagnostics.Process.Start("kill", ["-9", node.ProcessId.ToString(CultureInfo.InvariantCulture)]);
        kill.WaitForExit();
    }

    /// <summary>Until node <paramref name="url"/> reports <paramref name="status"/> for the runtime (the condition, not a delay).</summary>
    private static async Task StatusAsync(string url, string apiKey, string latticeId, string status)
    {
        using var http = Client(url, apiKey);
        using var deadline = new CancellationTokenSource(Timeout);
        string? last = null;
        try
        {
            while ((last = (await http.GetFromJsonAsync<JsonObject>($"v1/personal-runtimes/{latticeId}", deadline.Token))!["status"]!.GetValue<string>()) != status)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(50), deadline.Token);
            }
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"{url} still reports the runtime {last}, not {status}.");
        }
    }

    /// <summary>The workspace's usage records, once all of <paramref name="ids"/> are in (the ledger writes in batches).</summary>
    private static async Task<List<JsonNode>> UsageRecordsAsync(string url, string apiKey, string[] ids)
    {
        using var http = Client(url, apiKey);
        using var deadline = new CancellationTokenSource(Timeout);
        while (true)
        {
            var page = JsonNode.Parse(await http.GetStringAsync("v1/usage/requests?limit=100", deadline.Token))!;
            var records = page["data"]!.AsArray().Select(r => r!).ToList();
            if (ids.All(id => records.Any(r => r["request_id"]!.GetValue<string>() == id)))
            {
                return records;
            }
            await Task.Delay(TimeSpan.FromMilliseconds(50), deadline.Token);
        }
    }

    private static HttpClient Client(string url, string key)
    {
        var http = new HttpClient { BaseAddress = new Uri(url + "/"), Timeout = Timeout };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return http;
    }

    private static async Task<JsonNode> PostAsync(HttpClient http, string path, JsonObject body)
    {
        using var response = await http.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{path}: {(int)response.StatusCode} {text}");
        return JsonNode.Parse(text)!;
    }

    /// <summary>The <c>x-request-id</c> of every answer the SDK got, to find each request's usage record.</summary>
    private sealed class RequestIds : PipelinePolicy
    {
        public ConcurrentQueue<string> Seen { get; } = new();

        public override void Process(PipelineMessage message, IReadOnlyList<PipelinePolicy> pipeline, int currentIndex)
        {
            ProcessNext(message, pipeline, currentIndex);
            Note(message);
        }

        public override async ValueTask ProcessAsync(PipelineMessage message, IReadOnlyList<PipelinePolicy> pipeline, int currentIndex)
        {
            await ProcessNextAsync(message, pipeline, currentIndex);
            Note(message);
        }

        private void Note(PipelineMessage message)
        {
            if (message.Response?.Headers.TryGetValue("x-request-id", out var id) == true && id is not null)
            {
                Seen.Enqueue(id);
            }
        }
    }
}
