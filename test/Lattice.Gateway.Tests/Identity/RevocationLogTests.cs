using System.Net;
using System.Text.Json.Nodes;
using Lattice.Gateway.Identity;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>The revocation log: a node knows all of it before serving, and old entries are pruned.</summary>
public abstract class RevocationLogTests(OAuthGateway gateway)
{
    private async Task AddOldAndManyAsync(int count, DateTimeOffset revokedAt, string prefix)
    {
        await using var scope = gateway.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        for (var i = 0; i < count; i++)
        {
            db.Revocations.Add(new RevocationEntity { Kind = RevocationSet.GrantKind, SubjectId = $"{prefix}-{i}", RevokedAt = revokedAt });
        }
        await db.SaveChangesAsync();
    }

    [Fact]
    public async Task A_node_started_after_a_long_log_refuses_a_revoked_grant_from_its_first_request()
    {
        var access = (await CodeFlow.RunAsync(gateway, gateway.A, gateway.A.ClientId, gateway.A.ClientSecret, ["lattice:compute:inference"]))["access_token"]!.GetValue<string>();
        // 25,000 other revocations first, so the one that matters sits past two and a half read batches.
        await AddOldAndManyAsync(25_000, DateTimeOffset.UtcNow, "filler");
        var grant = CodeFlow.Payload(access)["oi_au_id"]!.GetValue<string>();
        await OAuthGateway.PostAsync(gateway.Client(gateway.A.Key), $"admin/v1/grants/{grant}/revoke", new JsonObject());

        var (node2, origin2) = await gateway.StartNodeAsync();
        try
        {
            using var onNode2 = gateway.Client(access, origin2);
            using var response = await onNode2.GetAsync("v1/models");
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.Equal("revoked_grant", JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
        }
        finally
        {
            await node2.ShutDownAsync();
        }
    }

    [Fact]
    public async Task Entries_older_than_any_live_token_are_pruned_from_memory_and_the_log()
    {
        var set = gateway.Services.GetRequiredService<RevocationSet>();
        var old = DateTimeOffset.UtcNow - set.Retention - TimeSpan.FromMinutes(1);
        await AddOldAndManyAsync(3, old, "ancient");
        await AddOldAndManyAsync(1, DateTimeOffset.UtcNow, "recent");
        await using var scope = gateway.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        await set.CatchUpAsync(db, CancellationToken.None);
        Assert.True(set.IsGrantRevoked("ancient-0"));

        var deleted = await set.PruneAsync(db, CancellationToken.None);

        Assert.True(deleted >= 3, $"deleted {deleted}");
        Assert.False(set.IsGrantRevoked("ancient-0"));
        Assert.True(set.IsGrantRevoked("recent-0"));
        Assert.False(await db.Revocations.AnyAsync(r => r.SubjectId.StartsWith("ancient-")));
        Assert.True(await db.Revocations.AnyAsync(r => r.SubjectId == "recent-0"));
    }
}

public sealed class SqliteRevocationLogTests(OAuthGateway gateway) : RevocationLogTests(gateway), IClassFixture<OAuthGateway>;

[Collection(PostgresCollection.Name)]
public sealed class PostgresRevocationLogTests(PostgresOAuthGateway gateway) : RevocationLogTests(gateway.Gateway), IClassFixture<PostgresOAuthGateway>;
