using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Lattice.Gateway.Billing.Idempotency;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Gateway.Tests.Metering;
using Lattice.StandIn.OpenAi;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Tests.Billing;

/// <summary>
/// <c>Idempotency-Key</c> on the API's POST routes, through a whole gateway in front of the stand-in upstream: replays
/// byte for byte without a second dispatch or record, the three refusals, per-caller keys, requests refused before
/// executing keep nothing, expiry on the fake clock. Upstream calls are counted (and held) at the stand-in's gates.
/// </summary>
/// <remarks>A gateway of its own: the expiry test moves its clock a day on.</remarks>
public abstract class IdempotencyTests(GatewayFixture gateway)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    /// <summary>The key store the gateway under test uses.</summary>
    protected IIdempotencyStore Store => gateway.Factory.Services.GetRequiredService<IIdempotencyStore>();

    /// <summary>A model whose offer passes the stand-in's gate <paramref name="gate"/> (counted; held while closed).</summary>
    private async Task<(string Model, StandInGates.Gate Gate)> GatedModelAsync(string gate, bool open = true)
    {
        // Gates are the stand-in's, one set per process: each subclass (SQLite, PostgreSQL) counts through its own.
        gate = GetType().Name.ToLowerInvariant() + "-" + gate;
        var model = "lovelace:gate-" + gate;
        await gateway.AddModelAsync(model, GatewayFixture.Offer(gateway.StandInUrl + "/v1", "standin-held-" + gate));
        var g = StandInGates.Get(gate);
        if (open)
        {
            g.Open();
        }
        return (model, g);
    }

    private static string Chat(string model, string content = "one two three", bool stream = false, int n = 1) =>
        $$"""{"model":"{{model}}","messages":[{"role":"user","content":"{{content}}"}],"stream":{{(stream ? "true" : "false")}},"n":{{n}}}""";

    private static HttpRequestMessage Post(string body, string? key, string path = "/v1/chat/completions")
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        if (key is not null)
        {
            request.Headers.TryAddWithoutValidation(IdempotencyMiddleware.HeaderName, key);
        }
        return request;
    }

    private sealed record Answer(HttpStatusCode Status, byte[] Body, HttpResponseMessage Response)
    {
        public string Text => Encoding.UTF8.GetString(Body);
        public string RequestId => Response.Headers.GetValues("x-request-id").Single();
        public bool Replayed => Response.Headers.TryGetValues(IdempotencyMiddleware.ReplayedHeader, out var v) && v.Single() == "true";
        public JsonNode Error => JsonNode.Parse(Body)!["error"]!;
    }

    private async Task<Answer> SendAsync(string body, string? key, string? credential = null, string path = "/v1/chat/completions")
    {
        using var client = gateway.Client(credential ?? gateway.ApiKey);
        using var request = Post(body, key, path);
        var response = await client.SendAsync(request).WaitAsync(Timeout);
        return new Answer(response.StatusCode, await response.Content.ReadAsByteArrayAsync(), response);
    }

    private static void AssertError(Answer answer, HttpStatusCode status, string code, string messagePart)
    {
        Assert.Equal(status, answer.Status);
        Assert.Equal("invalid_request_error", answer.Error["type"]!.GetValue<string>());
        Assert.Equal(code, answer.Error["code"]!.GetValue<string>());
        Assert.Contains(messagePart, answer.Error["message"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.False(answer.Replayed);
    }

    /// <summary>Every usage record in the table, after the ledger has written what it holds.</summary>
    private async Task<int> RecordCountAsync()
    {
        await gateway.Factory.Services.GetRequiredService<UsageLedger>().FlushAsync().WaitAsync(Timeout);
        await using var scope = gateway.Factory.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<LatticeDbContext>().UsageRecords.CountAsync();
    }

    private static string NewKey() => "key-" + Guid.NewGuid().ToString("N");

    [Fact]
    public async Task The_same_request_again_replays_the_first_answer_byte_for_byte_without_a_dispatch_or_a_record()
    {
        var (model, gate) = await GatedModelAsync("replay");
        var key = NewKey();
        var body = Chat(model);

        var first = await SendAsync(body, key);
        Assert.Equal(HttpStatusCode.OK, first.Status);
        Assert.False(first.Replayed);
        await Ledger.RecordAsync(gateway.Factory.Services, first.RequestId);
        var records = await RecordCountAsync();

        var second = await SendAsync(body, key);
        Assert.Equal(HttpStatusCode.OK, second.Status);
        Assert.True(second.Replayed);
        Assert.Equal(first.Body, second.Body);
        Assert.Equal("application/json", second.Response.Content.Headers.ContentType!.ToString());
        Assert.Equal(first.Body.Length, second.Response.Content.Headers.ContentLength);
        // The first answer's id: the one its usage record carries.
        Assert.Equal(first.RequestId, second.RequestId);

        Assert.Equal(1, gate.Arrivals);
        Assert.Equal(records, await RecordCountAsync());
        Assert.Equal(1, await Ledger.CountAsync(gateway.Factory.Services, first.RequestId));
    }

    [Fact]
    public async Task A_streamed_answer_replays_as_the_same_event_stream()
    {
        var (model, gate) = await GatedModelAsync("sse");
        var key = NewKey();
        var body = Chat(model, stream: true);

        var first = await SendAsync(body, key);
        Assert.Equal(HttpStatusCode.OK, first.Status);
        Assert.Equal("[DONE]", Sse.DataEvents(first.Text)[^1]);

        var second = await SendAsync(body, key);
        Assert.True(second.Replayed);
        Assert.Equal(first.Body, second.Body);
        Assert.Equal("text/event-stream", second.Response.Content.Headers.ContentType!.MediaType);
        Assert.Equal("no-cache", second.Response.Headers.CacheControl!.ToString());
        Assert.Equal(1, gate.Arrivals);
    }

    [Fact]
    public async Task An_answer_larger_than_a_mebibyte_reaches_the_client_but_cannot_be_replayed()
    {
        var (model, gate) = await GatedModelAsync("large");
        var key = NewKey();
        // Two choices each echoing 600 000 characters: an answer of 1.2 MB from a request well under the body limit.
        var body = Chat(model, new string('x', 600_000), n: 2);

        var first = await SendAsync(body, key);
        Assert.Equal(HttpStatusCode.OK, first.Status);
        Assert.True(first.Body.Length > 1024 * 1024, $"answer of {first.Body.Length} bytes");
        Assert.EndsWith("}", first.Text.TrimEnd(), StringComparison.Ordinal);

        var retry = await SendAsync(body, key);
        AssertError(retry, HttpStatusCode.Conflict, "idempotency_key_not_replayable", "cannot be replayed");
        Assert.Equal(1, gate.Arrivals);
    }

    [Fact]
    public async Task A_stream_the_client_left_is_kept_as_unreplayable()
    {
        var key = NewKey();
        var body = Chat("lovelace:drip", stream: true);
        using (var client = gateway.DevClient())
        using (var request = Post(body, key))
        using (var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).WaitAsync(Timeout))
        {
            // Events reach the client as they are produced, not at the end: the first word arrives while the rest drips.
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            while (await reader.ReadLineAsync().WaitAsync(Timeout) is { } line && !line.Contains("\"content\":\"You\"", StringComparison.Ordinal))
            {
            }
        }

        // The key is settled once the gateway has seen the client go.
        using var timeout = new CancellationTokenSource(Timeout);
        while (await StateAsync(key, timeout.Token) == "running")
        {
            await Task.Delay(20, timeout.Token);
        }
        Assert.Equal("unreplayable", await StateAsync(key, timeout.Token));
        AssertError(await SendAsync(body, key), HttpStatusCode.Conflict, "idempotency_key_not_replayable", "did not complete");
    }

    /// <summary>The key's state where the store keeps it.</summary>
    protected virtual async Task<string?> StateAsync(string key, CancellationToken cancellationToken)
    {
        await using var scope = gateway.Factory.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        return await db.IdempotencyKeys.Where(r => r.Key == key).Select(r => r.State).SingleOrDefaultAsync(cancellationToken);
    }

    [Fact]
    public async Task The_same_key_with_a_different_body_is_refused()
    {
        var (model, gate) = await GatedModelAsync("reused");
        var key = NewKey();
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(Chat(model), key)).Status);

        var other = await SendAsync(Chat(model, "four five"), key);
        AssertError(other, HttpStatusCode.UnprocessableEntity, "idempotency_key_reused", "different parameters");
        Assert.Equal(1, gate.Arrivals);
    }

    [Fact]
    public async Task The_path_is_part_of_the_request_and_the_groq_shaped_alias_keeps_keys_too()
    {
        var (model, gate) = await GatedModelAsync("alias");
        var key = NewKey();
        var first = await SendAsync(Chat(model), key, path: "/openai/v1/chat/completions");
        Assert.Equal(HttpStatusCode.OK, first.Status);
        Assert.True((await SendAsync(Chat(model), key, path: "/openai/v1/chat/completions")).Replayed);

        AssertError(await SendAsync(Chat(model), key), HttpStatusCode.UnprocessableEntity, "idempotency_key_reused", "different parameters");
        Assert.Equal(1, gate.Arrivals);
    }

    [Fact]
    public async Task The_same_key_while_the_first_request_runs_is_refused_and_replays_once_it_has_finished()
    {
        var (model, gate) = await GatedModelAsync("held", open: false);
        var key = NewKey();
        var body = Chat(model);

        var first = SendAsync(body, key);
        await gate.Arrived.WaitAsync(Timeout);

        var concurrent = await SendAsync(body, key);
        AssertError(concurrent, HttpStatusCode.Conflict, "idempotency_key_in_use", "still in progress");
        // Different parameters are told apart even while the first runs.
        AssertError(await SendAsync(Chat(model, "else"), key), HttpStatusCode.UnprocessableEntity, "idempotency_key_reused", "different parameters");

        gate.Open();
        var done = await first;
        Assert.Equal(HttpStatusCode.OK, done.Status);
        var replay = await SendAsync(body, key);
        Assert.True(replay.Replayed);
        Assert.Equal(done.Body, replay.Body);
        Assert.Equal(1, gate.Arrivals);
    }

    [Fact]
    public async Task A_request_still_running_past_its_first_lease_keeps_its_key()
    {
        // The lease covers the longest wait between two signs of life; a request that runs longer (a stream that keeps
        // producing) renews it every half lease, so a retry is still told "in progress" and never runs a second time.
        var gatewayOptions = gateway.Factory.Services.GetRequiredService<IOptions<GatewayOptions>>().Value;
        var lease = (gatewayOptions.UpstreamTimeout > gatewayOptions.RuntimeTimeout ? gatewayOptions.UpstreamTimeout : gatewayOptions.RuntimeTimeout)
            + gateway.Factory.Services.GetRequiredService<IOptions<IdempotencyOptions>>().Value.LeaseMargin;
        var (model, gate) = await GatedModelAsync("lease", open: false);
        var key = NewKey();
        var body = Chat(model);
        var first = SendAsync(body, key);
        await gate.Arrived.WaitAsync(Timeout);
        var claimedUntil = await LockedUntilAsync(key);

        // Three half-leases pass while it runs: each time the lease is renewed from the moment of renewal.
        for (var i = 1; i <= 3; i++)
        {
            gateway.Time.Advance(lease / 2);
            var expected = claimedUntil + lease / 2 * i;
            using var renewed = new CancellationTokenSource(Timeout);
            while (await LockedUntilAsync(key) < expected)
            {
                await Task.Delay(10, renewed.Token);
            }
        }
        // Past the first lease by now: without renewal a retry would take the key over and run again.
        AssertError(await SendAsync(body, key), HttpStatusCode.Conflict, "idempotency_key_in_use", "still in progress");

        gate.Open();
        Assert.Equal(HttpStatusCode.OK, (await first).Status);
        Assert.True((await SendAsync(body, key)).Replayed);
        Assert.Equal(1, gate.Arrivals);
    }

    protected virtual async Task<DateTimeOffset> LockedUntilAsync(string key)
    {
        await using var scope = gateway.Factory.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        return (await db.IdempotencyKeys.AsNoTracking().SingleAsync(r => r.Key == key)).LockedUntil;
    }

    [Fact]
    public async Task Keys_of_one_caller_are_invisible_to_another()
    {
        var (model, gate) = await GatedModelAsync("callers");
        var other = await gateway.CreateKeyAsync();
        var key = NewKey();

        var mine = await SendAsync(Chat(model), key);
        // Another body under the same key string: for the other caller it is a new key, neither reused nor replayed.
        var theirs = await SendAsync(Chat(model, "six seven"), key, other);
        Assert.Equal(HttpStatusCode.OK, theirs.Status);
        Assert.False(theirs.Replayed);
        Assert.Contains("six seven", theirs.Text, StringComparison.Ordinal);

        var theirsAgain = await SendAsync(Chat(model, "six seven"), key, other);
        Assert.True(theirsAgain.Replayed);
        Assert.Equal(theirs.Body, theirsAgain.Body);
        var mineAgain = await SendAsync(Chat(model), key);
        Assert.Equal(mine.Body, mineAgain.Body);
        Assert.Equal(2, gate.Arrivals);
    }

    [Fact]
    public async Task A_request_refused_before_it_executes_keeps_nothing_and_a_retry_runs()
    {
        var (model, gate) = await GatedModelAsync("refused");
        var key = NewKey();

        var unknown = await SendAsync(Chat("lovelace:no-such-model"), key);
        Assert.Equal(HttpStatusCode.NotFound, unknown.Status);
        Assert.Equal("model_not_found", unknown.Error["code"]!.GetValue<string>());

        var broken = await SendAsync("{\"model\":", key);
        Assert.Equal(HttpStatusCode.BadRequest, broken.Status);
        Assert.Equal("invalid_json", broken.Error["code"]!.GetValue<string>());

        var unauthenticated = await SendAsync(Chat(model), key, "sk_not_a_key");
        Assert.Equal(HttpStatusCode.Unauthorized, unauthenticated.Status);

        var fixedUp = await SendAsync(Chat(model), key);
        Assert.Equal(HttpStatusCode.OK, fixedUp.Status);
        Assert.False(fixedUp.Replayed);
        Assert.True((await SendAsync(Chat(model), key)).Replayed);
        Assert.Equal(1, gate.Arrivals);
    }

    [Fact]
    public async Task A_key_is_forgotten_after_a_day()
    {
        var (model, gate) = await GatedModelAsync("expiry");
        var key = NewKey();
        var body = Chat(model);
        var first = await SendAsync(body, key);

        gateway.Time.Advance(TimeSpan.FromHours(23));
        Assert.True((await SendAsync(body, key)).Replayed);

        gateway.Time.Advance(TimeSpan.FromHours(1));
        var again = await SendAsync(body, key);
        Assert.Equal(HttpStatusCode.OK, again.Status);
        Assert.False(again.Replayed);
        Assert.NotEqual(first.RequestId, again.RequestId);
        Assert.Equal(2, gate.Arrivals);

        // Expired keys are deleted by the pruner; the one just run is not expired.
        gateway.Time.Advance(TimeSpan.FromHours(25));
        await gateway.Factory.Services.GetServices<IHostedService>().OfType<IdempotencyPruner>().Single().PruneAsync(CancellationToken.None);
        await using var scope = gateway.Factory.Services.CreateAsyncScope();
        Assert.False(await scope.ServiceProvider.GetRequiredService<LatticeDbContext>().IdempotencyKeys.AnyAsync(r => r.Key == key));
    }

    [Fact]
    public async Task A_route_that_does_not_dispatch_keeps_its_success()
    {
        var key = NewKey();
        var body = """{"displayName":"idempotent laptop"}""";
        var first = await SendAsync(body, key, path: "/v1/personal-runtimes");
        Assert.Equal(HttpStatusCode.Created, first.Status);
        var again = await SendAsync(body, key, path: "/v1/personal-runtimes");
        Assert.True(again.Replayed);
        Assert.Equal(HttpStatusCode.Created, again.Status);
        Assert.Equal(first.Body, again.Body);

        using var client = gateway.DevClient();
        var listed = JsonNode.Parse(await client.GetStringAsync("/v1/personal-runtimes"))!["runtimes"]!.AsArray();
        Assert.Single(listed, r => r!["displayName"]!.GetValue<string>() == "idempotent laptop");
    }

    [Fact]
    public async Task A_claim_whose_lease_lapsed_is_taken_over_and_the_first_holder_can_no_longer_settle_it()
    {
        var store = gateway.Factory.Services.GetRequiredService<IIdempotencyStore>();
        var (caller, key, lease) = ("key_lease_test", NewKey(), TimeSpan.FromMinutes(5));

        var first = await store.TryClaimAsync(caller, key, "hash-1", lease, CancellationToken.None);
        Assert.NotNull(first.Claim);
        var blocked = await store.TryClaimAsync(caller, key, "hash-1", lease, CancellationToken.None);
        Assert.Null(blocked.Claim);
        Assert.Equal(IdempotencyState.Running, blocked.Existing!.State);

        gateway.Time.Advance(lease);
        var second = await store.TryClaimAsync(caller, key, "hash-2", lease, CancellationToken.None);
        Assert.NotNull(second.Claim);

        // The node that held the first claim comes back: its answer and its release both miss.
        await store.CompleteAsync(first.Claim!, new IdempotentAnswer(200, [], "first"u8.ToArray()), CancellationToken.None);
        await store.ReleaseAsync(first.Claim!, CancellationToken.None);
        Assert.Equal(IdempotencyState.Running, (await store.FindAsync(caller, key, CancellationToken.None))!.State);

        await store.CompleteAsync(second.Claim!, new IdempotentAnswer(201, [new("content-type", "text/plain")], "second"u8.ToArray()), CancellationToken.None);
        var kept = (await store.FindAsync(caller, key, CancellationToken.None))!;
        Assert.Equal((IdempotencyState.Done, 201, "hash-2"), (kept.State, kept.Status, kept.RequestHash));
        Assert.Equal("second"u8.ToArray(), kept.Body);
        Assert.Equal([new("content-type", "text/plain")], kept.Headers);
        Assert.Null(await store.FindAsync("key_someone_else", key, CancellationToken.None));
    }

    [Theory]
    [InlineData("delete", "del\u007f")]
    [InlineData("tab", "tab\tinside")]
    [InlineData("latin", "clé")]
    [InlineData("long", null)]
    public async Task A_malformed_key_is_refused(string name, string? key)
    {
        var (model, gate) = await GatedModelAsync("malformed-" + name);
        var answer = await SendAsync(Chat(model), key ?? new string('k', 256));
        AssertError(answer, HttpStatusCode.BadRequest, "invalid_value", "'Idempotency-Key' header");
        Assert.Equal("Idempotency-Key", answer.Error["param"]!.GetValue<string>());
        Assert.Equal(0, gate.Arrivals);
    }

    [Fact]
    public async Task Two_key_headers_are_refused_and_a_key_of_255_characters_is_accepted()
    {
        var (model, gate) = await GatedModelAsync("two-headers");
        using var client = gateway.DevClient();
        using var request = Post(Chat(model), "a");
        request.Headers.TryAddWithoutValidation(IdempotencyMiddleware.HeaderName, "b");
        using var response = await client.SendAsync(request).WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);

        var longest = await SendAsync(Chat(model), new string('k', 255));
        Assert.Equal(HttpStatusCode.OK, longest.Status);
        Assert.Equal(1, gate.Arrivals);
    }
}

/// <summary>The cases on SQLite, whose keys have a store of their own (prepared statements, no flush per commit).</summary>
public sealed class SqliteIdempotencyTests(GatewayFixture gateway) : IdempotencyTests(gateway), IClassFixture<GatewayFixture>
{
    [Fact]
    public void On_sqlite_the_keys_are_kept_by_sqlites_own_store() =>
        Assert.IsType<SqliteIdempotencyStore>(Store);
}

[Collection(PostgresCollection.Name)]
public sealed class PostgresIdempotencyTests(PostgresGatewayFixture gateway) : IdempotencyTests(gateway), IClassFixture<PostgresGatewayFixture>
{
    [Fact]
    public void On_postgresql_the_keys_are_kept_through_ef_core() =>
        Assert.IsType<SqlIdempotencyStore>(Store);
}

/// <summary>The same cases with the counters in Redis (<c>Lattice:Redis</c>).</summary>
[Trait("Category", "ScaleOut")]
public sealed class RedisIdempotencyTests(RedisGatewayFixture gateway) : IdempotencyTests(gateway), IClassFixture<RedisGatewayFixture>
{
    protected override async Task<string?> StateAsync(string key, CancellationToken cancellationToken) =>
        await gateway.HashFieldAsync($"idem:*:{key}", "st");

    protected override async Task<DateTimeOffset> LockedUntilAsync(string key) =>
        DateTimeOffset.FromUnixTimeMilliseconds((long)(await gateway.HashFieldAsync($"idem:*:{key}", "lu"))!);
}
