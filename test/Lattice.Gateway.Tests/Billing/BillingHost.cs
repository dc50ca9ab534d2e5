using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace Lattice.Gateway.Tests.Billing;

/// <summary>
/// The real gateway on a loopback port with a fake clock and its own data directory, for billing tests that seed the
/// ledger directly. <see cref="RestartAsync"/> stops it and starts a new one on the same database and clock.
/// </summary>
public sealed class BillingHost : IAsyncDisposable
{
    public const string AdminKey = "sk_admin_billing_tests_0123456789abcdef";

    private readonly string _dataDir = Path.Combine(Path.GetTempPath(), "lattice-billing-" + Guid.NewGuid().ToString("N"));
    private readonly Dictionary<string, string?> _settings;
    private readonly Action<IServiceProvider>? _beforeStart;
    private WebApplication? _app;

    private BillingHost(FakeTimeProvider time, Dictionary<string, string?> settings, Action<IServiceProvider>? beforeStart)
    {
        Time = time;
        _settings = settings;
        _beforeStart = beforeStart;
    }

    public FakeTimeProvider Time { get; }
    public string Origin { get; private set; } = "";
    public IServiceProvider Services => _app!.Services;

    /// <summary>
    /// Starts a node at <paramref name="now"/> on the fake clock. <paramref name="beforeStart"/> runs on each node's
    /// services (after a restart too) once they are built and before the node starts, e.g. to attach test hooks.
    /// </summary>
    /// <param name="database">The <c>Lattice:Database</c> setting (a PostgreSQL URL); null: SQLite in the data directory.</param>
    public static async Task<BillingHost> StartAsync(DateTimeOffset now, Dictionary<string, string?>? settings = null, Action<IServiceProvider>? beforeStart = null, string? database = null)
    {
        settings = settings is null ? [] : new(settings);
        if (database is not null)
        {
            settings["Lattice:Database"] = database;
        }
        var host = new BillingHost(new FakeTimeProvider(now), settings, beforeStart);
        await host.StartNodeAsync();
        return host;
    }

    private async Task StartNodeAsync()
    {
        var builder = GatewayApp.CreateBuilder([]);
        var settings = new Dictionary<string, string?> { ["Lattice:DataDirectory"] = _dataDir, ["Lattice:AdminKey"] = AdminKey };
        foreach (var (k, v) in _settings)
        {
            settings[k] = v;
        }
        builder.Configuration.AddInMemoryCollection(settings);
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.RemoveAll<TimeProvider>();
        builder.Services.AddSingleton<TimeProvider>(Time);
        _app = GatewayApp.Build(builder);
        _beforeStart?.Invoke(_app.Services);
        await _app.StartAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Origin = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');
    }

    /// <summary>A graceful stop of this node, then a new node on the same data directory.</summary>
    public async Task RestartAsync()
    {
        await StopAsync();
        await StartNodeAsync();
    }

    public async Task StopAsync()
    {
        await _app.ShutDownAsync();
        _app = null;
    }

    /// <summary>The database, opened without a gateway (e.g. between a stop and a restart).</summary>
    public LatticeDbContext OpenDatabase()
    {
        var gateway = new GatewayOptions { DataDirectory = _dataDir, Database = _settings.GetValueOrDefault("Lattice:Database") };
        var database = gateway.ResolveDatabase();
        return database.Provider == DatabaseProvider.Postgres
            ? new PostgresLatticeDbContext(new DbContextOptionsBuilder<PostgresLatticeDbContext>().UseNpgsql(database.ConnectionString).Options)
            : new LatticeDbContext(new DbContextOptionsBuilder<LatticeDbContext>().UseSqlite(database.ConnectionString).Options);
    }

    public HttpClient Client(string? credential)
    {
        var http = new HttpClient { BaseAddress = new Uri(Origin + "/"), Timeout = TimeSpan.FromSeconds(30) };
        if (credential is not null)
        {
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", credential);
        }
        return http;
    }

    /// <summary>A new workspace and a developer key of it with exactly <paramref name="scopes"/> (the defaults when none).</summary>
    public async Task<(string WorkspaceId, string Key)> NewWorkspaceAsync(string name, params string[] scopes)
    {
        using var admin = Client(AdminKey);
        var ws = (await GatewayFixture.PostAsync(admin, "admin/v1/workspaces", new JsonObject { ["name"] = name }))["id"]!.GetValue<string>();
        var body = new JsonObject { ["name"] = name };
        if (scopes.Length > 0)
        {
            body["scopes"] = new JsonArray([.. scopes.Select(s => (JsonNode)s)]);
        }
        var key = (await GatewayFixture.PostAsync(admin, $"admin/v1/workspaces/{ws}/keys", body))["key"]!.GetValue<string>();
        return (ws, key);
    }

    /// <summary>Writes records straight into the ledger table, in one transaction.</summary>
    public async Task SeedAsync(IEnumerable<UsageRecordEntity> records)
    {
        using var scope = Services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        db.UsageRecords.AddRange(records);
        await db.SaveChangesAsync();
    }

    public static UsageRecordEntity Record(string requestId, DateTimeOffset at, string workspaceId, long costPicoUsd, string? prices = null, string model = "lovelace:chat", string task = "chat.completions") => new()
    {
        RequestId = requestId,
        CreatedAt = at,
        WorkspaceId = workspaceId,
        KeyId = "key_test",
        Task = task,
        Model = model,
        Status = UsageStatuses.Ok,
        HttpStatus = 200,
        PromptTokens = 100,
        CachedTokens = 10,
        CompletionTokens = 20,
        TotalTokens = 120,
        CostPicoUsd = costPicoUsd,
        Prices = prices,
        DurationMicroseconds = 1000,
    };

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        Hosts.DeleteDataDirectory(_dataDir);
    }
}
