using System.Globalization;
using System.Net;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Persistence;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Lattice.Gateway.Auth;

/// <summary>
/// <see cref="FailedAuthLimiter"/>'s rules with the counts in the Redis every node shares: failures per source per
/// one-minute window, and each account's consecutive failures and backoff, so guessing spread over N nodes is held to
/// the same limit as guessing on one.
/// </summary>
/// <remarks>
/// Unlike the in-process table, Redis bounds itself by expiry: a source's count lives two windows, an account's an hour
/// past its last failure (longer than the longest backoff).
/// </remarks>
public sealed class RedisFailedAuthLimiter(RedisStore redis, IOptions<GatewayOptions> options, TimeProvider time) : IFailedAuthLimiter
{
    /// <summary>ARGV: now (ms), free failures, longest backoff (s), ttl (ms). Returns the failures so far.</summary>
    private const string FailScript = """
        local f = redis.call('HINCRBY', KEYS[1], 'f', 1)
        local free = tonumber(ARGV[2])
        if f >= free then
          local seconds = math.min(2 ^ math.min(f - free, 20), tonumber(ARGV[3]))
          redis.call('HSET', KEYS[1], 'nb', tonumber(ARGV[1]) + seconds * 1000)
        end
        redis.call('PEXPIRE', KEYS[1], ARGV[4])
        return f
        """;

    private const string BackoffScript = "return redis.call('HGET', KEYS[1], 'nb')";

    private const string ForgetScript = "return redis.call('DEL', KEYS[1])";

    private static readonly long AccountTtlMs = (long)TimeSpan.FromHours(1).TotalMilliseconds;

    private readonly int _limit = options.Value.FailedAuthPerMinute;
    private readonly RedisSourceWindow _failures = new(redis, time, "fa:src");

    public async ValueTask<bool> RecordFailureAsync(HttpContext context)
    {
        if (_limit <= 0 || context.Connection.RemoteIpAddress is not { } address)
        {
            return true;
        }
        return (await _failures.IncrementAsync(address)).Count <= _limit;
    }

    public async ValueTask<TimeSpan> AccountBackoffAsync(string account)
    {
        if (_limit <= 0)
        {
            return TimeSpan.Zero;
        }
        var notBefore = await redis.EvaluateAsync(BackoffScript, [Key(account)], []);
        if (notBefore.IsNull)
        {
            return TimeSpan.Zero;
        }
        var wait = (long)double.Parse((string)notBefore!, NumberStyles.Float, CultureInfo.InvariantCulture) - time.GetUtcNow().ToUnixTimeMilliseconds();
        return wait > 0 ? TimeSpan.FromMilliseconds(wait) : TimeSpan.Zero;
    }

    public async ValueTask RecordAccountFailureAsync(string account)
    {
        if (_limit <= 0)
        {
            return;
        }
        await redis.EvaluateAsync(FailScript, [Key(account)],
            [time.GetUtcNow().ToUnixTimeMilliseconds(), FailedAuthLimiter.FreeAccountFailures, (long)FailedAuthLimiter.MaxAccountBackoff.TotalSeconds, AccountTtlMs]);
    }

    public async ValueTask RecordAccountSuccessAsync(string account) =>
        await redis.EvaluateAsync(ForgetScript, [Key(account)], []);

    private RedisKey Key(string account) => redis.Key("fa:acct:" + account.ToLowerInvariant());
}

/// <summary>
/// <see cref="SourceWindow"/>'s counting in the Redis every node shares: one counter per source per one-minute window
/// (windows start on the minute of the node's clock), incremented and given its expiry in one script.
/// </summary>
public sealed class RedisSourceWindow(RedisStore redis, TimeProvider time, string name) : ISourceCounter
{
    private const string IncrementScript = """
        local n = redis.call('INCR', KEYS[1])
        if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
        return n
        """;

    private static readonly long WindowMs = (long)SourceWindow.Window.TotalMilliseconds;

    public async ValueTask<(long Count, TimeSpan UntilNextWindow)> IncrementAsync(IPAddress address)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        var window = now / WindowMs;
        var key = redis.Key(string.Create(CultureInfo.InvariantCulture, $"{name}:{window}:{SourceWindow.SourceOf(address)}"));
        var count = (long)await redis.EvaluateAsync(IncrementScript, [key], [2 * WindowMs]);
        return (count, TimeSpan.FromMilliseconds(WindowMs - now % WindowMs));
    }
}
