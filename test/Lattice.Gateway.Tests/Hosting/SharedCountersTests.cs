using Lattice.Gateway.Changes;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Lattice.Gateway.Billing;
using Lattice.Gateway.Billing.Alerts;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Lattice.Gateway.Tests.Hosting;

/// <summary>
/// Three gateway nodes on one SQLite file and one Redis (<c>Lattice:Redis</c>): rate limits, budgets, idempotency keys and
/// failed-authentication counts hold across the nodes as they do on one, under requests sent to all of them at once.
/// </summary>
[Trait("Category", "ScaleOut")]
public sealed class SharedCountersTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static StringContent Chat(string model) => new(
        $$"""{"model":"{{model}}","messages":[{"role":"user","content":"one two three"}]}""", Encoding.UTF8, "application/json");

    private static async Task<GatewayCluster> ClusterAsync(Dictionary<string, string?>? settings = null) =>
        await GatewayCluster.StartAsync(await RedisServer.Shared(), settings);

    /// <summary>Sends <paramref name="count"/> requests at once, round-robin over the cluster's nodes; returns their statuses.</summary>
    private static async Task<HttpStatusCode[]> SpreadAsync(GatewayCluster cluster, string key, string model, int count)
    {
        var clients = Enumerable.Range(0, cluster.Count).Select(n => cluster.Client(n, key)).ToArray();
        try
        {
            var responses = await Task.WhenAll(Enumerable.Range(0, count).Select(async i =>
            {
                using var response = await clients[i % clients.Length].PostAsync("v1/chat/completions", Chat(model));
                return response.StatusCode;
            })).WaitAsync(Timeout);
            return responses;
        }
        finally
        {
            foreach (var client in clients)
            {
                client.Dispose();
            }
        }
    }

    [Fact]
    public async Task A_change_on_one_node_wakes_the_others_through_redis_without_waiting_for_a_poll()
    {
        await using var cluster = await ClusterAsync();
        var (_, _, key) = await cluster.WorkspaceWithKeyAsync();
        await cluster.AddNodesAsync(1);
        var poller = cluster.Services(1).GetRequiredService<ChangeFeedPoller>();
        var signal = Assert.IsType<RedisChangeSignal>(cluster.Services(1).GetRequiredService<IChangeSignal>());
        using var onNode1 = cluster.Client(1, key);
        using var timeout = new CancellationTokenSource(Timeout);
        // Node 1's first read (at its start, on its own) is over before the model exists: otherwise it may find the
        // model without any push.
        await poller.ReadsAsync(1, timeout.Token);

        // The clock stands still, so node 1's poll interval never passes: only a push from node 0 makes it read again.
        var model = await cluster.ModelAsync();
        while (true)
        {
            // Counted before the request: the read the push causes may end while the 404 is on its way back.
            var reads = poller.CompletedReads;
            using (var response = await onNode1.PostAsync("v1/chat/completions", Chat(model), timeout.Token))
            {
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    break;
                }
                Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            }
            await poller.ReadsAsync(reads + 1, timeout.Token);
        }
        Assert.True(signal.Received > 0);
    }

    [Fact]
    public async Task A_limit_of_n_requests_a_minute_admits_exactly_n_across_three_nodes()
    {
        await using var cluster = await ClusterAsync();
        var model = await cluster.ModelAsync();
        var (_, _, key) = await cluster.WorkspaceWithKeyAsync(new JsonObject { ["requests_per_minute"] = 7 });
        await cluster.AddNodesAsync(2);

        // The clock stands still: no bucket refills while the requests are in flight.
        var statuses = await SpreadAsync(cluster, key, model, 45);
        Assert.Equal(7, statuses.Count(s => s == HttpStatusCode.OK));
        Assert.Equal(38, statuses.Count(s => s == HttpStatusCode.TooManyRequests));

        // Every node sees the same empty bucket, and the same refill.
        for (var node = 0; node < 3; node++)
        {
            using var client = cluster.Client(node, key);
            using var refused = await client.PostAsync("v1/chat/completions", Chat(model));
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.Equal("0", refused.Headers.GetValues("x-ratelimit-remaining-requests").Single());
        }
        // A seventh of a minute (and a little: the clock counts in ticks) refills one request, seen by every node.
        cluster.Time.Advance(TimeSpan.FromSeconds(9));
        using (var client = cluster.Client(2, key))
        using (var again = await client.PostAsync("v1/chat/completions", Chat(model)))
        {
            Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        }
        using (var client = cluster.Client(1, key))
        using (var refusedAgain = await client.PostAsync("v1/chat/completions", Chat(model)))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refusedAgain.StatusCode);
        }
    }

    [Fact]
    public async Task A_budget_under_concurrent_requests_on_every_node_is_never_overspent()
    {
        await using var cluster = await ClusterAsync();
        var model = await cluster.ModelAsync(new JsonObject { ["per_request"] = 0.001 });
        var (ws, keyId, key) = await cluster.WorkspaceWithKeyAsync();
        var budgetId = await BudgetAsync(cluster, ws, keyId, "0.01");
        await cluster.AddNodesAsync(2);

        var statuses = await SpreadAsync(cluster, key, model, 60);
        Assert.Equal(10, statuses.Count(s => s == HttpStatusCode.OK));
        Assert.Equal(50, statuses.Count(s => s == HttpStatusCode.TooManyRequests));

        // The ledger, written by three nodes, holds exactly the budget; every node reports it spent and nothing reserved.
        Assert.Equal(10 * 1_000_000_000L, await LedgerCostAsync(cluster, keyId));
        for (var node = 0; node < 3; node++)
        {
            var budget = await GetBudgetAsync(cluster, node, budgetId);
            Assert.Equal(("0.01", "0"), (budget["spent_usd"]!.GetValue<string>(), budget["reserved_usd"]!.GetValue<string>()));
        }
    }

    [Fact]
    public async Task An_idempotent_retry_on_another_node_replays_the_answer_and_is_charged_once()
    {
        await using var cluster = await ClusterAsync();
        var model = await cluster.ModelAsync(new JsonObject { ["per_request"] = 0.001 });
        var (ws, keyId, key) = await cluster.WorkspaceWithKeyAsync();
        var budgetId = await BudgetAsync(cluster, ws, keyId, "1");
        await cluster.AddNodesAsync(2);

        var idempotencyKey = "retry-" + Guid.NewGuid().ToString("N");
        var bodies = new List<byte[]>();
        var replayed = new List<bool>();
        for (var node = 0; node < 3; node++)
        {
            using var client = cluster.Client(node, key);
            using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = Chat(model) };
            request.Headers.Add("Idempotency-Key", idempotencyKey);
            using var response = await client.SendAsync(request).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            bodies.Add(await response.Content.ReadAsByteArrayAsync());
            replayed.Add(response.Headers.TryGetValues("idempotent-replayed", out var values) && values.Single() == "true");
        }
        Assert.Equal([false, true, true], replayed);
        Assert.Equal(bodies[0], bodies[1]);
        Assert.Equal(bodies[0], bodies[2]);

        Assert.Equal(1_000_000_000L, await LedgerCostAsync(cluster, keyId));
        var budget = await GetBudgetAsync(cluster, 2, budgetId);
        Assert.Equal("0.001", budget["spent_usd"]!.GetValue<string>());
    }

    [Fact]
    public async Task Failed_authentication_counts_attempts_made_on_any_node()
    {
        await using var cluster = await ClusterAsync(new() { ["Lattice:FailedAuthPerMinute"] = "4" });
        var (_, _, key) = await cluster.WorkspaceWithKeyAsync();
        await cluster.AddNodesAsync(2);

        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 6; i++)
        {
            using var client = cluster.Client(i % 3, "sk-lattice-not-a-key-" + i);
            using var response = await client.GetAsync("v1/models");
            statuses.Add(response.StatusCode);
        }
        // Four failures spread over three nodes use up the source's minute; the fifth and sixth are refused wherever they land.
        Assert.Equal([HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized,
            HttpStatusCode.TooManyRequests, HttpStatusCode.TooManyRequests], statuses);

        // A valid key from the same address still works on every node.
        for (var node = 0; node < 3; node++)
        {
            using var client = cluster.Client(node, key);
            using var response = await client.GetAsync("v1/models");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        // The next minute starts empty on every node.
        cluster.Time.Advance(TimeSpan.FromMinutes(1));
        using (var client = cluster.Client(1, "sk-lattice-not-a-key-again"))
        using (var response = await client.GetAsync("v1/models"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        }
    }

    [Fact]
    public async Task With_redis_down_counted_requests_get_503_in_their_surfaces_shape_and_flow_again_once_it_is_back()
    {
        var redis = await RedisServer.StartAsync();
        await using var cluster = await GatewayCluster.StartAsync(redis);
        var model = await cluster.ModelAsync();
        var claude = await cluster.ModelAsync(anthropic: true);
        var (_, _, limited) = await cluster.WorkspaceWithKeyAsync(new JsonObject { ["requests_per_minute"] = 100 });
        var (_, _, unlimited) = await cluster.WorkspaceWithKeyAsync();
        using var client = cluster.Client(0, limited);
        using (var before = await client.PostAsync("v1/chat/completions", Chat(model)))
        {
            Assert.Equal(HttpStatusCode.OK, before.StatusCode);
        }

        await redis.DisposeAsync();

        // A rate-limited request (OpenAI surface): refused before anything runs, never a 500 or a hang.
        using (var refused = await client.PostAsync("v1/chat/completions", Chat(model)).WaitAsync(Timeout))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            var error = (await refused.Content.ReadFromJsonAsync<JsonObject>())!["error"]!;
            Assert.Equal(("counters_unavailable", "server_error"), (error["code"]!.GetValue<string>(), error["type"]!.GetValue<string>()));
            Assert.StartsWith("The gateway cannot reach the store of its shared counters", error["message"]!.GetValue<string>());
        }
        // The same on the Anthropic surface, in Anthropic's error shape.
        using (var anthropic = cluster.Client(0, null))
        {
            anthropic.DefaultRequestHeaders.Add("x-api-key", limited);
            anthropic.DefaultRequestHeaders.Add("anthropic-version", "2023-06-01");
            using var refused = await anthropic.PostAsync("v1/messages", new StringContent(
                $$"""{"model":"{{claude}}","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}""", Encoding.UTF8, "application/json")).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            var body = (await refused.Content.ReadFromJsonAsync<JsonObject>())!;
            Assert.Equal("error", body["type"]!.GetValue<string>());
            Assert.Equal("overloaded_error", body["error"]!["type"]!.GetValue<string>());
            Assert.StartsWith("The gateway cannot reach the store of its shared counters", body["error"]!["message"]!.GetValue<string>());
        }
        // An idempotent request cannot tell a retry from a first try without its key's store: not run either.
        using (var free = cluster.Client(0, unlimited))
        {
            await AssertIdempotentRequestRefusedAsync(free, model);

            // A request no counter applies to still runs.
            using var served = await free.PostAsync("v1/chat/completions", Chat(model)).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.OK, served.StatusCode);
        }
        // A failed authentication cannot be counted: refused with 503, not answered as an ordinary 401.
        using (var guess = cluster.Client(0, "sk-lattice-a-guess"))
        using (var refused = await guess.GetAsync("v1/models").WaitAsync(Timeout))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.Equal("counters_unavailable", (await refused.Content.ReadFromJsonAsync<JsonObject>())!["error"]!["code"]!.GetValue<string>());
        }

        // Redis restarts (empty: nothing was saved) on the same address; the node reconnects by itself and counts again.
        await using var restarted = await RedisServer.StartAsync(redis.Port);
        await cluster.Services(0).GetRequiredService<RedisStore>().WhenConnectedAsync(CancellationToken.None).WaitAsync(Timeout);
        using (var after = await client.PostAsync("v1/chat/completions", Chat(model)).WaitAsync(Timeout))
        {
            Assert.Equal(HttpStatusCode.OK, after.StatusCode);
            Assert.Equal("99", after.Headers.GetValues("x-ratelimit-remaining-requests").Single());
        }
    }

    [Fact]
    public async Task With_redis_down_and_failing_open_requests_are_served_uncounted_billed_and_failed_authentication_is_counted_per_node()
    {
        var redis = await RedisServer.StartAsync();
        await using var cluster = await GatewayCluster.StartAsync(redis, new()
        {
            ["Lattice:RedisWhenDown"] = "open",
            ["Lattice:FailedAuthPerMinute"] = "2",
        });
        var model = await cluster.ModelAsync(new JsonObject { ["per_request"] = 0.001 });
        var (ws, keyId, limited) = await cluster.WorkspaceWithKeyAsync(new JsonObject { ["requests_per_minute"] = 100 });
        var budgetId = await BudgetAsync(cluster, ws, keyId, "1");
        var (_, _, unlimited) = await cluster.WorkspaceWithKeyAsync();
        await cluster.AddNodesAsync(1);
        var store = cluster.Services(0).GetRequiredService<RedisStore>();
        using var client = cluster.Client(0, limited);
        using (var before = await client.PostAsync("v1/chat/completions", Chat(model)))
        {
            Assert.Equal(HttpStatusCode.OK, before.StatusCode);
            Assert.Equal("99", before.Headers.GetValues("x-ratelimit-remaining-requests").Single());
        }

        await redis.DisposeAsync();

        // A rate-limited caller with a budget is served, uncounted: no limit can be reported, so none is.
        for (var i = 0; i < 3; i++)
        {
            using var served = await client.PostAsync("v1/chat/completions", Chat(model)).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.OK, served.StatusCode);
            Assert.False(served.Headers.Contains("x-ratelimit-remaining-requests"));
        }
        // An idempotent request is still refused: running it could run the same work twice.
        using (var free = cluster.Client(0, unlimited))
        {
            await AssertIdempotentRequestRefusedAsync(free, model);
        }
        // Failed authentication is counted on each node alone: two failures use up node 0's minute, node 1 still has its own.
        var guesses = new List<HttpStatusCode>();
        foreach (var node in new[] { 0, 0, 0, 1 })
        {
            using var guess = cluster.Client(node, "sk-lattice-a-guess-" + guesses.Count);
            using var response = await guess.GetAsync("v1/models").WaitAsync(Timeout);
            guesses.Add(response.StatusCode);
        }
        Assert.Equal([HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized, HttpStatusCode.TooManyRequests, HttpStatusCode.Unauthorized], guesses);
        // One warning for the outage, however many requests it let through.
        Assert.Equal(1, store.OutagesWarned);
        Assert.Equal(6, store.Uncounted);

        // Redis restarts empty; counting resumes, and the budget, rebuilt from the ledger, holds what was served uncounted.
        await using var restarted = await RedisServer.StartAsync(redis.Port);
        await store.WhenConnectedAsync(CancellationToken.None).WaitAsync(Timeout);
        using (var after = await client.PostAsync("v1/chat/completions", Chat(model)).WaitAsync(Timeout))
        {
            Assert.Equal(HttpStatusCode.OK, after.StatusCode);
            Assert.Equal("99", after.Headers.GetValues("x-ratelimit-remaining-requests").Single());
        }
        var budget = await GetBudgetAsync(cluster, 0, budgetId);
        Assert.Equal(("0.005", "0"), (budget["spent_usd"]!.GetValue<string>(), budget["reserved_usd"]!.GetValue<string>()));
        Assert.Equal(5 * 1_000_000_000L, await LedgerCostAsync(cluster, keyId));
        Assert.Equal(1, store.OutagesWarned);
    }

    /// <summary>A request with an <c>Idempotency-Key</c> while Redis is down: 503 <c>counters_unavailable</c>, whatever the mode.</summary>
    [Fact]
    public async Task A_caller_with_rate_limits_and_a_budget_is_asked_both_at_once_and_a_rate_limited_request_reserves_nothing()
    {
        await using var cluster = await ClusterAsync();
        var model = await cluster.ModelAsync(new JsonObject { ["per_request"] = 0.001 });
        var (ws, keyId, key) = await cluster.WorkspaceWithKeyAsync(new JsonObject { ["requests_per_minute"] = 3 });
        var budgetId = await BudgetAsync(cluster, ws, keyId, "1");
        await cluster.AddNodesAsync(2);

        // The clock stands still: 3 requests are admitted; the other 9 were refused by the rate limit after their budget
        // reservation was taken at the same moment, and each gave it back.
        var statuses = await SpreadAsync(cluster, key, model, 12);
        Assert.Equal(3, statuses.Count(s => s == HttpStatusCode.OK));
        Assert.Equal(9, statuses.Count(s => s == HttpStatusCode.TooManyRequests));
        Assert.Equal(3 * 1_000_000_000L, await LedgerCostAsync(cluster, keyId));
        for (var node = 0; node < 3; node++)
        {
            var budget = await GetBudgetAsync(cluster, node, budgetId);
            Assert.Equal(("0.003", "0"), (budget["spent_usd"]!.GetValue<string>(), budget["reserved_usd"]!.GetValue<string>()));
        }
    }

    [Fact]
    public async Task Far_from_its_limits_a_busy_key_is_admitted_from_node_local_allotments_at_a_round_trip_per_many_requests()
    {
        await using var cluster = await ClusterAsync();
        var model = await cluster.ModelAsync(new JsonObject { ["per_request"] = 0.001 });
        const int rpm = 1_000_000;
        var (ws, keyId, key) = await cluster.WorkspaceWithKeyAsync(new JsonObject
        {
            ["requests_per_minute"] = rpm, ["tokens_per_minute"] = 10_000_000_000, ["max_concurrent"] = 10_000,
        });
        var budgetId = await BudgetAsync(cluster, ws, keyId, "1000");
        var services = cluster.Services(0);
        var store = services.GetRequiredService<RedisStore>();
        var limits = Assert.IsType<AllottedRateLimitCounters>(services.GetRequiredService<IRateLimitCounters>());
        var budgets = Assert.IsType<AllottedBudgetCounters>(services.GetRequiredService<IBudgetCounters>());
        using var client = cluster.Client(0, key);

        // The clock stands still: no bucket refills, so what the node reports is exactly the limit less what it admitted.
        // The first requests take the exact path (a few requests never take an allotment); then the node asks for one.
        async Task SendAsync(int n)
        {
            using var response = await client.PostAsync("v1/chat/completions", Chat(model)).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal((rpm - n).ToString(System.Globalization.CultureInfo.InvariantCulture), response.Headers.GetValues("x-ratelimit-remaining-requests").Single());
        }
        for (var n = 1; n <= Allotments.WarmUp; n++)
        {
            await SendAsync(n);
        }
        await Task.WhenAll(limits.Syncs.QuietAsync(), budgets.Syncs.QuietAsync()).WaitAsync(Timeout);

        // Admitted from the allotments, topped up in the background: far fewer round trips than requests (the exact
        // path costs two per request at least: admission and settlement).
        const int requests = 256;
        var before = store.Evaluations;
        for (var n = Allotments.WarmUp + 1; n <= Allotments.WarmUp + requests; n++)
        {
            await SendAsync(n);
        }
        await Task.WhenAll(limits.Syncs.QuietAsync(), budgets.Syncs.QuietAsync()).WaitAsync(Timeout);
        var trips = store.Evaluations - before;
        Assert.True(trips <= requests / 8, $"{trips} round trips to Redis for {requests} requests");

        // The budget read on this node counts what it settled; what its allotment still holds shows as reserved.
        const int served = Allotments.WarmUp + requests;
        var during = await GetBudgetAsync(cluster, 0, budgetId);
        Assert.Equal("0.264", during["spent_usd"]!.GetValue<string>());
        Assert.NotEqual("0", during["reserved_usd"]!.GetValue<string>());

        // Idle, the allotments are given back: nothing reserved, the spend exactly the ledger's.
        cluster.Time.Advance(Allotments.Idle + Allotments.Tick);
        await Task.WhenAll(limits.Syncs.QuietAsync(), budgets.Syncs.QuietAsync()).WaitAsync(Timeout);
        var after = await GetBudgetAsync(cluster, 0, budgetId);
        Assert.Equal(("0.264", "0"), (after["spent_usd"]!.GetValue<string>(), after["reserved_usd"]!.GetValue<string>()));
        Assert.Equal(served * 1_000_000_000L, await LedgerCostAsync(cluster, keyId));
    }

    [Fact]
    public async Task Near_its_amount_a_busy_budget_takes_the_exact_path_and_is_never_overspent_across_three_nodes()
    {
        await using var cluster = await ClusterAsync();
        var model = await cluster.ModelAsync(new JsonObject { ["per_request"] = 0.001 });
        var (ws, keyId, key) = await cluster.WorkspaceWithKeyAsync();
        // Room for 400 requests: nodes take allotments at first, and go back to the exact path as the room runs low.
        var budgetId = await BudgetAsync(cluster, ws, keyId, "0.2");
        await cluster.AddNodesAsync(2);
        var budgets = Enumerable.Range(0, 3).Select(n => Assert.IsType<AllottedBudgetCounters>(cluster.Services(n).GetRequiredService<IBudgetCounters>())).ToArray();
        async Task QuietAsync()
        {
            foreach (var b in budgets)
            {
                await b.Syncs.QuietAsync().WaitAsync(Timeout);
            }
        }

        // Rounds of requests on every node at once, each after the allotments asked for in the last have come.
        var ok = 0;
        for (var round = 0; round < 12; round++)
        {
            var statuses = await SpreadAsync(cluster, key, model, 30);
            Assert.Equal(30, statuses.Count(s => s is HttpStatusCode.OK or HttpStatusCode.TooManyRequests));
            ok += statuses.Count(s => s == HttpStatusCode.OK);
            await QuietAsync();
            if (round == 0)
            {
                // Busy on every node and far enough from the amount: the nodes now hold allotments, reserved in Redis.
                Assert.NotEqual("0", (await GetBudgetAsync(cluster, 0, budgetId))["reserved_usd"]!.GetValue<string>());
            }
        }
        // Never overspent. Room a node still held when another was refused is at most what it keeps before it asks
        // again (half an allotment): refused early by that much at most, and given back once the node is idle.
        Assert.InRange(ok, 200 - 3 * Allotments.Target / 2, 200);
        cluster.Time.Advance(Allotments.Idle + Allotments.Tick);
        await QuietAsync();
        Assert.Equal(ok * 1_000_000_000L, await LedgerCostAsync(cluster, keyId));
        var budget = await GetBudgetAsync(cluster, 0, budgetId);
        Assert.Equal((CostCalculator.FormatUsd(ok * 1_000_000_000L), "0"), (budget["spent_usd"]!.GetValue<string>(), budget["reserved_usd"]!.GetValue<string>()));
    }

    [Fact]
    public async Task A_budget_allotment_held_by_a_node_that_died_lapses_with_its_lease_and_is_counted_as_spent()
    {
        await using var cluster = await ClusterAsync();
        var model = await cluster.ModelAsync(new JsonObject { ["per_request"] = 0.001 });
        var (ws, keyId, key) = await cluster.WorkspaceWithKeyAsync();
        var budgetId = await BudgetAsync(cluster, ws, keyId, "1000");
        await cluster.AddNodesAsync(1);
        var budgets = Assert.IsType<AllottedBudgetCounters>(cluster.Services(1).GetRequiredService<IBudgetCounters>());
        using (var client = cluster.Client(1, key))
        {
            for (var i = 0; i < Allotments.WarmUp + 4; i++)
            {
                using var response = await client.PostAsync("v1/chat/completions", Chat(model)).WaitAsync(Timeout);
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            }
        }
        await budgets.Syncs.QuietAsync().WaitAsync(Timeout);
        // Node 1 holds an allotment: reserved in Redis, shown as reserved on every node.
        var held = await GetBudgetAsync(cluster, 1, budgetId);
        static long Pico(JsonNode? usd) => (long)(decimal.Parse(usd!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture) * 1_000_000_000_000m);
        var spent = Pico(held["spent_usd"]);
        var reserved = Pico(held["reserved_usd"]);
        Assert.True(reserved > 0);

        await cluster.KillAsync(1);
        // Until its lease lapses the allotment stays reserved; then the next script to touch the line counts all of it
        // as spent (the node may have spent any of it): never given back to be spent twice.
        cluster.Time.Advance(Allotments.Lease + TimeSpan.FromSeconds(1));
        var lapsed = await GetBudgetAsync(cluster, 0, budgetId);
        Assert.Equal((CostCalculator.FormatUsd(spent + reserved), "0"), (lapsed["spent_usd"]!.GetValue<string>(), lapsed["reserved_usd"]!.GetValue<string>()));
    }

    [Fact]
    public async Task Slots_a_node_held_as_an_allotment_when_it_died_come_back_to_the_other_nodes_when_its_lease_lapses()
    {
        await using var nodes = await CounterNodes.StartAsync();
        var (a, b) = (nodes.A, nodes.B);
        const int max = 512;
        var subject = new LimitSubject("key:died", new Limits { MaxConcurrent = max });
        await a.WarmUpAsync(subject);
        // Node A holds slots as an allotment: counted in flight in Redis, under its lease.
        var held = await nodes.InFlightAsync(subject);
        Assert.InRange(held, Allotments.Minimum, Allotments.Target);

        // It dies: it renews nothing and gives nothing back. Until its lease lapses the slots stay counted: node B gets
        // exactly the rest at once.
        await a.KillAsync();
        nodes.Time.Advance(Allotments.Lease - TimeSpan.FromSeconds(1));
        await a.Limits.Syncs.QuietAsync().WaitAsync(Timeout);
        Assert.Equal(max - held, await b.FillAsync(subject));

        // Once it has lapsed, the next script that touches the subject frees them: B gets all of them.
        nodes.Time.Advance(TimeSpan.FromSeconds(2));
        await a.Limits.Syncs.QuietAsync().WaitAsync(Timeout);
        Assert.Equal(max, await b.FillAsync(subject));
        Assert.Equal(0, await nodes.InFlightAsync(subject));
    }

    [Fact]
    public async Task A_limit_lowered_while_a_node_holds_an_allotment_of_it_is_honoured_exactly_across_nodes()
    {
        await using var nodes = await CounterNodes.StartAsync();
        var a = nodes.A;
        var before = new LimitSubject("key:changed", new Limits { RequestsPerMinute = 4096, MaxConcurrent = 4096 });
        await a.WarmUpAsync(before);
        // Node A holds requests taken out of the bucket and slots, under the old limits.
        Assert.Equal(Allotments.Target, 4096 - Allotments.WarmUp - await nodes.BucketRequestsAsync(before));
        Assert.True(await nodes.InFlightAsync(before) >= Allotments.Minimum);

        // Lowered to 100 a minute. The clock stands still: across both nodes exactly 100 are admitted, whatever A held.
        var after = before with { Limits = new Limits { RequestsPerMinute = 100, MaxConcurrent = 4096 } };
        Assert.Equal(100, await nodes.AdmitAlternatelyAsync(after));

        // The next tick gives back what A held under the old limits (its slots; the requests it held are dropped, not
        // added to a bucket already capped at the new limit). A second later the bucket has refilled 100/60 of a
        // request: exactly one more is admitted, not what A held.
        nodes.Time.Advance(Allotments.Tick);
        await a.Limits.Syncs.QuietAsync().WaitAsync(Timeout);
        Assert.Equal(1, await nodes.AdmitAlternatelyAsync(after));
        Assert.Equal(0, await nodes.InFlightAsync(after));
    }

    [Fact]
    public async Task A_budget_lowered_while_a_node_holds_room_of_it_is_honoured_exactly_across_nodes()
    {
        await using var nodes = await CounterNodes.StartAsync();
        var a = nodes.A;
        const long unit = CounterNodes.Unit;
        var line = await nodes.BudgetLineAsync(amount: 1000 * unit, spent: 0);
        await a.WarmUpAsync(line);
        Assert.True((await nodes.StatusAsync(line)).ReservedPicoUsd > 0);

        // Lowered to 100 requests' worth, 8 of them spent. Node A's next request takes the exact path under the new
        // amount; what it held under the old one is reserved from no more, and the next tick gives it back.
        var lowered = line with { Budget = line.Budget with { AmountPicoUsd = 100 * unit } };
        var first = await a.Budgets.TryReserveAsync([lowered], unit, nodes.Time.GetUtcNow(), CancellationToken.None);
        Assert.True(first.Admitted);
        await a.Budgets.SettleAsync(first, unit);
        nodes.Time.Advance(Allotments.Tick);
        await a.Budgets.Syncs.QuietAsync().WaitAsync(Timeout);

        // Exactly the rest of the new amount is admitted across both nodes, and its thresholds are raised once each.
        Assert.Equal(100 - Allotments.WarmUp - 1, await nodes.SpendAlternatelyAsync(lowered));
        var status = await nodes.StatusAsync(lowered);
        Assert.Equal((100 * unit, 0L), (status.SpentPicoUsd, status.ReservedPicoUsd));
        Assert.Equal(new[] { 50, 80, 100 }, nodes.Alerts.Raised.Select(alert => alert.Threshold));
    }

    [Fact]
    public async Task A_node_that_stops_gracefully_gives_back_its_allotments_and_another_node_can_use_the_whole_room_at_once()
    {
        await using var nodes = await CounterNodes.StartAsync();
        var (a, b) = (nodes.A, nodes.B);
        var subject = new LimitSubject("key:stopped", new Limits { RequestsPerMinute = 2048, MaxConcurrent = 1024 });
        await a.WarmUpAsync(subject);
        var line = await nodes.BudgetLineAsync(amount: 1000 * CounterNodes.Unit, spent: 0);
        await a.WarmUpAsync(line);
        Assert.True(await nodes.InFlightAsync(subject) > 0);
        Assert.Equal(Allotments.Target, 2048 - Allotments.WarmUp - await nodes.BucketRequestsAsync(subject));
        Assert.True((await nodes.StatusAsync(line)).ReservedPicoUsd > 0);

        // A graceful stop (requests have drained): everything A held goes back in the same moment, the clock standing still.
        await a.DisposeAsync();
        var status = await nodes.StatusAsync(line);
        Assert.Equal((Allotments.WarmUp * CounterNodes.Unit, 0L), (status.SpentPicoUsd, status.ReservedPicoUsd));
        var first = await b.Exact.TryAcquireAsync([subject], 0, CancellationToken.None);
        Assert.Equal(2048 - Allotments.WarmUp - 1, first.Report.RemainingRequests);
        await b.Exact.ReleaseAsync([subject], 0, 0);
        Assert.Equal(1024, await b.FillAsync(subject));
    }

    [Fact]
    public async Task A_budget_amount_changed_and_changed_back_gets_a_fresh_allotment_not_the_one_it_replaced()
    {
        await using var nodes = await CounterNodes.StartAsync();
        var a = nodes.A;
        const long unit = CounterNodes.Unit;
        var line = await nodes.BudgetLineAsync(amount: 1000 * unit, spent: 0);
        await a.WarmUpAsync(line);
        await a.SpendAsync(line, fromAllotment: true);

        // Raised: the next request takes the exact path under the new amount, and the next tick gives the old room back.
        var raised = line with { Budget = line.Budget with { AmountPicoUsd = 2000 * unit } };
        await a.SpendAsync(raised, fromAllotment: false);
        nodes.Time.Advance(Allotments.Tick);
        await a.Budgets.Syncs.QuietAsync().WaitAsync(Timeout);

        // Set back: the line warms up and takes an allotment as under any new amount. The one replaced at the first change
        // is not taken up again: it is reserved from no more, and would keep the line on the exact path (a round trip to
        // Redis per request, asking again only every 64 of them).
        await a.WarmUpAsync(line);
        await a.SpendAsync(line, fromAllotment: true);

        // Idle, everything is given back: the spend is exactly what was settled, nothing stays reserved.
        nodes.Time.Advance(Allotments.Idle + Allotments.Tick);
        await a.Budgets.Syncs.QuietAsync().WaitAsync(Timeout);
        var status = await nodes.StatusAsync(line);
        Assert.Equal(((2 * Allotments.WarmUp + 3) * unit, 0L), (status.SpentPicoUsd, status.ReservedPicoUsd));
    }

    [Fact]
    public async Task A_top_up_refused_while_a_node_stops_gives_back_the_spend_settled_meanwhile_at_once()
    {
        // Writes to Redis are held below, so on a Redis of this test's own.
        await using var server = await RedisServer.StartAsync();
        await using var nodes = await CounterNodes.StartAsync(server);
        var a = nodes.A;
        const long unit = CounterNodes.Unit;
        var line = await nodes.BudgetLineAsync(amount: 1000 * unit, spent: 0);
        await a.WarmUpAsync(line);
        var room = (await nodes.StatusAsync(line)).ReservedPicoUsd / unit;
        Assert.InRange(room, Allotments.Target / 2, Allotments.Target);
        // Other nodes spend the line down to under 128 requests' worth of room: A's next top-up is granted nothing.
        const long elsewhere = 850;
        await nodes.SpendElsewhereAsync(line, elsewhere * unit);

        // A spends the whole of its room. Halfway it asks for a top-up, which stays under way (Redis holds it) while the
        // rest is reserved and settled in memory; then A stops gracefully.
        await nodes.HoldWritesAsync();
        for (var i = 0; i < room; i++)
        {
            await a.SpendAsync(line, fromAllotment: true);
        }
        var stop = a.Budgets.DisposeAsync().AsTask();
        Assert.False(stop.IsCompleted);
        await nodes.ReleaseWritesAsync();
        await stop.WaitAsync(Timeout);

        // The refused top-up left no room, only spend settled while it was under way: that goes to Redis before the stop
        // ends, not when the lease lapses (the clock stands still).
        var status = await nodes.StatusAsync(line);
        Assert.Equal(((Allotments.WarmUp + elsewhere + room) * unit, 0L), (status.SpentPicoUsd, status.ReservedPicoUsd));
    }

    [Fact]
    public async Task A_rate_allotment_forgotten_as_idle_while_its_subjects_exact_request_is_under_way_asks_for_nothing()
    {
        // Writes to Redis are held below, so on a Redis of this test's own.
        await using var server = await RedisServer.StartAsync();
        await using var nodes = await CounterNodes.StartAsync(server);
        var a = nodes.A;
        var subject = new LimitSubject("key:forgotten", new Limits { MaxConcurrent = 512 });
        // All but the last exact request of the warm-up: the next admitted one asks for an allotment.
        for (var i = 0; i < Allotments.WarmUp - 1; i++)
        {
            var early = await a.Limits.TryAcquireAsync([subject], 0, CancellationToken.None);
            Assert.Null(early.Hold);
            await a.Limits.ReleaseAsync([subject], 0, 0, executed: true, early.Hold);
        }

        // That request's round trip stays under way (Redis holds it) while the subject sits idle past Allotments.Idle:
        // a tick forgets this node's empty allotment of it.
        await nodes.HoldWritesAsync();
        var last = a.Limits.TryAcquireAsync([subject], 0, CancellationToken.None).AsTask();
        nodes.Time.Advance(Allotments.Idle + Allotments.Tick);
        Assert.False(last.IsCompleted);
        await nodes.ReleaseWritesAsync();
        var decision = await last.WaitAsync(Timeout);
        Assert.True(decision.Admitted);
        await a.Limits.ReleaseAsync([subject], 0, 0, executed: true, decision.Hold);
        await a.Limits.Syncs.QuietAsync().WaitAsync(Timeout);

        // It asked for nothing for the allotment that was forgotten: no slots are left held in Redis under a lease that
        // nothing on this node renews or gives back (other nodes would be short of them until it lapsed, a minute on).
        Assert.Equal(0, await nodes.InFlightAsync(subject));
        nodes.Time.Advance(Allotments.Idle + Allotments.Tick);
        await a.Limits.Syncs.QuietAsync().WaitAsync(Timeout);
        Assert.Equal(512, await nodes.B.FillAsync(subject));
    }

    [Fact]
    public async Task Budget_room_that_lapses_as_spent_raises_the_thresholds_it_crosses_with_the_spend_the_status_shows()
    {
        await using var nodes = await CounterNodes.StartAsync();
        var (a, b) = (nodes.A, nodes.B);
        // 48 % spent already (what the counter started from the ledger); node A spends 8 requests' worth on the exact path
        // and then holds room as an allotment: 48.8 % spent, no threshold crossed yet.
        const long unit = CounterNodes.Unit;
        var line = await nodes.BudgetLineAsync(amount: 1000 * unit, spent: 480 * unit);
        await a.WarmUpAsync(line);
        var held = (await nodes.StatusAsync(line)).ReservedPicoUsd;
        Assert.InRange(held, 20 * unit, Allotments.Target * unit);
        Assert.Empty(nodes.Alerts.Raised);

        // A dies; once its lease lapses its room is counted as spent, crossing 50 %: the alert is raised then, once,
        // with the spend the budget's status shows (a threshold passed by a lapse would otherwise never be raised).
        await a.KillAsync();
        nodes.Time.Advance(Allotments.Lease + TimeSpan.FromSeconds(1));
        await a.Budgets.Syncs.QuietAsync().WaitAsync(Timeout);
        var status = await nodes.StatusAsync(line);
        Assert.Equal((488 * unit + held, 0L), (status.SpentPicoUsd, status.ReservedPicoUsd));
        var alert = Assert.Single(nodes.Alerts.Raised);
        Assert.Equal((line.Budget.Id, 50, 488 * unit + held), (alert.BudgetId, alert.Threshold, alert.SpentPicoUsd));

        // Later spend does not raise it again; the next threshold is raised when real spend reaches it.
        var reservation = await b.Budgets.TryReserveAsync([line], unit, nodes.Time.GetUtcNow(), CancellationToken.None);
        await b.Budgets.SettleAsync(reservation, unit);
        Assert.Single(nodes.Alerts.Raised);
    }

    /// <summary>
    /// Two nodes' counters on the shared Redis without gateways around them — the allotting ones over the exact ones, as
    /// <c>Lattice:Redis</c> registers them — on one fake clock that starts mid-month, under a key prefix of their own.
    /// </summary>
    private sealed class CounterNodes : IAsyncDisposable
    {
        /// <summary>One request's worst-case cost in the budget tests: $0.001.</summary>
        public const long Unit = 1_000_000_000;

        private readonly string _prefix = "n" + Guid.NewGuid().ToString("N") + ":";
        private StackExchange.Redis.ConnectionMultiplexer _redis = null!;
        private bool _ownRedis;

        public FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 6, 15, 12, 0, 0, TimeSpan.Zero));
        public AlertSink Alerts { get; } = new();
        public CounterNode A { get; private set; } = null!;
        public CounterNode B { get; private set; } = null!;

        /// <summary>On <paramref name="server"/>, the shared Redis when null.</summary>
        public static async Task<CounterNodes> StartAsync(RedisServer? server = null)
        {
            var own = server is not null;
            server ??= await RedisServer.Shared();
            var nodes = new CounterNodes
            {
                _ownRedis = own,
                // Admin for CLIENT PAUSE (HoldWritesAsync).
                _redis = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(server.Configuration + ",allowAdmin=true"),
            };
            nodes.A = await CounterNode.StartAsync(server, nodes._prefix, nodes.Time, nodes.Alerts);
            nodes.B = await CounterNode.StartAsync(server, nodes._prefix, nodes.Time, nodes.Alerts);
            return nodes;
        }

        /// <summary>Requests admitted (each over at once) until both nodes refuse, taking turns: A's allotting counters, B's exact ones.</summary>
        public async Task<int> AdmitAlternatelyAsync(LimitSubject subject)
        {
            var admitted = 0;
            for (int turn = 0, refusedInARow = 0; refusedInARow < 2; turn++)
            {
                IRateLimitCounters counters = turn % 2 == 0 ? A.Limits : B.Exact;
                var decision = await counters.TryAcquireAsync([subject], 0, CancellationToken.None);
                if (!decision.Admitted)
                {
                    Assert.Equal(RateRefusal.Requests, decision.Refusal);
                    refusedInARow++;
                    continue;
                }
                refusedInARow = 0;
                admitted++;
                await counters.ReleaseAsync([subject], 0, 0, executed: true, decision.Hold);
            }
            return admitted;
        }

        /// <summary><paramref name="line"/>'s budget as node B reads it.</summary>
        public async Task<BudgetStatus> StatusAsync(BudgetLine line) =>
            await B.Budgets.StatusAsync(line.Budget, line.UserId, Time.GetUtcNow(), CancellationToken.None);

        /// <summary>Requests costing <see cref="Unit"/> reserved and settled until both nodes refuse, taking turns.</summary>
        public async Task<int> SpendAlternatelyAsync(BudgetLine line)
        {
            var admitted = 0;
            for (int turn = 0, refusedInARow = 0; refusedInARow < 2; turn++)
            {
                var counters = turn % 2 == 0 ? A.Budgets : B.Budgets;
                var reservation = await counters.TryReserveAsync([line], Unit, Time.GetUtcNow(), CancellationToken.None);
                if (!reservation.Admitted)
                {
                    refusedInARow++;
                    continue;
                }
                refusedInARow = 0;
                admitted++;
                await counters.SettleAsync(reservation, Unit);
            }
            return admitted;
        }

        /// <summary>A line's counter as a node starts it from the ledger, with <paramref name="spent"/> spent this month.</summary>
        public async Task<BudgetLine> BudgetLineAsync(long amount, long spent)
        {
            var id = "bud_" + Guid.NewGuid().ToString("N")[..10];
            var line = new BudgetLine(new BudgetPolicy(id, "ws_counters", "key", "key_counters", amount), null);
            var key = BudgetKey(line);
            await _redis.GetDatabase().HashSetAsync(key, [new StackExchange.Redis.HashEntry("s", spent), new("r", 0), new("a", 0)]);
            await _redis.GetDatabase().KeyExpireAsync(key, TimeSpan.FromHours(1));
            return line;
        }

        /// <summary>Spend other nodes settled on <paramref name="line"/> this month, straight into its counter.</summary>
        public async Task SpendElsewhereAsync(BudgetLine line, long picoUsd) =>
            await _redis.GetDatabase().HashIncrementAsync(BudgetKey(line), "s", picoUsd);

        /// <summary>
        /// Holds every write to Redis, scripts included, until <see cref="ReleaseWritesAsync"/> (or 30 s): a round trip
        /// started meanwhile stays under way. Only on a Redis of the test's own, since it holds every client's.
        /// </summary>
        public async Task HoldWritesAsync()
        {
            Assert.True(_ownRedis, "writes are held only on a Redis of the test's own");
            await _redis.GetDatabase().ExecuteAsync("CLIENT", "PAUSE", "30000", "WRITE");
        }

        public async Task ReleaseWritesAsync() => await _redis.GetDatabase().ExecuteAsync("CLIENT", "UNPAUSE");

        private string BudgetKey(BudgetLine line) => string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{_prefix}b:{line.Budget.Id}:{LocalBudgetCounters.PeriodStart(Time.GetUtcNow()).UtcDateTime:yyyy-MM}:{line.UserId}");

        /// <summary>The slots of <paramref name="subject"/> counted in flight in Redis (allotments' included).</summary>
        public async Task<long> InFlightAsync(LimitSubject subject) =>
            (long?)await _redis.GetDatabase().HashGetAsync($"{_prefix}rl:{subject.Key}", "f") ?? 0;

        /// <summary>The requests <paramref name="subject"/>'s shared bucket holds, whole.</summary>
        public async Task<long> BucketRequestsAsync(LimitSubject subject) => (long)Math.Floor(double.Parse(
            (string)(await _redis.GetDatabase().HashGetAsync($"{_prefix}rl:{subject.Key}", "r"))!, System.Globalization.CultureInfo.InvariantCulture));

        public async ValueTask DisposeAsync()
        {
            await A.DisposeAsync();
            await B.DisposeAsync();
            await _redis.DisposeAsync();
        }
    }

    /// <summary>One node's counters: its own connection to Redis (cut to stand in for its death).</summary>
    private sealed class CounterNode : IAsyncDisposable
    {
        private RedisStore _store = null!;
        private TimeProvider _time = null!;
        private int _disposed;

        public RedisRateLimitCounters Exact { get; private set; } = null!;
        public AllottedRateLimitCounters Limits { get; private set; } = null!;
        public AllottedBudgetCounters Budgets { get; private set; } = null!;

        public static async Task<CounterNode> StartAsync(RedisServer server, string prefix, FakeTimeProvider time, IBudgetAlertSink alerts)
        {
            var options = Options.Create(new GatewayOptions { Redis = server.Configuration, RedisKeyPrefix = prefix });
            var store = new RedisStore(options, NullLogger<RedisStore>.Instance);
            await store.StartAsync(CancellationToken.None);
            await store.WhenConnectedAsync(CancellationToken.None).WaitAsync(Timeout);
            var exact = new RedisRateLimitCounters(store, time, options);
            // The budget lines are started by the test (BudgetLineAsync): the ledger a counter starts from is not needed.
            var budgets = new RedisBudgetCounters(store, null!, null!, alerts, time, NullLogger<RedisBudgetCounters>.Instance);
            return new CounterNode
            {
                _store = store,
                _time = time,
                Exact = exact,
                Limits = new AllottedRateLimitCounters(exact, store, time, NullLogger<AllottedRateLimitCounters>.Instance),
                Budgets = new AllottedBudgetCounters(budgets, store, time, NullLogger<AllottedBudgetCounters>.Instance),
            };
        }

        /// <summary>
        /// <see cref="Allotments.WarmUp"/> requests of <paramref name="subject"/> on the exact path, each over at once;
        /// then waits for the allotment the last one asked for.
        /// </summary>
        public async Task WarmUpAsync(LimitSubject subject)
        {
            for (var i = 0; i < Allotments.WarmUp; i++)
            {
                var decision = await Limits.TryAcquireAsync([subject], 0, CancellationToken.None);
                Assert.True(decision.Admitted);
                Assert.Null(decision.Hold);
                await Limits.ReleaseAsync([subject], 0, 0, executed: true, decision.Hold);
            }
            await Limits.Syncs.QuietAsync().WaitAsync(Timeout);
        }

        /// <summary>The same for a budget line: <see cref="Allotments.WarmUp"/> requests costing <see cref="CounterNodes.Unit"/> each.</summary>
        public async Task WarmUpAsync(BudgetLine line)
        {
            for (var i = 0; i < Allotments.WarmUp; i++)
            {
                var reservation = await Budgets.TryReserveAsync([line], CounterNodes.Unit, _time.GetUtcNow(), CancellationToken.None);
                Assert.True(reservation.Admitted);
                Assert.Null(reservation.Hold);
                await Budgets.SettleAsync(reservation, CounterNodes.Unit);
            }
            await Budgets.Syncs.QuietAsync().WaitAsync(Timeout);
        }

        /// <summary>
        /// One request costing <see cref="CounterNodes.Unit"/> of <paramref name="line"/>, reserved and settled: admitted from
        /// this node's allotment, or on the exact path.
        /// </summary>
        public async Task SpendAsync(BudgetLine line, bool fromAllotment)
        {
            var reservation = await Budgets.TryReserveAsync([line], CounterNodes.Unit, _time.GetUtcNow(), CancellationToken.None);
            Assert.True(reservation.Admitted);
            Assert.Equal(fromAllotment, reservation.Hold is not null);
            await Budgets.SettleAsync(reservation, CounterNodes.Unit);
        }

        /// <summary>Takes slots of <paramref name="subject"/> on the exact path until refused; gives them all back; returns how many it got.</summary>
        public async Task<int> FillAsync(LimitSubject subject)
        {
            var taken = 0;
            while (true)
            {
                var decision = await Exact.TryAcquireAsync([subject], 0, CancellationToken.None);
                if (!decision.Admitted)
                {
                    Assert.Equal(RateRefusal.Concurrency, decision.Refusal);
                    break;
                }
                taken++;
            }
            for (var i = 0; i < taken; i++)
            {
                await Exact.ReleaseAsync([subject], 0, 0);
            }
            return taken;
        }

        /// <summary>Stands in for a crash: the connection is cut, so nothing is renewed or given back.</summary>
        public async Task KillAsync() => await _store.DisposeAsync();

        /// <summary>A graceful stop: the allotments are given back, then the connection closes.</summary>
        public async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                return;
            }
            await Limits.DisposeAsync();
            await Budgets.DisposeAsync();
            await _store.DisposeAsync();
        }
    }

    /// <summary>The budget alerts raised, in order.</summary>
    private sealed class AlertSink : IBudgetAlertSink
    {
        private readonly Lock _gate = new();
        private readonly List<BudgetAlert> _raised = [];

        public IReadOnlyList<BudgetAlert> Raised
        {
            get
            {
                lock (_gate)
                {
                    return [.. _raised];
                }
            }
        }

        public void Raise(BudgetAlert alert)
        {
            lock (_gate)
            {
                _raised.Add(alert);
            }
        }
    }

    private static async Task AssertIdempotentRequestRefusedAsync(HttpClient client, string model)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = Chat(model) };
        request.Headers.Add("Idempotency-Key", "while-redis-is-down");
        using var refused = await client.SendAsync(request).WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        Assert.Equal("counters_unavailable", (await refused.Content.ReadFromJsonAsync<JsonObject>())!["error"]!["code"]!.GetValue<string>());
    }

    private static async Task<string> BudgetAsync(GatewayCluster cluster, string workspaceId, string keyId, string amountUsd)
    {
        using var admin = cluster.Client(0, GatewayCluster.AdminKey);
        var budget = await GatewayFixture.PostAsync(admin, $"admin/v1/workspaces/{workspaceId}/budgets",
            new JsonObject { ["scope"] = "key", ["subject_id"] = keyId, ["amount_usd"] = amountUsd });
        return budget["id"]!.GetValue<string>();
    }

    private static async Task<JsonObject> GetBudgetAsync(GatewayCluster cluster, int node, string budgetId)
    {
        using var admin = cluster.Client(node, GatewayCluster.AdminKey);
        return (await admin.GetFromJsonAsync<JsonObject>($"admin/v1/budgets/{budgetId}"))!;
    }

    /// <summary>What the ledger charged the key, once every node has written its queue.</summary>
    private static async Task<long> LedgerCostAsync(GatewayCluster cluster, string keyId)
    {
        for (var node = 0; node < cluster.Count; node++)
        {
            await cluster.Services(node).GetRequiredService<UsageLedger>().FlushAsync().WaitAsync(Timeout);
        }
        await using var scope = cluster.Services(0).CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        return await db.UsageRecords.Where(r => r.KeyId == keyId).SumAsync(r => r.CostPicoUsd);
    }
}
