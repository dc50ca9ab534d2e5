using System.Net;
using System.Text.Json.Nodes;
using Lattice.Gateway.Changes;
using Lattice.Gateway.Tests.Identity;
using Lattice.Testing;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Telemetry;

/// <summary>
/// <c>/readyz</c> on a gateway over a PostgreSQL server of this class's own, which the test stops and starts again:
/// 503 naming the database while it is gone, 200 once it is back; <c>/healthz</c> says ok throughout.
/// </summary>
public sealed class ReadinessTests : IAsyncLifetime
{
    private PostgresServer _postgres = null!;
    private OAuthGateway _server = null!;

    public async Task InitializeAsync()
    {
        _postgres = await PostgresServer.StartAsync();
        _server = OAuthGateway.With(new() { ["Lattice:Database"] = await _postgres.CreateDatabaseAsync("readiness") });
        await _server.InitializeAsync();
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        await _postgres.DisposeAsync();
    }

    [Fact]
    public async Task Readyz_is_503_naming_the_database_while_it_is_gone_and_200_when_it_is_back()
    {
        using var anonymous = _server.Client(null);
        var (status, body) = await ReadyAsync(anonymous);
        Assert.True(status == HttpStatusCode.OK, body.ToJsonString());
        Assert.Equal("ready", body["status"]!.GetValue<string>());
        Assert.Empty(body["failing"]!.AsArray());
        foreach (var check in new[] { "database", "change_feed", "redis" })
        {
            Assert.Equal("ok", body["checks"]![check]!["status"]!.GetValue<string>());
        }

        await _postgres.StopServerAsync();
        (status, body) = await ReadyAsync(anonymous);
        Assert.True(status == HttpStatusCode.ServiceUnavailable, body.ToJsonString());
        Assert.Equal("not_ready", body["status"]!.GetValue<string>());
        Assert.Contains("database", body["failing"]!.AsArray().Select(n => n!.GetValue<string>()));
        Assert.Equal("unreachable", body["checks"]!["database"]!["detail"]!.GetValue<string>());
        // Liveness asks nothing of the database.
        Assert.Equal("ok", await anonymous.GetStringAsync("healthz"));

        await _postgres.StartServerAsync();
        // The poller reading the feed to the end twice more proves the node talks to the database again.
        var poller = _server.Services.GetRequiredService<ChangeFeedPoller>();
        await poller.ReadsAsync(poller.CompletedReads + 2).WaitAsync(TimeSpan.FromSeconds(60));
        (status, body) = await ReadyAsync(anonymous);
        Assert.True(status == HttpStatusCode.OK, body.ToJsonString());
        Assert.Equal("ready", body["status"]!.GetValue<string>());
    }

    private static async Task<(HttpStatusCode, JsonObject)> ReadyAsync(HttpClient client)
    {
        using var response = await client.GetAsync("readyz");
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject());
    }
}
