using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Lattice.Gateway.Tests.Runtimes;

/// <summary>The gateway on a real loopback port (the runtime link is a real WebSocket), with two workspaces.</summary>
public class LiveGateway : IAsyncLifetime
{
    private readonly IReadOnlyDictionary<string, string?> _settings;

    public LiveGateway() : this(new Dictionary<string, string?>())
    {
    }

    /// <summary>A live gateway with <paramref name="settings"/> added to its configuration.</summary>
    protected LiveGateway(IReadOnlyDictionary<string, string?> settings) => _settings = settings;

    public const string AdminKey = "sk_admin_live_gateway_tests_0123456789";
    private readonly string _dataDir = Path.Combine(Path.GetTempPath(), "lattice-live-" + Guid.NewGuid().ToString("N"));
    private WebApplication? _app;

    public string Origin { get; private set; } = "";
    public string KeyA { get; private set; } = "";
    public string KeyB { get; private set; } = "";
    public HttpClient Admin { get; private set; } = null!;
    public IServiceProvider Services => _app!.Services;

    public async Task InitializeAsync()
    {
        var builder = GatewayApp.CreateBuilder([]);
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Lattice:DataDirectory"] = _dataDir,
            ["Lattice:AdminKey"] = AdminKey,
        });
        builder.Configuration.AddInMemoryCollection(_settings);
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        Configure(builder);
        _app = GatewayApp.Build(builder);
        await _app.StartAsync();
        Origin = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');
        Admin = Client(AdminKey);
        KeyA = await NewWorkspaceKeyAsync("a");
        KeyB = await NewWorkspaceKeyAsync("b");
    }

    /// <summary>The gateway's data directory (its SQLite database and anything else it writes).</summary>
    public string DataDirectory => _dataDir;

    /// <summary>A subclass's own changes to the host before it is built (logging providers, services).</summary>
    protected virtual void Configure(WebApplicationBuilder builder)
    {
    }

    public HttpClient Client(string key)
    {
        var http = new HttpClient { BaseAddress = new Uri(Origin + "/"), Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return http;
    }

    private async Task<string> NewWorkspaceKeyAsync(string name)
    {
        var ws = await PostAsync(Admin, "admin/v1/workspaces", new JsonObject { ["name"] = name });
        var key = await PostAsync(Admin, $"admin/v1/workspaces/{ws["id"]}/keys", new JsonObject { ["name"] = name });
        return key["key"]!.GetValue<string>();
    }

    /// <summary>POSTs JSON and returns the JSON answer; any non-2xx fails the test with the body.</summary>
    public static Task<JsonObject> PostAsync(HttpClient http, string path, JsonNode body) =>
        Infrastructure.GatewayFixture.PostAsync(http, path, body);

    public async Task DisposeAsync()
    {
        await _app.ShutDownAsync();
        Hosts.DeleteDataDirectory(_dataDir);
    }
}
