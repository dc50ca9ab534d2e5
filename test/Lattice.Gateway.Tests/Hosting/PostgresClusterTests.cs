using System.Net;
using System.Text;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Changes;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Testing;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lattice.Gateway.Tests.Hosting;

/// <summary>
/// Gateway nodes on PostgreSQL: several starting at once on an empty database, and a server restarting under a node.
/// </summary>
[Trait("Category", "ScaleOut")]
[Collection(PostgresCollection.Name)]
public sealed class PostgresClusterTests(PostgresFixture postgres)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    private static StringContent Chat(string model) => new(
        $$"""{"model":"{{model}}","messages":[{"role":"user","content":"one two three"}]}""", Encoding.UTF8, "application/json");

    [Fact]
    public async Task Three_nodes_starting_at_once_on_an_empty_database_all_start_and_migrate_and_seed_it_once()
    {
        await using var cluster = await GatewayCluster.StartAsync(await RedisServer.Shared(),
            new() { ["Lattice:Database"] = await postgres.DatabaseAsync(GetType()) }, together: 3);
        Assert.Equal(3, cluster.Count);

        await using (var scope = cluster.Services(0).CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
            Assert.True(db.Database.IsNpgsql());
            Assert.Empty(await db.Database.GetPendingMigrationsAsync());
            Assert.Equal(db.Database.GetMigrations().Order(StringComparer.Ordinal), (await db.Database.GetAppliedMigrationsAsync()).Order(StringComparer.Ordinal));
            Assert.Equal(BuiltInTaskClasses.All(DateTimeOffset.UtcNow).Select(t => t.Name).Order(StringComparer.Ordinal),
                (await db.TaskClasses.Where(t => t.BuiltIn).Select(t => t.Name).ToListAsync()).Order(StringComparer.Ordinal));
            Assert.Equal(1, await db.ApiKeys.CountAsync(k => k.Name == DatabaseInitializer.ConfiguredAdminKeyName && k.RevokedAt == null));
        }
        // Each node serves: a key made on one works on the others.
        var model = await cluster.ModelAsync();
        var (_, _, key) = await cluster.WorkspaceWithKeyAsync();
        for (var node = 0; node < 3; node++)
        {
            await ServedAsync(cluster, node, key, model);
        }
    }

    /// <summary>Sends a chat request to <paramref name="node"/> until it is served, while the node has yet to read the model off the change feed.</summary>
    private static async Task ServedAsync(GatewayCluster cluster, int node, string key, string model)
    {
        var poller = cluster.Services(node).GetRequiredService<ChangeFeedPoller>();
        using var client = cluster.Client(node, key);
        using var timeout = new CancellationTokenSource(Timeout);
        while (true)
        {
            using (var response = await client.PostAsync("v1/chat/completions", Chat(model), timeout.Token))
            {
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
                Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            }
            var reads = poller.CompletedReads;
            cluster.Time.Advance(ChangeFeedPoller.Interval);
            await poller.ReadsAsync(reads + 1, timeout.Token);
        }
    }

    [Fact]
    public async Task A_postgresql_restart_holds_the_usage_records_of_requests_served_meanwhile_and_loses_or_doubles_none()
    {
        // A server of its own: this test stops it.
        await using var server = await PostgresServer.StartAsync();
        var database = await server.CreateDatabaseAsync("gateway_restart");
        await using var cluster = await GatewayCluster.StartAsync(await RedisServer.Shared(), new() { ["Lattice:Database"] = database });
        PostgresFixture.AssertOnPostgres(cluster.Services(0));
        var model = await cluster.ModelAsync(new System.Text.Json.Nodes.JsonObject { ["per_request"] = 0.001 });
        var (_, keyId, key) = await cluster.WorkspaceWithKeyAsync();
        var ledger = cluster.Services(0).GetRequiredService<UsageLedger>();
        var poller = cluster.Services(0).GetRequiredService<ChangeFeedPoller>();
        using var client = cluster.Client(0, key);
        var ids = new List<string>();
        async Task SendAsync(int count)
        {
            for (var i = 0; i < count; i++)
            {
                using var response = await client.PostAsync("v1/chat/completions", Chat(model)).WaitAsync(Timeout);
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                ids.Add(response.Headers.GetValues("x-request-id").Single());
            }
        }

        await SendAsync(5);
        await ledger.FlushAsync().WaitAsync(Timeout);

        await server.StopServerAsync();
        // Served while the database is away: the key, the model and its prices are in the node's memory.
        await SendAsync(5);
        var flushed = ledger.FlushAsync();
        // The poller's reads fail while the server is away, and it goes on.
        var failed = poller.FailedReads;
        cluster.Time.Advance(ChangeFeedPoller.Interval);
        await poller.FailedReadsAsync(failed + 1).WaitAsync(Timeout);
        Assert.False(flushed.IsCompleted);
        Assert.Equal(5, ledger.Pending);

        await server.StartServerAsync();
        await flushed.WaitAsync(Timeout);
        Assert.Equal(0, ledger.Pending);
        Assert.Equal(ledger.Journal.SlotCount, ledger.Journal.FreeSlots);
        // The poller reads to the end again.
        var reads = poller.CompletedReads;
        cluster.Time.Advance(ChangeFeedPoller.Interval);
        await poller.ReadsAsync(reads + 1).WaitAsync(Timeout);

        // Every request is in the ledger, once, with its cost.
        await using var connection = new NpgsqlConnection(server.ConnectionString("gateway_restart"));
        await connection.OpenAsync();
        await using var query = new NpgsqlCommand("""SELECT "RequestId", "CostPicoUsd" FROM usage_records WHERE "KeyId" = @key""", connection);
        query.Parameters.AddWithValue("key", keyId);
        var rows = new List<(string Id, long Cost)>();
        await using (var reader = await query.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                rows.Add((reader.GetString(0), reader.GetInt64(1)));
            }
        }
        Assert.Equal(ids.Order(StringComparer.Ordinal), rows.Select(r => r.Id).Order(StringComparer.Ordinal));
        Assert.All(rows, r => Assert.Equal(1_000_000_000L, r.Cost));

        // And the database is written again: a key created now works at once.
        var (_, _, later) = await cluster.WorkspaceWithKeyAsync();
        using var laterClient = cluster.Client(0, later);
        using var served = await laterClient.PostAsync("v1/chat/completions", Chat(model)).WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.OK, served.StatusCode);
    }
}
