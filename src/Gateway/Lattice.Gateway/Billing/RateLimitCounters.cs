using System.Collections.Concurrent;

namespace Lattice.Gateway.Billing;

/// <summary>One set of limits to take a request from: a key, one user of an app, or a workspace.</summary>
/// <param name="Key">What the counters are kept under: <c>k:&lt;key id&gt;</c>, <c>a:&lt;client id&gt;:&lt;user id&gt;</c>, <c>w:&lt;workspace id&gt;</c>.</param>
public readonly record struct LimitSubject(string Key, Limits Limits);

/// <summary>Which limit refused a request.</summary>
public enum RateRefusal : byte
{
    None,
    Requests,
    Tokens,
    /// <summary>The request alone asks for more tokens than the tokens-per-minute limit allows at all.</summary>
    TooLarge,
    Concurrency,
}

/// <summary>The limiter's answer: admitted or which limit refused, and what to tell the caller.</summary>
public readonly record struct RateDecision(RateRefusal Refusal, RateLimitReport Report, long Limit = 0)
{
    public bool Admitted => Refusal == RateRefusal.None;

    /// <summary>
    /// Set when the request was admitted from this node's allotments (<see cref="AllottedRateLimitCounters"/>), not the
    /// shared buckets: what it is given back to. Handed to <see cref="IRateLimitCounters.ReleaseAsync"/>.
    /// </summary>
    public RateAllotmentHold? Hold { get; init; }
}

/// <summary>
/// The rate-limit counters every node must agree on: in this node's memory (<see cref="LocalRateLimitCounters"/>), or
/// in the Redis every node shares (<see cref="RedisRateLimitCounters"/>, when <c>Lattice:Redis</c> is set), with the
/// same buckets and the same answers.
/// </summary>
public interface IRateLimitCounters
{
    /// <summary>
    /// Takes one request, <paramref name="tokens"/> tokens and one in-flight slot from every subject, all or nothing.
    /// </summary>
    ValueTask<RateDecision> TryAcquireAsync(LimitSubject[] subjects, long tokens, CancellationToken cancellationToken);

    /// <summary>
    /// Gives the in-flight slot back and settles the tokens taken at admission to <paramref name="actualTokens"/>; a
    /// request that never executed (<paramref name="executed"/> false: refused later in admission) gives its request back too.
    /// <paramref name="hold"/> is the admission's <see cref="RateDecision.Hold"/>.
    /// </summary>
    ValueTask ReleaseAsync(LimitSubject[] subjects, long reservedTokens, long actualTokens, bool executed = true, RateAllotmentHold? hold = null);
}

/// <summary>The arithmetic both counter stores share: how long a refused request waits, and what the caller is told.</summary>
public static class RateLimitMath
{
    /// <summary>Until a request bucket holding <paramref name="requests"/> has one whole request again.</summary>
    public static TimeSpan RequestsWait(double requests, long rpm) => TimeSpan.FromSeconds((1 - requests) * 60 / rpm);

    /// <summary>Until a token bucket holding <paramref name="bucket"/> has <paramref name="tokens"/> again.</summary>
    public static TimeSpan TokensWait(long tokens, double bucket, long tpm) => TimeSpan.FromSeconds((tokens - bucket) * 60 / tpm);

    /// <summary>A refusal for requests in flight: a second, the usual length of a request.</summary>
    public static readonly TimeSpan ConcurrencyWait = TimeSpan.FromSeconds(1);

    /// <summary>The tightest request and token limits among the subjects, given what each subject's buckets hold.</summary>
    public static RateLimitReport Report(LimitSubject[] subjects, ReadOnlySpan<double> requests, ReadOnlySpan<double> tokens, TimeSpan? retryAfter)
    {
        var report = new RateLimitReport { RetryAfter = retryAfter };
        for (var i = 0; i < subjects.Length; i++)
        {
            var limits = subjects[i].Limits;
            if (limits.RequestsPerMinute is { } rpm)
            {
                var remaining = (long)Math.Floor(Math.Max(0, requests[i]));
                if (!report.HasRequests || remaining < report.RemainingRequests)
                {
                    report = report with
                    {
                        HasRequests = true,
                        LimitRequests = rpm,
                        RemainingRequests = remaining,
                        ResetRequests = TimeSpan.FromSeconds((rpm - requests[i]) * 60 / rpm),
                    };
                }
            }
            if (limits.TokensPerMinute is { } tpm)
            {
                var remaining = (long)Math.Floor(Math.Max(0, tokens[i]));
                if (!report.HasTokens || remaining < report.RemainingTokens)
                {
                    report = report with
                    {
                        HasTokens = true,
                        LimitTokens = tpm,
                        RemainingTokens = remaining,
                        ResetTokens = TimeSpan.FromSeconds((tpm - tokens[i]) * 60 / tpm),
                    };
                }
            }
        }
        return report;
    }
}

/// <summary>
/// Token buckets, as OpenAI's limits behave: each limit holds a minute's worth and refills continuously, so
/// <c>remaining</c> is what may be sent now and <c>reset</c> is when the bucket is full again. Tokens are taken at
/// admission (an estimate) and settled to the actual count, which may put a bucket below zero until it refills.
/// </summary>
/// <remarks>
/// Why not <c>System.Threading.RateLimiting</c>'s token bucket: its permits cannot be handed back or charged after
/// the fact (the settle), it reports neither the reset time nor a limit's remainder to a caller, and it keeps time
/// with its own timer where these counters take a <see cref="TimeProvider"/>. Its concurrency limiter would fit the
/// in-flight count alone, but all three limits must be taken together, all or nothing.
/// </remarks>
public sealed class LocalRateLimitCounters(TimeProvider time) : IRateLimitCounters
{
    /// <summary>Above this many buckets, full idle ones are dropped (a full bucket is the same as none).</summary>
    private const int TrimAbove = 100_000;

    private readonly ConcurrentDictionary<string, Bucket> _buckets = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();
    private long _lastTrim;

    public ValueTask<RateDecision> TryAcquireAsync(LimitSubject[] subjects, long tokens, CancellationToken cancellationToken) =>
        ValueTask.FromResult(TryAcquire(subjects, tokens));

    public RateDecision TryAcquire(LimitSubject[] subjects, long tokens)
    {
        var now = time.GetTimestamp();
        var buckets = new Bucket[subjects.Length];
        for (var i = 0; i < subjects.Length; i++)
        {
            buckets[i] = _buckets.GetOrAdd(subjects[i].Key, static _ => new Bucket());
        }
        lock (_gate)
        {
            for (var i = 0; i < subjects.Length; i++)
            {
                var limits = subjects[i].Limits;
                var bucket = buckets[i];
                bucket.Refill(limits, now, time.TimestampFrequency);
                if (limits.MaxConcurrent is { } max && bucket.InFlight >= max)
                {
                    return new RateDecision(RateRefusal.Concurrency, Report(subjects, buckets, RateLimitMath.ConcurrencyWait), max);
                }
                if (limits.RequestsPerMinute is { } rpm && bucket.Requests < 1)
                {
                    return new RateDecision(RateRefusal.Requests, Report(subjects, buckets, RateLimitMath.RequestsWait(bucket.Requests, rpm)), rpm);
                }
                if (limits.TokensPerMinute is { } tpm)
                {
                    if (tokens > tpm)
                    {
                        return new RateDecision(RateRefusal.TooLarge, Report(subjects, buckets, null), tpm);
                    }
                    if (bucket.Tokens < tokens)
                    {
                        return new RateDecision(RateRefusal.Tokens, Report(subjects, buckets, RateLimitMath.TokensWait(tokens, bucket.Tokens, tpm)), tpm);
                    }
                }
            }
            for (var i = 0; i < subjects.Length; i++)
            {
                var limits = subjects[i].Limits;
                var bucket = buckets[i];
                if (limits.RequestsPerMinute is not null)
                {
                    bucket.Requests -= 1;
                }
                if (limits.TokensPerMinute is not null)
                {
                    bucket.Tokens -= tokens;
                }
                bucket.InFlight++;
            }
            var report = Report(subjects, buckets, null);
            if (_buckets.Count > TrimAbove && now - _lastTrim > time.TimestampFrequency)
            {
                _lastTrim = now;
                Trim(now);
            }
            return new RateDecision(RateRefusal.None, report);
        }
    }

    public ValueTask ReleaseAsync(LimitSubject[] subjects, long reservedTokens, long actualTokens, bool executed = true, RateAllotmentHold? hold = null)
    {
        Release(subjects, reservedTokens, actualTokens, executed);
        return default;
    }

    public void Release(LimitSubject[] subjects, long reservedTokens, long actualTokens, bool executed = true)
    {
        var now = time.GetTimestamp();
        lock (_gate)
        {
            foreach (var subject in subjects)
            {
                if (!_buckets.TryGetValue(subject.Key, out var bucket))
                {
                    continue;
                }
                bucket.Refill(subject.Limits, now, time.TimestampFrequency);
                if (subject.Limits.TokensPerMinute is { } tpm)
                {
                    bucket.Tokens = Math.Min(tpm, bucket.Tokens + reservedTokens - actualTokens);
                }
                if (!executed && subject.Limits.RequestsPerMinute is { } rpm)
                {
                    bucket.Requests = Math.Min(rpm, bucket.Requests + 1);
                }
                bucket.InFlight = Math.Max(0, bucket.InFlight - 1);
            }
        }
    }

    /// <summary>Under the lock: the tightest request and token limits among the subjects, after this request.</summary>
    private static RateLimitReport Report(LimitSubject[] subjects, Bucket[] buckets, TimeSpan? retryAfter)
    {
        Span<double> requests = stackalloc double[buckets.Length];
        Span<double> tokens = stackalloc double[buckets.Length];
        for (var i = 0; i < buckets.Length; i++)
        {
            requests[i] = buckets[i].Requests;
            tokens[i] = buckets[i].Tokens;
        }
        return RateLimitMath.Report(subjects, requests, tokens, retryAfter);
    }

    /// <summary>Drops buckets that are idle and full: their next use starts them full again, which is what they are.</summary>
    private void Trim(long now)
    {
        foreach (var (key, bucket) in _buckets)
        {
            if (bucket.InFlight == 0 && bucket.IsFullAt(now, time.TimestampFrequency))
            {
                _buckets.TryRemove(key, out _);
            }
        }
    }

    /// <summary>One subject's counters; changed only under the lock.</summary>
    private sealed class Bucket
    {
        public double Requests;
        public double Tokens;
        public int InFlight;
        private long _stamp;
        private Limits? _limits;

        /// <summary>Brings the bucket to <paramref name="now"/>; a limit it did not have before starts full.</summary>
        public void Refill(Limits limits, long now, long frequency)
        {
            var minutes = _limits is null || now <= _stamp ? 0 : (double)(now - _stamp) / frequency / 60;
            Requests = limits.RequestsPerMinute is { } rpm
                ? _limits?.RequestsPerMinute is null ? rpm : Math.Min(rpm, Requests + minutes * rpm)
                : 0;
            Tokens = limits.TokensPerMinute is { } tpm
                ? _limits?.TokensPerMinute is null ? tpm : Math.Min(tpm, Tokens + minutes * tpm)
                : 0;
            _stamp = Math.Max(_stamp, now);
            _limits = limits;
        }

        public bool IsFullAt(long now, long frequency)
        {
            if (_limits is not { } limits)
            {
                return true;
            }
            var minutes = (double)(now - _stamp) / frequency / 60;
            return (limits.RequestsPerMinute is not { } rpm || Requests + minutes * rpm >= rpm)
                && (limits.TokensPerMinute is not { } tpm || Tokens + minutes * tpm >= tpm);
        }
    }
}
