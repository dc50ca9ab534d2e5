using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.StandIn.OpenAi;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace Lattice.Gateway.Tests.Hosting;

/// <summary>
/// Several real gateway nodes on loopback sharing one SQLite file, one Redis and one fake clock, in front of one
/// stand-in upstream. Node 0 starts first, so a test sets up its keys, models and limits there; nodes started after
/// read them at start-up (a node learning of another's writes while running is not part of these tests).
/// </summary>
public sealed class GatewayCluster : IAsyncDisposable
{
    public const string AdminKey = "sk_admin_cluster_tests_0123456789abcdef";
    /// <summary>The nodes' shared secret for their internal channel (<c>Lattice:Cluster:Secret</c>).</summary>
    public const string ClusterSecret = "cluster-tests-secret-0123456789abcdef0123456789";
    private const string UpstreamKey = "upstream-secret-key";

    private readonly string _dataDir = Path.Combine(Path.GetTempPath(), "lattice-cluster-" + Guid.NewGuid().ToString("N"));
    private readonly string _prefix = "c" + Guid.NewGuid().ToString("N") + ":";
    private readonly List<WebApplication> _nodes = [];
    private readonly Dictionary<string, string?> _settings;
    private WebApplication? _standIn;

    private GatewayCluster(RedisServer redis, Dictionary<string, string?> settings)
    {
        Redis = redis;
        _settings = settings;
    }

    public RedisServer Redis { get; }
    public FakeTimeProvider Time { get; } = new(DateTimeOffset.UtcNow);
    public string StandInUrl { get; private set; } = "";
    public int Count => _nodes.Count;

    /// <summary>
    /// The stand-in and node 0, on <paramref name="redis"/>; or <paramref name="together"/> nodes started at the same
    /// time, as a deployment's nodes start on an empty database.
    /// </summary>
    public static async Task<GatewayCluster> StartAsync(RedisServer redis, Dictionary<string, string?>? settings = null, int together = 1)
    {
        var cluster = new GatewayCluster(redis, settings ?? []);
        cluster._standIn = StandInServer.Build(["--api-key", UpstreamKey, "--urls", "http://127.0.0.1:0"]);
        await cluster._standIn.StartAsync();
        cluster.StandInUrl = Address(cluster._standIn);
        if (together > 1)
        {
            var nodes = Enumerable.Range(0, together).Select(_ => cluster.Build()).ToList();
            cluster._nodes.AddRange(nodes);
            await Task.WhenAll(nodes.Select(n => n.StartAsync())).WaitAsync(TimeSpan.FromSeconds(120));
        }
        else
        {
            await cluster.AddNodesAsync(1);
        }
        return cluster;
    }

    /// <summary>Starts <paramref name="count"/> more nodes, one after another (each opens the shared database at start).</summary>
    public async Task AddNodesAsync(int count)
    {
        for (var i = 0; i < count; i++)
        {
            var app = Build();
            await app.StartAsync().WaitAsync(TimeSpan.FromSeconds(60));
            _nodes.Add(app);
        }
    }

    private WebApplication Build()
    {
        var builder = GatewayApp.CreateBuilder([]);
        var settings = new Dictionary<string, string?>
        {
            ["Lattice:DataDirectory"] = _dataDir,
            ["Lattice:AdminKey"] = AdminKey,
            ["Lattice:Credentials:standin"] = UpstreamKey,
            ["Lattice:Redis"] = Redis.Configuration,
            ["Lattice:RedisKeyPrefix"] = _prefix,
            ["Lattice:Cluster:Secret"] = ClusterSecret,
        };
        foreach (var (k, v) in _settings)
        {
            settings[k] = v;
        }
        builder.Configuration.AddInMemoryCollection(settings);
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.RemoveAll<TimeProvider>();
        builder.Services.AddSingleton<TimeProvider>(Time);
        return GatewayApp.Build(builder);
    }

    public IServiceProvider Services(int node) => _nodes[node].Services;

    /// <summary>Node <paramref name="node"/>'s address, <c>http://127.0.0.1:port</c>.</summary>
    public string Origin(int node) => Address(_nodes[node]);

    /// <summary>
    /// Stops node <paramref name="node"/> the way a crash leaves things: its connection to Redis is cut first, so
    /// nothing it holds there (its runtimes' link leases) is cleaned up; then it stops at once, its connections
    /// aborted rather than drained, and listens no more.
    /// </summary>
    public async Task KillAsync(int node)
    {
        var app = _nodes[node];
        await app.Services.GetRequiredService<Lattice.Gateway.Persistence.RedisStore>().DisposeAsync();
        try
        {
            // Only the server: its connections are aborted, not drained (a host's stop would let them finish).
            await app.Services.GetRequiredService<IServer>().StopAsync(new CancellationToken(canceled: true));
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>A client of node <paramref name="node"/>, sending <paramref name="credential"/> as a bearer token.</summary>
    public HttpClient Client(int node, string? credential)
    {
        var http = new HttpClient { BaseAddress = new Uri(Address(_nodes[node]) + "/"), Timeout = TimeSpan.FromSeconds(30) };
        if (credential is not null)
        {
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", credential);
        }
        return http;
    }

    /// <summary>A new workspace with a key (with <paramref name="limits"/>, when given): the workspace id, key id and key.</summary>
    public async Task<(string WorkspaceId, string KeyId, string Key)> WorkspaceWithKeyAsync(JsonObject? limits = null)
    {
        using var admin = Client(0, AdminKey);
        var ws = (await GatewayFixture.PostAsync(admin, "admin/v1/workspaces", new JsonObject { ["name"] = "cluster" }))["id"]!.GetValue<string>();
        var body = new JsonObject { ["name"] = "cluster" };
        if (limits is not null)
        {
            body["limits"] = limits;
        }
        var key = await GatewayFixture.PostAsync(admin, $"admin/v1/workspaces/{ws}/keys", body);
        return (ws, key["id"]!.GetValue<string>(), key["key"]!.GetValue<string>());
    }

    /// <summary>A model served by the stand-in's chat, at <paramref name="prices"/> when given.</summary>
    public async Task<string> ModelAsync(JsonObject? prices = null, bool anthropic = false)
    {
        using var admin = Client(0, AdminKey);
        var id = "lovelace:cluster-" + Guid.NewGuid().ToString("N")[..10];
        var offer = anthropic ? GatewayFixture.AnthropicOffer(StandInUrl, "claude-standin") : GatewayFixture.Offer(StandInUrl + "/v1", "standin-chat");
        var body = new JsonObject { ["id"] = id, ["offers"] = new JsonArray(offer) };
        if (prices is not null)
        {
            body["prices"] = prices;
        }
        await GatewayFixture.PostAsync(admin, "admin/v1/models", body);
        return id;
    }

    private static string Address(WebApplication app) =>
        app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');

    public async ValueTask DisposeAsync()
    {
        foreach (var node in _nodes)
        {
            await node.ShutDownAsync();
        }
        await _standIn.ShutDownAsync();
        Hosts.DeleteDataDirectory(_dataDir);
    }
}
