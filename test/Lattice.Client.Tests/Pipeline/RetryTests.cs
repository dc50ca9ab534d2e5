using System.Net;
using Lattice.Client.Tests.Infrastructure;
using Microsoft.Extensions.AI;

namespace Lattice.Client.Tests.Pipeline;

/// <summary>Retries: when, how long (on the client's clock), and one idempotency key for the whole call.</summary>
public sealed class RetryTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private static LatticeClient Client(ScriptedTransport transport, WatchedClock clock, LatticeRetryOptions? retry = null) => new(new LatticeClientOptions
    {
        Endpoint = new Uri("http://lattice.test"),
        TokenProvider = new DeveloperKeyTokenProvider("sk_x"),
        Transport = transport,
        TimeProvider = clock,
        Retry = retry ?? new LatticeRetryOptions(),
    });

    [Fact]
    public async Task Retry_after_is_waited_on_the_clock_and_every_attempt_carries_the_same_idempotency_key()
    {
        var clock = new WatchedClock();
        var transport = new ScriptedTransport(
            _ => ScriptedTransport.Error(HttpStatusCode.TooManyRequests, "rate_limit_exceeded", "requests", retryAfter: TimeSpan.FromSeconds(7)),
            _ => ScriptedTransport.Error(HttpStatusCode.ServiceUnavailable, "counters_unavailable", "server_error"),
            _ => ScriptedTransport.Json(HttpStatusCode.OK, ScriptedTransport.Completion));
        using var lattice = Client(transport, clock, new LatticeRetryOptions { BaseDelay = TimeSpan.FromSeconds(2) });

        var call = lattice.GetChatClient("lovelace:chat").GetResponseAsync("hi");
        Assert.Equal(TimeSpan.FromSeconds(7), await clock.NextWaitAsync());
        Assert.Single(transport.Sent);
        clock.Advance(TimeSpan.FromSeconds(7));
        var backoff = await clock.ElapseNextWaitAsync();
        Assert.InRange(backoff, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(4)); // the second retry: 2 × 2 s, with half of it jitter
        var answer = await call.WaitAsync(Timeout);

        Assert.Equal("hello", answer.Text);
        var keys = transport.Sent.Select(s => s.IdempotencyKey).ToList();
        Assert.Equal(3, keys.Count);
        Assert.NotNull(keys[0]);
        Assert.All(keys, k => Assert.Equal(keys[0], k));
        Assert.All(transport.Sent, s => Assert.Equal(transport.Sent.First().Body, s.Body));
    }

    [Fact]
    public async Task Each_logical_call_gets_its_own_key()
    {
        var transport = new ScriptedTransport(_ => ScriptedTransport.Json(HttpStatusCode.OK, ScriptedTransport.Completion));
        using var lattice = Client(transport, new WatchedClock());
        var chat = lattice.GetChatClient("lovelace:chat");
        await chat.GetResponseAsync("one");
        await chat.GetResponseAsync("two");
        Assert.Equal(2, transport.Sent.Select(s => s.IdempotencyKey).Distinct().Count());
    }

    [Fact]
    public async Task A_retry_after_longer_than_the_longest_wait_reaches_the_caller_at_once()
    {
        var transport = new ScriptedTransport(_ => ScriptedTransport.Error(HttpStatusCode.TooManyRequests, "rate_limit_exceeded", "tokens",
            retryAfter: TimeSpan.FromMinutes(5)));
        using var lattice = Client(transport, new WatchedClock());
        var refused = await Assert.ThrowsAsync<RateLimitExceededException>(() => lattice.GetChatClient("lovelace:chat").GetResponseAsync("hi"));
        Assert.Equal(TimeSpan.FromMinutes(5), refused.RetryAfter);
        Assert.Single(transport.Sent);
    }

    [Theory]
    [InlineData(HttpStatusCode.TooManyRequests, "insufficient_quota")]
    [InlineData(HttpStatusCode.BadGateway, "upstream_error")] // kept for the key by the gateway: the same key would replay it
    [InlineData(HttpStatusCode.ServiceUnavailable, "personal_lattice_relay_unavailable")]
    [InlineData(HttpStatusCode.Conflict, "runtime_unreachable")]
    [InlineData(HttpStatusCode.BadRequest, "invalid_value")]
    public async Task What_cannot_succeed_with_the_same_key_is_not_retried(HttpStatusCode status, string code)
    {
        var transport = new ScriptedTransport(_ => ScriptedTransport.Error(status, code));
        using var lattice = Client(transport, new WatchedClock());
        var failed = await Assert.ThrowsAnyAsync<LatticeException>(() => lattice.GetChatClient("lovelace:chat").GetResponseAsync("hi"));
        Assert.Equal(code, failed.Code);
        Assert.Single(transport.Sent);
    }

    [Fact]
    public async Task A_dropped_connection_is_retried_with_the_same_key_until_the_retries_run_out()
    {
        var clock = new WatchedClock();
        var transport = new ScriptedTransport(_ => throw new HttpRequestException("connection reset"));
        using var lattice = Client(transport, clock, new LatticeRetryOptions { MaxRetries = 2 });
        var call = lattice.GetChatClient("lovelace:chat").GetResponseAsync("hi");
        await clock.ElapseNextWaitAsync();
        await clock.ElapseNextWaitAsync();
        await Assert.ThrowsAsync<HttpRequestException>(() => call.WaitAsync(Timeout));
        Assert.Equal(3, transport.Sent.Count);
        Assert.Single(transport.Sent.Select(s => s.IdempotencyKey).Distinct());
    }

    [Fact]
    public async Task No_idempotency_key_is_sent_when_retries_are_off()
    {
        var transport = new ScriptedTransport(_ => ScriptedTransport.Json(HttpStatusCode.OK, """{"ok":true}"""));
        using (var lattice = Client(transport, new WatchedClock(), new LatticeRetryOptions { MaxRetries = 0 }))
        {
            await lattice.InvokeAsync("rerank", new() { ["model"] = "lovelace:rerank", ["query"] = "q" });
        }
        Assert.Null(transport.Sent.Single().IdempotencyKey);
    }
}
