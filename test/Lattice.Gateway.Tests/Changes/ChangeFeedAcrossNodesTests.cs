using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Billing;
using Lattice.Gateway.Changes;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Tests.Identity;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Changes;

/// <summary>
/// Two gateway nodes on one database: what is written through node 1 — keys, models, task classes, runtime records,
/// limits, budgets — is in force on node 2 once node 2's poller has read the change feed, and a key node 2 has not
/// heard of yet still works on its very first request there (looked up in the database).
/// </summary>
public sealed class ChangeFeedAcrossNodesTests(OAuthGateway gateway) : IClassFixture<OAuthGateway>
{
    /// <summary>
    /// Waits until <paramref name="node"/> has read the feed twice more: the first read may have begun before the
    /// write committed, the second began after it.
    /// </summary>
    private static async Task TwoReadsLaterAsync(WebApplication node)
    {
        var poller = node.Services.GetRequiredService<ChangeFeedPoller>();
        await poller.ReadsAsync(poller.CompletedReads + 2).WaitAsync(TimeSpan.FromSeconds(30));
    }

    private static StringContent Chat(string model) => new(
        $$"""{"model":"{{model}}","messages":[{"role":"user","content":"hi"}]}""", Encoding.UTF8, "application/json");

    private static async Task<(HttpStatusCode Status, string? Code)> SendAsync(HttpClient client, HttpRequestMessage request)
    {
        using var response = await client.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();
        var code = response.IsSuccessStatusCode ? null : JsonNode.Parse(body)!["error"]!["code"]?.GetValue<string>();
        return (response.StatusCode, code);
    }

    private static Task<(HttpStatusCode Status, string? Code)> ChatAsync(HttpClient client, string model) =>
        SendAsync(client, new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = Chat(model) });

    private static Task<(HttpStatusCode Status, string? Code)> GetAsync(HttpClient client, string path) =>
        SendAsync(client, new HttpRequestMessage(HttpMethod.Get, path));

    private async Task<(string WorkspaceId, string Key)> NewWorkspaceAsync(string name)
    {
        var ws = (await OAuthGateway.PostAsync(gateway.Admin, "admin/v1/workspaces", new JsonObject { ["name"] = name }))["id"]!.GetValue<string>();
        var key = (await OAuthGateway.PostAsync(gateway.Admin, $"admin/v1/workspaces/{ws}/keys", new JsonObject
        {
            ["name"] = name,
            ["scopes"] = new JsonArray("lattice:compute:inference", "lattice:compute:catalog:read", "lattice:compute:personal_runtime:manage"),
        }))["key"]!.GetValue<string>();
        return (ws, key);
    }

    [Fact]
    public async Task A_key_created_on_one_node_works_on_the_other_on_its_very_next_request()
    {
        var (node2, origin2) = await gateway.StartNodeAsync();
        try
        {
            var created = await OAuthGateway.PostAsync(gateway.Client(gateway.A.Key), $"admin/v1/workspaces/{gateway.A.WorkspaceId}/keys",
                new JsonObject { ["name"] = "fresh", ["scopes"] = new JsonArray("lattice:compute:inference") });
            using var onNode2 = gateway.Client(created["key"]!.GetValue<string>(), origin2);
            // No waiting: node 2 has not necessarily read the feed yet.
            Assert.Equal((HttpStatusCode.OK, null), await GetAsync(onNode2, "v1/models"));
        }
        finally
        {
            await node2.ShutDownAsync();
        }
    }

    [Fact]
    public async Task Without_the_poller_a_new_key_is_found_in_the_database_once_and_then_served_from_memory()
    {
        var (node2, origin2) = await gateway.StartNodeAsync();
        try
        {
            // Node 2 hears nothing from the feed: only the miss fallback can know the key.
            await node2.Services.GetRequiredService<ChangeFeedPoller>().StopAsync(CancellationToken.None);
            var store = node2.Services.GetRequiredService<ApiKeyStore>();
            var created = await OAuthGateway.PostAsync(gateway.Client(gateway.A.Key), $"admin/v1/workspaces/{gateway.A.WorkspaceId}/keys",
                new JsonObject { ["name"] = "fallback", ["scopes"] = new JsonArray("lattice:compute:inference") });
            var lookups = store.DatabaseLookups;
            using var onNode2 = gateway.Client(created["key"]!.GetValue<string>(), origin2);

            Assert.Equal((HttpStatusCode.OK, null), await GetAsync(onNode2, "v1/models"));
            Assert.Equal(lookups + 1, store.DatabaseLookups);
            Assert.Equal((HttpStatusCode.OK, null), await GetAsync(onNode2, "v1/models"));
            Assert.Equal(lookups + 1, store.DatabaseLookups);

            // Revoked on node 1, the key is still refused on node 2 once the feed is read.
            await OAuthGateway.PostAsync(gateway.Client(gateway.A.Key), $"admin/v1/keys/{created["id"]}/revoke", new JsonObject());
            await using (var scope = node2.Services.CreateAsyncScope())
            {
                await node2.Services.GetRequiredService<ChangeFeed>().CatchUpAsync(scope.ServiceProvider.GetRequiredService<LatticeDbContext>(), CancellationToken.None);
            }
            Assert.Equal((HttpStatusCode.Unauthorized, "invalid_api_key"), await GetAsync(onNode2, "v1/models"));
        }
        finally
        {
            await node2.ShutDownAsync();
        }
    }

    [Fact]
    public async Task A_junk_key_reaches_the_database_once_while_its_miss_is_remembered()
    {
        var store = gateway.Services.GetRequiredService<ApiKeyStore>();
        var junk = "sk_" + Guid.NewGuid().ToString("N");
        var other = "sk_" + Guid.NewGuid().ToString("N");
        var lookups = store.DatabaseLookups;
        using var withJunk = gateway.Client(junk);
        using var withOther = gateway.Client(other);

        for (var i = 0; i < 3; i++)
        {
            Assert.Equal((HttpStatusCode.Unauthorized, "invalid_api_key"), await GetAsync(withJunk, "v1/models"));
        }
        Assert.Equal(lookups + 1, store.DatabaseLookups);
        Assert.Equal((HttpStatusCode.Unauthorized, "invalid_api_key"), await GetAsync(withOther, "v1/models"));
        Assert.Equal((HttpStatusCode.Unauthorized, "invalid_api_key"), await GetAsync(withOther, "v1/models"));
        Assert.Equal(lookups + 2, store.DatabaseLookups);
    }

    [Fact]
    public async Task A_model_created_on_one_node_is_served_by_the_other_and_once_deleted_is_gone_from_it()
    {
        var (node2, origin2) = await gateway.StartNodeAsync();
        try
        {
            using var onNode2 = gateway.Client(gateway.A.Key, origin2);
            var model = "lovelace:feed-" + Guid.NewGuid().ToString("N")[..8];
            Assert.Equal((HttpStatusCode.NotFound, "model_not_found"), await GetAsync(onNode2, $"v1/models/{model}"));

            await OAuthGateway.PostAsync(gateway.Admin, "admin/v1/models", new JsonObject
            {
                ["id"] = model,
                ["offers"] = new JsonArray(new JsonObject { ["base_url"] = gateway.StandInUrl + "/v1", ["upstream_model"] = "standin-chat", ["credential"] = "standin" }),
            });
            await TwoReadsLaterAsync(node2);
            Assert.Equal((HttpStatusCode.OK, null), await GetAsync(onNode2, $"v1/models/{model}"));
            Assert.Equal((HttpStatusCode.OK, null), await ChatAsync(onNode2, model));

            using (var deleted = await gateway.Admin.DeleteAsync($"admin/v1/models/{model}"))
            {
                Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
            }
            await TwoReadsLaterAsync(node2);
            Assert.Equal((HttpStatusCode.NotFound, "model_not_found"), await GetAsync(onNode2, $"v1/models/{model}"));
            Assert.Equal((HttpStatusCode.NotFound, "model_not_found"), await ChatAsync(onNode2, model));
        }
        finally
        {
            await node2.ShutDownAsync();
        }
    }

    [Fact]
    public async Task A_task_class_created_on_one_node_is_known_to_the_other()
    {
        var (node2, origin2) = await gateway.StartNodeAsync();
        try
        {
            using var onNode2 = gateway.Client(gateway.A.Key, origin2);
            var task = "feed.echo-" + Guid.NewGuid().ToString("N")[..8];
            HttpRequestMessage Run() => new(HttpMethod.Post, $"v1/tasks/{task}")
            {
                Content = new StringContent("""{"model":"lovelace:absent","text":"hi"}""", Encoding.UTF8, "application/json"),
            };
            Assert.Equal((HttpStatusCode.NotFound, "task_not_found"), await SendAsync(onNode2, Run()));

            await OAuthGateway.PostAsync(gateway.Admin, "admin/v1/task-classes", new JsonObject
            {
                ["name"] = task,
                ["input_schema"] = JsonNode.Parse("""{"type":"object","properties":{"model":{"type":"string"},"text":{"type":"string"}},"required":["model"]}"""),
            });
            await TwoReadsLaterAsync(node2);
            // The task is known now: what is missing is the model.
            Assert.Equal((HttpStatusCode.NotFound, "model_not_found"), await SendAsync(onNode2, Run()));
        }
        finally
        {
            await node2.ShutDownAsync();
        }
    }

    [Fact]
    public async Task A_runtime_record_created_on_one_node_is_routed_to_by_the_other()
    {
        var (node2, origin2) = await gateway.StartNodeAsync();
        try
        {
            var created = await OAuthGateway.PostAsync(gateway.Client(gateway.A.Key), "v1/personal-runtimes",
                new JsonObject { ["displayName"] = "desk", ["executionBackend"] = "local-model" });
            var latticeId = created["runtime"]!["latticeId"]!.GetValue<string>();
            await TwoReadsLaterAsync(node2);

            // Known but not connected: node 2 has the record (an unknown runtime would be personal_lattice_not_found).
            using var onNode2 = gateway.Client(gateway.A.Key, origin2);
            Assert.Equal((HttpStatusCode.Conflict, "runtime_unreachable"), await ChatAsync(onNode2, "lattice:personal:" + latticeId));
        }
        finally
        {
            await node2.ShutDownAsync();
        }
    }

    [Fact]
    public async Task A_rate_limit_set_on_one_node_is_enforced_by_the_other()
    {
        var (node2, origin2) = await gateway.StartNodeAsync();
        try
        {
            var (ws, key) = await NewWorkspaceAsync("limited");
            using var onNode2 = gateway.Client(key, origin2);
            Assert.Equal((HttpStatusCode.OK, null), await ChatAsync(onNode2, "lovelace:chat"));

            using (var set = await gateway.Admin.PutAsJsonAsync($"admin/v1/workspaces/{ws}/limits", new JsonObject { ["requests_per_minute"] = 1 }))
            {
                Assert.Equal(HttpStatusCode.OK, set.StatusCode);
            }
            await TwoReadsLaterAsync(node2);

            Assert.Equal((HttpStatusCode.OK, null), await ChatAsync(onNode2, "lovelace:chat"));
            Assert.Equal((HttpStatusCode.TooManyRequests, "rate_limit_exceeded"), await ChatAsync(onNode2, "lovelace:chat"));
        }
        finally
        {
            await node2.ShutDownAsync();
        }
    }

    [Fact]
    public async Task A_budget_created_changed_and_deleted_on_one_node_is_in_force_on_the_other()
    {
        var (node2, _) = await gateway.StartNodeAsync();
        try
        {
            var (ws, _) = await NewWorkspaceAsync("budgeted");
            var policies = node2.Services.GetRequiredService<BillingPolicies>();
            var budget = await OAuthGateway.PostAsync(gateway.Admin, $"admin/v1/workspaces/{ws}/budgets", new JsonObject { ["amount_usd"] = "12.5" });
            var id = budget["id"]!.GetValue<string>();
            await TwoReadsLaterAsync(node2);
            Assert.Equal(new BudgetPolicy(id, ws, BudgetScopes.Workspace, ws, 12_500_000_000_000), policies.FindBudget(id));

            using (var patched = await gateway.Admin.PatchAsJsonAsync($"admin/v1/budgets/{id}", new JsonObject { ["amount_usd"] = "3" }))
            {
                Assert.Equal(HttpStatusCode.OK, patched.StatusCode);
            }
            await TwoReadsLaterAsync(node2);
            Assert.Equal(3_000_000_000_000, policies.FindBudget(id)!.AmountPicoUsd);

            using (var deleted = await gateway.Admin.DeleteAsync($"admin/v1/budgets/{id}"))
            {
                Assert.Equal(HttpStatusCode.OK, deleted.StatusCode);
            }
            await TwoReadsLaterAsync(node2);
            Assert.Null(policies.FindBudget(id));
        }
        finally
        {
            await node2.ShutDownAsync();
        }
    }

    [Fact]
    public async Task A_write_and_its_change_row_commit_together()
    {
        var model = "lovelace:row-" + Guid.NewGuid().ToString("N")[..8];
        await OAuthGateway.PostAsync(gateway.Admin, "admin/v1/models", new JsonObject
        {
            ["id"] = model,
            ["offers"] = new JsonArray(new JsonObject { ["base_url"] = gateway.StandInUrl + "/v1", ["upstream_model"] = "standin-chat", ["credential"] = "standin" }),
        });
        await using var scope = gateway.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        var rows = await db.Changes.AsNoTracking().Where(c => c.EntityId == model).ToListAsync();
        var row = Assert.Single(rows);
        Assert.Equal(ChangeKinds.Model, row.Kind);
        Assert.Null(row.WorkspaceId);
    }

    private Task<JsonObject> CreateModelAsync(string model) => OAuthGateway.PostAsync(gateway.Admin, "admin/v1/models", new JsonObject
    {
        ["id"] = model,
        ["offers"] = new JsonArray(new JsonObject { ["base_url"] = gateway.StandInUrl + "/v1", ["upstream_model"] = "standin-chat", ["credential"] = "standin" }),
    });

    [Fact]
    public async Task A_node_whose_unread_changes_were_pruned_reloads_everything()
    {
        var (node2, origin2) = await gateway.StartNodeAsync();
        try
        {
            await node2.Services.GetRequiredService<ChangeFeedPoller>().StopAsync(CancellationToken.None);
            var lost = "lovelace:lost-" + Guid.NewGuid().ToString("N")[..8];
            var later = "lovelace:later-" + Guid.NewGuid().ToString("N")[..8];
            await CreateModelAsync(lost);
            await using (var scope = gateway.Services.CreateAsyncScope())
            {
                // As if node 2 had been cut off for longer than the retention: every row it had not read is gone.
                await scope.ServiceProvider.GetRequiredService<LatticeDbContext>().Changes.ExecuteDeleteAsync();
            }
            await CreateModelAsync(later);

            await using (var scope = node2.Services.CreateAsyncScope())
            {
                await node2.Services.GetRequiredService<ChangeFeed>().CatchUpAsync(scope.ServiceProvider.GetRequiredService<LatticeDbContext>(), CancellationToken.None);
            }

            using var onNode2 = gateway.Client(gateway.A.Key, origin2);
            Assert.Equal((HttpStatusCode.OK, null), await GetAsync(onNode2, $"v1/models/{lost}"));
            Assert.Equal((HttpStatusCode.OK, null), await GetAsync(onNode2, $"v1/models/{later}"));
        }
        finally
        {
            await node2.ShutDownAsync();
        }
    }

    [Fact]
    public async Task Change_rows_older_than_the_retention_are_pruned()
    {
        var feed = gateway.Services.GetRequiredService<ChangeFeed>();
        await using var scope = gateway.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        var old = DateTimeOffset.UtcNow - ChangeFeed.Retention - TimeSpan.FromMinutes(1);
        var tag = Guid.NewGuid().ToString("N");
        db.Changes.Add(new ChangeEntity { Kind = ChangeKinds.Model, EntityId = "old-" + tag, At = old });
        db.Changes.Add(new ChangeEntity { Kind = ChangeKinds.Model, EntityId = "new-" + tag, At = DateTimeOffset.UtcNow });
        await db.SaveChangesAsync();

        Assert.True(await feed.PruneAsync(db, CancellationToken.None) >= 1);

        Assert.False(await db.Changes.AnyAsync(c => c.EntityId == "old-" + tag));
        Assert.True(await db.Changes.AnyAsync(c => c.EntityId == "new-" + tag));
    }

    [Fact]
    public async Task A_change_that_commits_after_a_later_numbered_one_is_still_applied()
    {
        var (node2, origin2) = await gateway.StartNodeAsync();
        try
        {
            await node2.Services.GetRequiredService<ChangeFeedPoller>().StopAsync(CancellationToken.None);
            var feed2 = node2.Services.GetRequiredService<ChangeFeed>();
            async Task CatchUpAsync()
            {
                await using var scope = node2.Services.CreateAsyncScope();
                await feed2.CatchUpAsync(scope.ServiceProvider.GetRequiredService<LatticeDbContext>(), CancellationToken.None);
            }
            await CatchUpAsync();
            var cursor = feed2.Cursor;
            var now = DateTimeOffset.UtcNow;

            // As on PostgreSQL with two writers: the row numbered second commits first.
            await using (var scope = gateway.Services.CreateAsyncScope())
            {
                var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
                db.Changes.Add(new ChangeEntity { Id = cursor + 2, Kind = ChangeKinds.TaskClass, EntityId = "no-such-task", At = now });
                await db.SaveChangesAsync();
            }
            await CatchUpAsync();
            Assert.Equal(cursor, feed2.Cursor);

            var model = "lovelace:late-" + Guid.NewGuid().ToString("N")[..8];
            await using (var scope = gateway.Services.CreateAsyncScope())
            {
                var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
                db.Models.Add(new CatalogModelEntity
                {
                    Id = model,
                    OwnedBy = "lattice",
                    CreatedAt = now,
                    Offers =
                    [
                        new ModelOfferEntity
                        {
                            Id = "off_late" + Guid.NewGuid().ToString("N")[..8], ModelId = model, Kind = "upstream",
                            BaseUrl = gateway.StandInUrl + "/v1/", UpstreamModel = "standin-chat", CredentialName = "standin", Capacity = "hosted",
                        },
                    ],
                });
                db.Changes.Add(new ChangeEntity { Id = cursor + 1, Kind = ChangeKinds.Model, EntityId = model, At = now });
                await db.SaveChangesAsync();
            }
            await CatchUpAsync();

            Assert.Equal(cursor + 2, feed2.Cursor);
            using var onNode2 = gateway.Client(gateway.A.Key, origin2);
            Assert.Equal((HttpStatusCode.OK, null), await GetAsync(onNode2, $"v1/models/{model}"));
        }
        finally
        {
            await node2.ShutDownAsync();
        }
    }
}
