using Lattice.Gateway.Persistence;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Lattice.Gateway.Billing.Idempotency;

/// <summary>
/// Idempotency keys in the Redis every node shares, with the rules of <see cref="SqlIdempotencyStore"/>: one hash per
/// caller and key (request hash, state, when claimed, lease, expiry, and the answer's status, headers and bytes). A claim
/// is one script — a free key, an expired one or one whose holder's lease lapsed is taken, otherwise what it holds comes
/// back in the same round trip — so two nodes racing for a key cannot both win it, and a retry that lands on any node
/// replays the answer kept by the node that ran it.
/// </summary>
/// <remarks>
/// Times are the node's clock (<see cref="TimeProvider"/>), kept in the hash and compared in the script; Redis also
/// expires the key a little after its retention, so nothing needs pruning.
/// </remarks>
public sealed class RedisIdempotencyStore(RedisStore redis, IOptions<IdempotencyOptions> options, TimeProvider time) : IIdempotencyStore
{
    /// <summary>
    /// ARGV: now, request hash, expires at, locked until (ms), ttl (ms). Returns {1} when claimed, else
    /// {0, hash, state, status, headers, body} of what the key holds.
    /// </summary>
    private const string ClaimScript = """
        local now = tonumber(ARGV[1])
        local e = redis.call('HMGET', KEYS[1], 'h', 'st', 'ex', 'lu', 'status', 'hd', 'b')
        if not e[1] or tonumber(e[3]) <= now or (e[2] == 'running' and tonumber(e[4]) <= now) then
          redis.call('DEL', KEYS[1])
          redis.call('HSET', KEYS[1], 'h', ARGV[2], 'st', 'running', 'c', ARGV[1], 'ex', ARGV[3], 'lu', ARGV[4])
          redis.call('PEXPIRE', KEYS[1], ARGV[5])
          return {1}
        end
        return {0, e[1], e[2], e[5] or '0', e[6] or '', e[7] or ''}
        """;

    /// <summary>The claim still holds the key: the same claim time, still running. ARGV[1] is the claim's time.</summary>
    private const string Held = "redis.call('HGET', KEYS[1], 'c') == ARGV[1] and redis.call('HGET', KEYS[1], 'st') == 'running'";

    /// <summary>ARGV: claimed at, state, status, headers, body.</summary>
    private const string CompleteScript = "if " + Held + """
         then
          redis.call('HSET', KEYS[1], 'st', ARGV[2], 'status', ARGV[3], 'hd', ARGV[4], 'b', ARGV[5])
          return 1
        end
        return 0
        """;

    /// <summary>ARGV: claimed at, locked until.</summary>
    private const string RenewScript = "if " + Held + """
         then
          redis.call('HSET', KEYS[1], 'lu', ARGV[2])
          return 1
        end
        return 0
        """;

    /// <summary>ARGV: claimed at.</summary>
    private const string ReleaseScript = "if " + Held + """
         then
          redis.call('DEL', KEYS[1])
          return 1
        end
        return 0
        """;

    /// <summary>ARGV: now. Returns {hash, state, status, headers, body}, or an empty list when absent or expired.</summary>
    private const string FindScript = """
        local e = redis.call('HMGET', KEYS[1], 'h', 'st', 'ex', 'status', 'hd', 'b')
        if not e[1] or tonumber(e[3]) <= tonumber(ARGV[1]) then return {} end
        return {e[1], e[2], e[4] or '0', e[5] or '', e[6] or ''}
        """;

    private readonly TimeSpan _retention = options.Value.Retention;

    public async ValueTask<ClaimOutcome> TryClaimAsync(string callerId, string key, string requestHash, TimeSpan lease, CancellationToken cancellationToken)
    {
        var now = DateTimeOffset.FromUnixTimeMilliseconds(time.GetUtcNow().ToUnixTimeMilliseconds());
        var nowMs = now.ToUnixTimeMilliseconds();
        // Redis keeps the key a minute past its retention: the hash's own expiry is what counts, on the node's clock.
        var ttlMs = (long)(_retention + TimeSpan.FromMinutes(1)).TotalMilliseconds;
        var result = (RedisResult[])(await redis.EvaluateAsync(ClaimScript, [Key(callerId, key)],
            [nowMs, requestHash, (now + _retention).ToUnixTimeMilliseconds(), (now + lease).ToUnixTimeMilliseconds(), ttlMs]))!;
        if ((int)result[0] == 1)
        {
            return new ClaimOutcome(new IdempotencyClaim(callerId, key, now), null);
        }
        return new ClaimOutcome(null, Record(result.AsSpan(1)));
    }

    public async ValueTask CompleteAsync(IdempotencyClaim claim, IdempotentAnswer? answer, CancellationToken cancellationToken)
    {
        RedisValue[] values = answer is null
            ? [claim.ClaimedAt.ToUnixTimeMilliseconds(), "unreplayable", 0, "", ""]
            : [claim.ClaimedAt.ToUnixTimeMilliseconds(), "done", answer.Status, HeadersJson.Write(answer.Headers), answer.Body];
        await redis.EvaluateAsync(CompleteScript, [Key(claim)], values);
    }

    public async ValueTask<bool> RenewAsync(IdempotencyClaim claim, TimeSpan lease, CancellationToken cancellationToken) =>
        (int)await redis.EvaluateAsync(RenewScript, [Key(claim)],
            [claim.ClaimedAt.ToUnixTimeMilliseconds(), (time.GetUtcNow() + lease).ToUnixTimeMilliseconds()]) == 1;

    public async ValueTask ReleaseAsync(IdempotencyClaim claim, CancellationToken cancellationToken) =>
        await redis.EvaluateAsync(ReleaseScript, [Key(claim)], [claim.ClaimedAt.ToUnixTimeMilliseconds()]);

    public async ValueTask<IdempotencyRecord?> FindAsync(string callerId, string key, CancellationToken cancellationToken)
    {
        var result = (RedisResult[])(await redis.EvaluateAsync(FindScript, [Key(callerId, key)], [time.GetUtcNow().ToUnixTimeMilliseconds()]))!;
        return result.Length == 0 ? null : Record(result);
    }

    /// <summary>Nothing to do: Redis expires keys itself.</summary>
    public ValueTask<int> PruneAsync(int batch, CancellationToken cancellationToken) => ValueTask.FromResult(0);

    private static IdempotencyRecord Record(ReadOnlySpan<RedisResult> e)
    {
        var state = (string?)e[1] switch
        {
            "done" => IdempotencyState.Done,
            "unreplayable" => IdempotencyState.Unreplayable,
            _ => IdempotencyState.Running,
        };
        var headers = (string?)e[3];
        return new IdempotencyRecord((string)e[0]!, state, (int)e[2], HeadersJson.Read(headers), state == IdempotencyState.Done ? (byte[]?)e[4] : null);
    }

    private RedisKey Key(IdempotencyClaim claim) => Key(claim.CallerId, claim.Key);

    private RedisKey Key(string callerId, string key) => redis.Key($"idem:{callerId}:{key}");
}
