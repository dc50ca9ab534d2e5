using System.Globalization;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Persistence;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Lattice.Gateway.Billing;

/// <summary>
/// The token buckets of <see cref="LocalRateLimitCounters"/>, kept in the Redis every node shares: one hash per subject
/// (requests, tokens, in flight, when last brought up to date, and which limits it had), taken and given back by one Lua
/// script each, so all of a request's subjects are checked and charged in one atomic step and one round trip, whichever
/// node admits it. N requests a minute are N across all nodes.
/// </summary>
/// <remarks>
/// <para>Time is the node's clock (<see cref="TimeProvider"/>), sent with each call: nodes keep their clocks in step
/// (NTP); a node a second behind refills a second's worth less.</para>
/// <para>A bucket's key expires an hour after its last use — an idle bucket is full after a minute, the same as none.
/// A node that dies holding in-flight slots leaves them counted until the subject has been idle for that hour.</para>
/// </remarks>
public sealed class RedisRateLimitCounters(RedisStore redis, TimeProvider time, IOptions<GatewayOptions> options) : IRateLimitCounters
{
    /// <summary>
    /// Refills bucket <c>i</c> to <c>now</c> from its hash: a limit it did not have before starts full (as
    /// <see cref="LocalRateLimitCounters"/>'s buckets do), after freeing the in-flight slots of allotment leases that lapsed
    /// (<see cref="Allotments"/>). Sets <c>r[i]</c>, <c>t[i]</c>, <c>f[i]</c>, <c>s[i]</c>; false when the key is absent.
    /// </summary>
    private const string Refill = Allotments.Lapse + "\n" + """
        local r, t, f, s = {}, {}, {}, {}
        local function refill(i, now, rpm, tpm)
          local freed = 0
          for _, n in ipairs(lapse(KEYS[i], now)) do freed = freed + tonumber(n) end
          local b = redis.call('HMGET', KEYS[i], 'r', 't', 'f', 's', 'hr', 'ht')
          local stamp = tonumber(b[4])
          local minutes = 0
          if stamp and now > stamp then minutes = (now - stamp) / 60000000 end
          if rpm > 0 then
            if b[5] == '1' then r[i] = math.min(rpm, tonumber(b[1]) + minutes * rpm) else r[i] = rpm end
          else r[i] = 0 end
          if tpm > 0 then
            if b[6] == '1' then t[i] = math.min(tpm, tonumber(b[2]) + minutes * tpm) else t[i] = tpm end
          else t[i] = 0 end
          f[i] = tonumber(b[3]) or 0
          if freed > 0 then
            f[i] = math.max(0, f[i] - freed)
            redis.call('HSET', KEYS[i], 'f', f[i])
          end
          s[i] = math.max(stamp or now, now)
          return stamp ~= nil
        end
        local function store(i, rpm, tpm, ttl)
          redis.call('HSET', KEYS[i], 'r', tostring(r[i]), 't', tostring(t[i]), 'f', f[i], 's', s[i],
            'hr', rpm > 0 and '1' or '0', 'ht', tpm > 0 and '1' or '0')
          redis.call('PEXPIRE', KEYS[i], ttl)
        end
        """;

    /// <summary>
    /// ARGV: now (µs), tokens, ttl (ms), then rpm, tpm, max per key (0: none). Returns {refusal, subject, r…, t…}:
    /// refusal 0 admitted (and charged), 1 concurrency, 2 requests, 3 too large, 4 tokens.
    /// </summary>
    private const string AcquireScript = Refill + "\n" + """
        local now, tokens, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
        local n = #KEYS
        for i = 1, n do refill(i, now, tonumber(ARGV[1 + 3 * i]), tonumber(ARGV[2 + 3 * i])) end
        local refusal, at = 0, 0
        for i = 1, n do
          local rpm, tpm, max = tonumber(ARGV[1 + 3 * i]), tonumber(ARGV[2 + 3 * i]), tonumber(ARGV[3 + 3 * i])
          if max > 0 and f[i] >= max then refusal = 1
          elseif rpm > 0 and r[i] < 1 then refusal = 2
          elseif tpm > 0 and tokens > tpm then refusal = 3
          elseif tpm > 0 and t[i] < tokens then refusal = 4 end
          if refusal > 0 then at = i break end
        end
        if refusal == 0 then
          for i = 1, n do
            local rpm, tpm = tonumber(ARGV[1 + 3 * i]), tonumber(ARGV[2 + 3 * i])
            if rpm > 0 then r[i] = r[i] - 1 end
            if tpm > 0 then t[i] = t[i] - tokens end
            f[i] = f[i] + 1
            store(i, rpm, tpm, ttl)
          end
        end
        local out = {refusal, at}
        for i = 1, n do out[#out + 1] = tostring(r[i]) end
        for i = 1, n do out[#out + 1] = tostring(t[i]) end
        return out
        """;

    /// <summary>ARGV: now (µs), reserved tokens, actual tokens, executed (1/0), ttl (ms), then rpm, tpm per key.</summary>
    private const string ReleaseScript = Refill + "\n" + """
        local now, reserved, actual, executed, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1', ARGV[5]
        for i = 1, #KEYS do
          local rpm, tpm = tonumber(ARGV[4 + 2 * i]), tonumber(ARGV[5 + 2 * i])
          if refill(i, now, rpm, tpm) then
            if tpm > 0 then t[i] = math.min(tpm, t[i] + reserved - actual) end
            if not executed and rpm > 0 then r[i] = math.min(rpm, r[i] + 1) end
            f[i] = math.max(0, f[i] - 1)
            store(i, rpm, tpm, ttl)
          end
        end
        return 0
        """;

    /// <summary>
    /// One node's allotment of one subject (KEYS[1]): gives back what it returns, then takes what it asks for, each part a
    /// share of what the bucket holds at most (ARGV[17] is the divisor), or nothing at all when a part would be under its
    /// minimum. The slots it holds are a lease (<see cref="Allotments"/>) renewed to ARGV[4]. ARGV: now (µs), ttl (ms),
    /// node, lease expiry (µs), rpm, tpm, max, back r/t/f, want r/t/f, min r/t/f, divisor. Returns {granted 1/0, r, t, f
    /// taken, r and t left in the bucket, slots this node now holds}.
    /// </summary>
    private const string AllotScript = Refill + "\n" + """
        local now, ttl, node, expiry = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
        local rpm, tpm, max = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
        local backR, backT, backF = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
        local wantR, wantT, wantF = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
        local minR, minT, minF, share = tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17])
        refill(1, now, rpm, tpm)
        local held = tonumber(redis.call('HGET', KEYS[1], 'n:' .. node)) or 0
        if rpm > 0 then r[1] = math.min(rpm, r[1] + backR) end
        if tpm > 0 then t[1] = math.min(tpm, t[1] + backT) end
        backF = math.min(backF, held)
        f[1] = math.max(0, f[1] - backF)
        held = held - backF
        local gR, gT, gF = 0, 0, 0
        if rpm > 0 and wantR > 0 then gR = math.max(0, math.min(wantR, math.floor(r[1] / share))) end
        if tpm > 0 and wantT > 0 then gT = math.max(0, math.min(wantT, math.floor(t[1] / share))) end
        if max > 0 and wantF > 0 then gF = math.max(0, math.min(wantF, math.floor((max - f[1]) / share))) end
        local granted = 1
        if (rpm > 0 and wantR > 0 and gR < minR) or (tpm > 0 and wantT > 0 and gT < minT) or (max > 0 and wantF > 0 and gF < minF) then
          granted, gR, gT, gF = 0, 0, 0, 0
        end
        r[1] = r[1] - gR
        t[1] = t[1] - gT
        f[1] = f[1] + gF
        held = held + gF
        store(1, rpm, tpm, ttl)
        if held > 0 then
          redis.call('HSET', KEYS[1], 'n:' .. node, held, 'e:' .. node, expiry)
          local le = tonumber(redis.call('HGET', KEYS[1], 'le'))
          if not le or tonumber(expiry) < le then redis.call('HSET', KEYS[1], 'le', expiry) end
        else
          redis.call('HDEL', KEYS[1], 'n:' .. node, 'e:' .. node)
        end
        return {granted, string.format('%.17g', gR), string.format('%.17g', gT), gF, tostring(r[1]), tostring(t[1]), held}
        """;

    /// <summary>How long an unused bucket is kept: at least a minute (it is full by then), and longer than any request.</summary>
    private readonly long _ttlMs = (long)Math.Max(TimeSpan.FromHours(1).TotalMilliseconds,
        (options.Value.UpstreamTimeout > options.Value.RuntimeTimeout ? options.Value.UpstreamTimeout : options.Value.RuntimeTimeout).TotalMilliseconds * 2);

    public async ValueTask<RateDecision> TryAcquireAsync(LimitSubject[] subjects, long tokens, CancellationToken cancellationToken)
    {
        var keys = Keys(subjects);
        var values = new RedisValue[3 + 3 * subjects.Length];
        values[0] = NowMicroseconds();
        values[1] = tokens;
        values[2] = _ttlMs;
        for (var i = 0; i < subjects.Length; i++)
        {
            var limits = subjects[i].Limits;
            values[3 + 3 * i] = limits.RequestsPerMinute ?? 0;
            values[4 + 3 * i] = limits.TokensPerMinute ?? 0;
            values[5 + 3 * i] = limits.MaxConcurrent ?? 0;
        }
        var result = (RedisResult[])(await redis.EvaluateAsync(AcquireScript, keys, values))!;
        var n = subjects.Length;
        Span<double> requests = stackalloc double[n];
        Span<double> bucketTokens = stackalloc double[n];
        for (var i = 0; i < n; i++)
        {
            requests[i] = Number(result[2 + i]);
            bucketTokens[i] = Number(result[2 + n + i]);
        }
        var refusal = (int)result[0];
        if (refusal == 0)
        {
            return new RateDecision(RateRefusal.None, RateLimitMath.Report(subjects, requests, bucketTokens, null));
        }
        var at = (int)result[1] - 1;
        var limitsAt = subjects[at].Limits;
        return refusal switch
        {
            1 => new RateDecision(RateRefusal.Concurrency, RateLimitMath.Report(subjects, requests, bucketTokens, RateLimitMath.ConcurrencyWait), limitsAt.MaxConcurrent!.Value),
            2 => new RateDecision(RateRefusal.Requests,
                RateLimitMath.Report(subjects, requests, bucketTokens, RateLimitMath.RequestsWait(requests[at], limitsAt.RequestsPerMinute!.Value)), limitsAt.RequestsPerMinute!.Value),
            3 => new RateDecision(RateRefusal.TooLarge, RateLimitMath.Report(subjects, requests, bucketTokens, null), limitsAt.TokensPerMinute!.Value),
            _ => new RateDecision(RateRefusal.Tokens,
                RateLimitMath.Report(subjects, requests, bucketTokens, RateLimitMath.TokensWait(tokens, bucketTokens[at], limitsAt.TokensPerMinute!.Value)), limitsAt.TokensPerMinute!.Value),
        };
    }

    public async ValueTask ReleaseAsync(LimitSubject[] subjects, long reservedTokens, long actualTokens, bool executed = true, RateAllotmentHold? hold = null)
    {
        var values = new RedisValue[5 + 2 * subjects.Length];
        values[0] = NowMicroseconds();
        values[1] = reservedTokens;
        values[2] = actualTokens;
        values[3] = executed ? 1 : 0;
        values[4] = _ttlMs;
        for (var i = 0; i < subjects.Length; i++)
        {
            values[5 + 2 * i] = subjects[i].Limits.RequestsPerMinute ?? 0;
            values[6 + 2 * i] = subjects[i].Limits.TokensPerMinute ?? 0;
        }
        await redis.EvaluateAsync(ReleaseScript, Keys(subjects), values);
    }

    /// <summary>
    /// Changes this node's allotment of <paramref name="subject"/> in one round trip (<see cref="AllottedRateLimitCounters"/>
    /// owns the node's side): gives back <paramref name="change"/>'s back parts, takes its wanted parts, and renews the lease
    /// on the slots held to <paramref name="leaseUntil"/>.
    /// </summary>
    public async Task<RateAllotmentGrant> AllotAsync(LimitSubject subject, string node, DateTimeOffset leaseUntil, RateAllotmentChange change, int share)
    {
        var limits = subject.Limits;
        RedisValue[] values =
        [
            NowMicroseconds(), _ttlMs, node, Microseconds(leaseUntil),
            limits.RequestsPerMinute ?? 0, limits.TokensPerMinute ?? 0, limits.MaxConcurrent ?? 0,
            change.BackRequests, change.BackTokens, change.BackSlots,
            change.WantRequests, change.WantTokens, change.WantSlots,
            change.MinRequests, change.MinTokens, change.MinSlots, share,
        ];
        var result = (RedisResult[])(await redis.EvaluateAsync(AllotScript, [redis.Key("rl:" + subject.Key)], values))!;
        return new RateAllotmentGrant((int)result[0] == 1, Number(result[1]), Number(result[2]), (long)result[3], Number(result[4]), Number(result[5]), (long)result[6]);
    }

    private RedisKey[] Keys(LimitSubject[] subjects)
    {
        var keys = new RedisKey[subjects.Length];
        for (var i = 0; i < subjects.Length; i++)
        {
            keys[i] = redis.Key("rl:" + subjects[i].Key);
        }
        return keys;
    }

    private long NowMicroseconds() => Microseconds(time.GetUtcNow());

    /// <summary>An instant as the scripts keep time: microseconds since the Unix epoch.</summary>
    public static long Microseconds(DateTimeOffset at) => (at.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / 10;

    private static double Number(RedisResult value) => double.Parse((string)value!, NumberStyles.Float, CultureInfo.InvariantCulture);
}
