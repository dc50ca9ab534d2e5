using System.ClientModel;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Lattice.Testing;
using OpenAI;
using OpenAI.Chat;

namespace Lattice.EndToEnd.Tests;

/// <summary>
/// <c>deploy/local-cluster.sh</c> as a user runs it: a temporary PostgreSQL and Redis and three gateway nodes, every
/// node answering the official OpenAI SDK, and everything gone after Ctrl-C.
/// </summary>
[Trait("Category", "ScaleOut")]
public sealed class LocalClusterTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private const string UpstreamKey = "local-cluster-upstream-key";

    [Fact]
    public async Task The_local_cluster_script_starts_three_nodes_that_each_serve_and_stops_everything_on_ctrl_c()
    {
        var standInPort = ProcessHost.FreeTcpPort();
        await using var standIn = await ProcessHost.StartDotnetAsync("Lattice.StandIn.OpenAi",
            ["--urls", $"http://127.0.0.1:{standInPort.ToString(CultureInfo.InvariantCulture)}", "--api-key", UpstreamKey],
            null, line => line.StartsWith("standin listening on", StringComparison.Ordinal), TimeSpan.FromSeconds(180));

        // The gateway this test run built, and the upstream credential, which every node inherits from the script.
        await using var cluster = await ProcessHost.StartAsync("bash", [Path.Combine(RepoPaths.RepoRoot, "deploy", "local-cluster.sh")],
            new Dictionary<string, string?>
            {
                ["LATTICE_GATEWAY"] = ProcessHost.DotnetDll("Lattice.Gateway"),
                ["Lattice__Credentials__standin"] = UpstreamKey,
            },
            line => line == "LATTICE_CLUSTER_READY", TimeSpan.FromSeconds(300));
        var printed = cluster.Output.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.StartsWith("LATTICE_", StringComparison.Ordinal)).ToList();
        var urls = printed.Where(l => l.StartsWith("LATTICE_NODE_URL=", StringComparison.Ordinal)).Select(l => l["LATTICE_NODE_URL=".Length..]).ToList();
        var adminKey = printed.Single(l => l.StartsWith("LATTICE_ADMIN_KEY=", StringComparison.Ordinal))["LATTICE_ADMIN_KEY=".Length..];
        var apiKey = printed.Single(l => l.StartsWith("LATTICE_API_KEY=", StringComparison.Ordinal))["LATTICE_API_KEY=".Length..];
        Assert.Equal(3, urls.Distinct().Count());
        var work = WorkDirectory(cluster.Output);
        Assert.True(Directory.Exists(work));

        // A model added through node 1's admin API, with the admin key the script printed.
        using (var admin = new HttpClient { BaseAddress = new Uri(urls[0] + "/"), Timeout = Timeout })
        {
            admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", adminKey);
            using var created = await admin.PostAsJsonAsync("admin/v1/models", new JsonObject
            {
                ["id"] = "lovelace:chat",
                ["offers"] = new JsonArray(new JsonObject
                {
                    ["base_url"] = $"http://127.0.0.1:{standInPort.ToString(CultureInfo.InvariantCulture)}/v1",
                    ["credential"] = "standin",
                    ["upstream_model"] = "standin-chat",
                }),
            });
            Assert.True(created.IsSuccessStatusCode, await created.Content.ReadAsStringAsync());
        }

        // Every node serves it to the official SDK with the developer key the script printed.
        foreach (var url in urls)
        {
            var client = new OpenAIClient(new ApiKeyCredential(apiKey), new OpenAIClientOptions { Endpoint = new Uri(url + "/v1"), NetworkTimeout = Timeout });
            await KnowsModelAsync(url, apiKey, "lovelace:chat");
            ChatCompletion completion = await client.GetChatClient("lovelace:chat").CompleteChatAsync([new UserChatMessage("hello cluster")]).WaitAsync(Timeout);
            Assert.Equal("You said: hello cluster", completion.Content[0].Text);
        }

        // Ctrl-C: the nodes, PostgreSQL and Redis stop, and the temporary directory goes.
        using (var interrupt = System.Diagnostics.Process.Start("kill", ["-INT", cluster.ProcessId.ToString(CultureInfo.InvariantCulture)]))
        {
            await interrupt.WaitForExitAsync();
        }
        await cluster.WaitForExitAsync(Timeout);
        Assert.Contains("Stopped.", cluster.Output, StringComparison.Ordinal);
        Assert.False(Directory.Exists(work));
        foreach (var url in urls)
        {
            using var probe = new HttpClient { Timeout = Timeout };
            await Assert.ThrowsAsync<HttpRequestException>(() => probe.GetAsync(url + "/healthz"));
        }
    }

    /// <summary>The temporary directory, from the node logs' paths the script prints.</summary>
    private static string WorkDirectory(string output)
    {
        const string marker = "(log: ";
        var line = output.Split('\n').First(l => l.Contains(marker, StringComparison.Ordinal));
        var path = line[(line.IndexOf(marker, StringComparison.Ordinal) + marker.Length)..].TrimEnd('\r', ')');
        return Path.GetDirectoryName(path)!;
    }

    /// <summary>
    /// Until <paramref name="url"/> lists <paramref name="model"/>: a node learns of a model added on another through the
    /// change feed (at once through Redis, within a poll interval without). The listing is the condition, not a delay.
    /// </summary>
    private static async Task KnowsModelAsync(string url, string apiKey, string model)
    {
        using var http = new HttpClient { Timeout = Timeout };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        using var deadline = new CancellationTokenSource(Timeout);
        while (true)
        {
            var models = await http.GetFromJsonAsync<JsonObject>(url + "/v1/models", deadline.Token);
            if (models!["data"]!.AsArray().Any(m => m!["id"]!.GetValue<string>() == model))
            {
                return;
            }
            await Task.Delay(TimeSpan.FromMilliseconds(50), deadline.Token);
        }
    }
}
