using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Lattice.StandIn.OpenAi;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Time.Testing;

namespace Lattice.Gateway.Tests.Infrastructure;


/// <summary>
/// One gateway (in-memory test server, real SQLite file — or PostgreSQL, <see cref="PostgresGatewayFixture"/>) in front
/// of one real stand-in upstream on loopback, with a workspace, a developer key and a catalog of models that exercise
/// each upstream behaviour.
/// </summary>
public class GatewayFixture : IAsyncLifetime
{
    public const string AdminKey = "sk_admin_functional_tests_0123456789";
    public const string UpstreamKey = "upstream-secret-key";
    public const long MaxBodyBytes = 1024 * 1024;
    /// <summary>A task class (created by the tests that use it) with its own body limit below the gateway's.</summary>
    public const string SmallBodyTask = "tests.small-body";
    public const int SmallBodyTaskLimit = 2048;

    private readonly string _dataDir = Path.Combine(Path.GetTempPath(), "lattice-tests-" + Guid.NewGuid().ToString("N"));
    private WebApplication? _standIn;
    private WebApplicationFactory<Lattice.Gateway.Catalog.CatalogStore>? _factory;

    public FakeTimeProvider Time { get; } = new(DateTimeOffset.UtcNow);
    public string StandInUrl { get; private set; } = "";
    public string WorkspaceId { get; private set; } = "";
    public string ApiKey { get; private set; } = "";
    public HttpClient Admin { get; private set; } = null!;
    public WebApplicationFactory<Lattice.Gateway.Catalog.CatalogStore> Factory => _factory!;

    /// <summary>The <c>Lattice:Database</c> setting; null: SQLite in the data directory.</summary>
    protected virtual Task<string?> DatabaseAsync() => Task.FromResult<string?>(null);

    /// <summary>Settings a derived fixture adds to the gateway's (the Redis its counters live in).</summary>
    protected virtual Task<Dictionary<string, string>> SettingsAsync() => Task.FromResult(new Dictionary<string, string>());

    /// <summary>Runs once the gateway serves, before the fixture seeds it.</summary>
    protected virtual void Started()
    {
    }

    public async Task InitializeAsync()
    {
        var database = await DatabaseAsync();
        var settings = await SettingsAsync();
        _standIn = StandInServer.Build(["--api-key", UpstreamKey, "--urls", "http://127.0.0.1:0"]);
        await _standIn.StartAsync();
        StandInUrl = _standIn.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');

        _factory = new WebApplicationFactory<Lattice.Gateway.Catalog.CatalogStore>().WithWebHostBuilder(web =>
        {
            web.UseSetting("Lattice:DataDirectory", _dataDir);
            if (database is not null)
            {
                web.UseSetting("Lattice:Database", database);
            }
            web.UseSetting("Lattice:AdminKey", AdminKey);
            web.UseSetting("Lattice:Credentials:standin", UpstreamKey);
            web.UseSetting("Lattice:MaxRequestBodyBytes", MaxBodyBytes.ToString(System.Globalization.CultureInfo.InvariantCulture));
            web.UseSetting($"Lattice:BodyLimits:{SmallBodyTask}", SmallBodyTaskLimit.ToString(System.Globalization.CultureInfo.InvariantCulture));
            foreach (var (name, value) in settings)
            {
                web.UseSetting(name, value);
            }
            web.ConfigureServices(services =>
            {
                services.RemoveAll<TimeProvider>();
                services.AddSingleton<TimeProvider>(Time);
            });
        });

        Admin = Client(AdminKey);
        Started();
        var ws = await PostAsync(Admin, "/admin/v1/workspaces", new JsonObject { ["name"] = "tests" });
        WorkspaceId = ws["id"]!.GetValue<string>();
        ApiKey = await CreateKeyAsync();

        var upstream = StandInUrl + "/v1";
        var deadUpstream = $"http://127.0.0.1:{Lattice.Testing.ProcessHost.FreeTcpPort()}/v1";
        await AddModelAsync("lovelace:chat", Offer(upstream, "standin-chat"));
        // The stand-in answers this one with its dated snapshot's name (standin-dated-2024-07-18), as OpenAI does.
        await AddModelAsync("lovelace:dated", Offer(upstream, "standin-dated"));
        await AddModelAsync("lovelace:failover", Offer(deadUpstream, "standin-chat", priority: 0), Offer(upstream, "standin-chat", priority: 1));
        await AddModelAsync("lovelace:fail-500", Offer(upstream, "standin-fail-500"));
        await AddModelAsync("lovelace:fail-500-endless", Offer(upstream, "standin-fail-500-endless"));
        await AddModelAsync("lovelace:fail-500-then-ok", Offer(upstream, "standin-fail-500", priority: 0), Offer(upstream, "standin-chat", priority: 1));
        await AddModelAsync("lovelace:html-503", Offer(upstream, "standin-fail-503-html"));
        await AddModelAsync("lovelace:dead", Offer(deadUpstream, "standin-chat"));
        await AddModelAsync("lovelace:drop", Offer(upstream, "standin-drop"));
        await AddModelAsync("lovelace:drip", Offer(upstream, "standin-drip"));
        await AddModelAsync("lovelace:slow", Offer(upstream, "standin-slow-60000", timeoutSeconds: 1));
        await AddModelAsync("lovelace:bad-request", Offer(upstream, "standin-bad-request"));
        await AddModelAsync("lovelace:wrong-credential", new JsonObject { ["base_url"] = upstream, ["upstream_model"] = "standin-chat" });
        await AddModelAsync("lovelace:embed", Offer(upstream, "standin-embed", task: "embeddings"));
        await AddModelAsync("lovelace:whisper", Offer(upstream, "standin-whisper", task: "audio.transcriptions"));
        // Anthropic upstreams: the stand-in's /v1/messages, reached at its root as Anthropic's base URL is.
        await AddModelAsync(ClaudeModel, AnthropicOffer(StandInUrl, "claude-standin"));
        await AddModelAsync(ClaudeFailoverModel, AnthropicOffer(StandInUrl, "standin-overloaded-529", priority: 0), AnthropicOffer(StandInUrl, "claude-standin", priority: 1));
        await AddModelAsync(ClaudeOverloadedModel, AnthropicOffer(StandInUrl, "standin-overloaded-529"));
    }

    public const string ClaudeModel = "lovelace:claude-echo";
    public const string ClaudeFailoverModel = "lovelace:claude-failover";
    public const string ClaudeOverloadedModel = "lovelace:claude-overloaded";

    public static JsonObject AnthropicOffer(string baseUrl, string upstreamModel, int? priority = null)
    {
        var offer = Offer(baseUrl, upstreamModel, priority);
        offer["kind"] = "anthropic";
        return offer;
    }

    public static JsonObject Offer(string baseUrl, string upstreamModel, int? priority = null, string? task = null, int? timeoutSeconds = null) => new()
    {
        ["base_url"] = baseUrl,
        ["credential"] = "standin",
        ["upstream_model"] = upstreamModel,
        ["priority"] = priority,
        ["task"] = task,
        ["timeout_seconds"] = timeoutSeconds,
    };

    public async Task AddModelAsync(string id, params JsonObject[] offers)
    {
        await PostAsync(Admin, "/admin/v1/models", new JsonObject { ["id"] = id, ["owned_by"] = "tests", ["offers"] = new JsonArray(offers) });
    }

    public async Task<string> CreateKeyAsync(JsonObject? body = null)
    {
        var key = await PostAsync(Admin, $"/admin/v1/workspaces/{WorkspaceId}/keys", body ?? new JsonObject { ["name"] = "tests" });
        return key["key"]!.GetValue<string>();
    }

    public HttpClient Client(string? key = null)
    {
        var client = _factory!.CreateClient();
        client.Timeout = TimeSpan.FromSeconds(30);
        if (key is not null)
        {
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }
        return client;
    }

    public HttpClient DevClient() => Client(ApiKey);

    /// <summary>What the stand-in last received on <paramref name="path"/>.</summary>
    public async Task<JsonObject> LastUpstreamRequestAsync(string path)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        return (await http.GetFromJsonAsync<JsonObject>($"{StandInUrl}/_standin/last?path={Uri.EscapeDataString(path)}"))!;
    }

    public long UpstreamClientAborts => StandInStats.ClientAborts;

    public static async Task<JsonObject> PostAsync(HttpClient client, string path, JsonNode body)
    {
        using var response = await client.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"POST {path} → {(int)response.StatusCode}: {text}");
        }
        return JsonNode.Parse(text)!.AsObject();
    }

    public async Task DisposeAsync()
    {
        if (_factory is not null)
        {
            await _factory.DisposeAsync();
        }
        await _standIn.ShutDownAsync();
        Hosts.DeleteDataDirectory(_dataDir);
    }
}

/// <summary>The same gateway with its counters (limits, budgets, idempotency keys) in the assembly's Redis, under a prefix of its own.</summary>
public sealed class RedisGatewayFixture : GatewayFixture
{
    private readonly string _prefix = "t" + Guid.NewGuid().ToString("N") + ":";

    protected override async Task<Dictionary<string, string>> SettingsAsync() => new()
    {
        ["Lattice:Redis"] = (await RedisServer.Shared()).Configuration,
        ["Lattice:RedisKeyPrefix"] = _prefix,
    };

    /// <summary>A field of the one hash under this gateway's prefix whose name matches <paramref name="pattern"/>; null when there is none.</summary>
    public async Task<StackExchange.Redis.RedisValue> HashFieldAsync(string pattern, string field)
    {
        var server = await RedisServer.Shared();
        await using var connection = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(server.Configuration);
        await foreach (var key in connection.GetServer(server.Configuration).KeysAsync(pattern: _prefix + pattern))
        {
            return await connection.GetDatabase().HashGetAsync(key, field);
        }
        return StackExchange.Redis.RedisValue.Null;
    }
}

[CollectionDefinition(Name)]
public sealed class GatewayCollection : ICollectionFixture<GatewayFixture>
{
    public const string Name = "gateway";
}
