using Lattice.Gateway.Persistence;

namespace Lattice.Gateway.Billing;

/// <summary>
/// The rate limits every node shares in Redis (<see cref="RedisRateLimitCounters"/>), admitted from node-local
/// allotments while a subject is far from its limits: the node takes a share of a subject's requests, tokens and
/// in-flight slots out of the shared bucket in one round trip (<see cref="RedisRateLimitCounters.AllotAsync"/>), admits
/// from it in memory, settles into it in memory, and tops it up in the background before it runs out; idle, it gives it
/// back. Near a limit (Redis grants nothing, see <see cref="Allotments"/>) and for a subject that has no allotment yet,
/// a request takes the exact per-request path, with its exact answers.
/// </summary>
/// <remarks>
/// <para>What a node holds was taken out of the shared bucket, so the requests admitted across all nodes never exceed
/// what the limits allow; an allotment only admits early what the bucket held.</para>
/// <para>The <c>x-ratelimit-remaining-*</c> figures of a request admitted locally are the bucket as this node last saw it
/// (at its last top-up, refilled since at the limit's rate) plus what its allotment still holds: other nodes' requests
/// since that top-up are not seen. A refusal is never answered from an allotment: it comes from the exact path.</para>
/// <para>A node that dies loses what it held: its requests and tokens come back as the bucket refills (within a
/// minute), its slots when their lease lapses (<see cref="Allotments.Lease"/>).</para>
/// <para>While Redis cannot be reached, nothing is admitted from an allotment: requests take the exact path and get its
/// answer (503, or served uncounted when failing open), as without allotments.</para>
/// </remarks>
internal sealed partial class AllottedRateLimitCounters : AllotmentOwner<RateAllotment, RateAllotmentChange>, IRateLimitCounters
{
    private readonly RedisRateLimitCounters _shared;
    private readonly RedisStore _redis;
    private readonly ILogger<AllottedRateLimitCounters> _logger;
    private readonly Dictionary<string, RateAllotment> _entries = new(StringComparer.Ordinal);
    /// <summary>Allotments replaced because their subject's limits changed, kept until they have given everything back.</summary>
    private readonly List<RateAllotment> _retired = [];

    public AllottedRateLimitCounters(RedisRateLimitCounters shared, RedisStore redis, TimeProvider time, ILogger<AllottedRateLimitCounters> logger)
        : base(time)
    {
        _shared = shared;
        _redis = redis;
        _logger = logger;
        StartTicking();
    }

    public async ValueTask<RateDecision> TryAcquireAsync(LimitSubject[] subjects, long tokens, CancellationToken cancellationToken)
    {
        if (!_redis.IsConnected)
        {
            return await _shared.TryAcquireAsync(subjects, tokens, cancellationToken);
        }
        var now = Time.GetTimestamp();
        List<(RateAllotment, RateAllotmentChange)>? syncs = null;
        RateDecision? local = null;
        RateAllotment[] entries;
        lock (Gate)
        {
            entries = EntriesFor(subjects, EntryFor);
            var all = entries.Length > 0;
            foreach (var e in entries)
            {
                all &= e.CanTake(tokens);
            }
            if (all)
            {
                foreach (var e in entries)
                {
                    e.Take(tokens, now);
                    if (!e.Syncing && e.TopUp(tokens) is { } change)
                    {
                        e.Syncing = true;
                        (syncs ??= []).Add((e, change));
                    }
                }
                local = new RateDecision(RateRefusal.None, Report(subjects, entries, now)) { Hold = new RateAllotmentHold(entries) };
            }
        }
        Start(syncs);
        if (local is { } admitted)
        {
            return admitted;
        }

        var decision = await _shared.TryAcquireAsync(subjects, tokens, cancellationToken);
        if (decision.Admitted && entries.Length > 0)
        {
            lock (Gate)
            {
                foreach (var e in entries)
                {
                    e.LastUsed = now;
                    // A subject without an allotment asks for one once it has been busy here; one with an allotment
                    // that ran short (and has no top-up under way) asks for more. An allotment replaced (limits changed)
                    // or forgotten as idle while this request was on the exact path asks for nothing: no tick would ever
                    // give back what it was granted.
                    if (e.Syncing || !IsLive(e) || !e.ShouldAsk())
                    {
                        continue;
                    }
                    if (e.TopUp(tokens) is { } change)
                    {
                        e.Syncing = true;
                        (syncs ??= []).Add((e, change));
                    }
                }
            }
            Start(syncs);
        }
        return decision;
    }

    public ValueTask ReleaseAsync(LimitSubject[] subjects, long reservedTokens, long actualTokens, bool executed = true, RateAllotmentHold? hold = null)
    {
        if (hold is null)
        {
            return _shared.ReleaseAsync(subjects, reservedTokens, actualTokens, executed);
        }
        var now = Time.GetTimestamp();
        lock (Gate)
        {
            // Settled into the allotment it was taken from: the tokens it did not use, its request if it never ran.
            foreach (var e in hold.Entries)
            {
                var limits = e.Subject.Limits;
                if (limits.TokensPerMinute is not null)
                {
                    e.Tokens += reservedTokens - actualTokens;
                }
                if (!executed && limits.RequestsPerMinute is not null)
                {
                    e.Requests += 1;
                }
                e.InFlight--;
                e.LastUsed = now;
            }
        }
        return default;
    }

    protected override void CollectReturns(List<(RateAllotment, RateAllotmentChange)> returns)
    {
        foreach (var e in _entries.Values.Concat(_retired))
        {
            if (!e.Syncing && e.GiveBack() is { } change)
            {
                e.Syncing = true;
                returns.Add((e, change));
            }
        }
    }

    /// <summary>Under the lock: whether <paramref name="e"/> is its subject's allotment now (not replaced, not forgotten).</summary>
    private bool IsLive(RateAllotment e) => _entries.TryGetValue(e.Subject.Key, out var live) && live == e;

    /// <summary>Under the lock: this node's allotment of <paramref name="subject"/>, a new one when its limits changed.</summary>
    private RateAllotment EntryFor(LimitSubject subject)
    {
        if (_entries.TryGetValue(subject.Key, out var e))
        {
            if (e.Subject.Limits == subject.Limits)
            {
                return e;
            }
            // Room taken under other limits is not this limit's: nothing is taken from it any more, its slots go back by
            // the next tick, and every round trip for it from now on is sent under the new limits (under the old ones, the
            // script would refill and cap the shared bucket by them).
            e.Retire();
            _retired.Add(e);
        }
        // Every retired allotment of this subject sends its round trips under these limits from now on — also one
        // retired under limits whose own allotment has gone idle and been dropped since.
        foreach (var retired in _retired)
        {
            if (string.Equals(retired.Subject.Key, subject.Key, StringComparison.Ordinal))
            {
                retired.Current = subject.Limits;
            }
        }
        e = new RateAllotment(subject, NextLease());
        _entries[subject.Key] = e;
        return e;
    }

    /// <summary>Under the lock: the tightest limits as this node sees them, the shared bucket plus what it holds.</summary>
    private RateLimitReport Report(LimitSubject[] subjects, RateAllotment[] entries, long now)
    {
        Span<double> requests = stackalloc double[entries.Length];
        Span<double> tokens = stackalloc double[entries.Length];
        for (var i = 0; i < entries.Length; i++)
        {
            var e = entries[i];
            var minutes = Time.GetElapsedTime(e.SyncedAt, now).TotalMinutes;
            if (subjects[i].Limits.RequestsPerMinute is { } rpm)
            {
                requests[i] = Math.Min(rpm, Math.Min(rpm, e.BucketRequests + minutes * rpm) + e.Requests);
            }
            if (subjects[i].Limits.TokensPerMinute is { } tpm)
            {
                tokens[i] = Math.Min(tpm, Math.Min(tpm, e.BucketTokens + minutes * tpm) + e.Tokens);
            }
        }
        return RateLimitMath.Report(subjects, requests, tokens, null);
    }

    /// <summary>One round trip: applies <paramref name="change"/> to <paramref name="e"/> (marked syncing, its back parts already taken out).</summary>
    protected override async Task ApplyAsync(RateAllotment e, RateAllotmentChange change)
    {
        try
        {
            var grant = await _shared.AllotAsync(e.Subject with { Limits = e.Current }, e.Lease, Time.GetUtcNow() + Allotments.Lease, change, Allotments.Share);
            var now = Time.GetTimestamp();
            RateAllotmentChange? giveBack = null;
            lock (Gate)
            {
                e.Syncing = false;
                e.Slots = grant.HeldSlots;
                e.BucketRequests = grant.BucketRequests;
                e.BucketTokens = grant.BucketTokens;
                e.SyncedAt = now;
                e.LeaseUntil = LeaseEnd(now);
                var wanted = change.WantRequests > 0 || change.WantTokens > 0 || change.WantSlots > 0;
                if (grant.Granted && wanted && IsLive(e) && !Stopped)
                {
                    e.Requests += grant.Requests;
                    e.Tokens += grant.Tokens;
                    e.Active = true;
                }
                else if (wanted)
                {
                    // Near a limit (or replaced, or stopped): back to the exact path, and what is left goes back at once.
                    e.Requests += grant.Requests;
                    e.Tokens += grant.Tokens;
                    e.Refused();
                    giveBack = e.GiveBack();
                    e.Syncing = giveBack is not null;
                }
                else if (Stopped)
                {
                    // A flush or renewal that was under way at a graceful stop: what is left goes back now, not at the lease's end.
                    giveBack = e.GiveBack();
                    e.Syncing = giveBack is not null;
                }
            }
            if (giveBack is { } back)
            {
                await SyncAsync(e, back);
            }
        }
        catch (Exception ex)
        {
            lock (Gate)
            {
                e.Syncing = false;
                // Nothing changed in Redis: what was to be given back is still this node's.
                e.Requests += change.BackRequests;
                e.Tokens += change.BackTokens;
            }
            Log.SyncFailed(_logger, ex.Message);
        }
    }

    /// <summary>Gives back what is idle or no longer admitted from, renews leases about to lapse, forgets empty allotments.</summary>
    protected override void CollectTick(long now, List<(RateAllotment, RateAllotmentChange)> syncs)
    {
        foreach (var e in _entries.Values.Concat(_retired).ToList())
        {
            if (e.Syncing)
            {
                continue;
            }
            var idle = WindDownIfIdle(e, now);
            if (!e.Active && e.GiveBack() is { } back)
            {
                e.Syncing = true;
                syncs.Add((e, back));
            }
            else if (e.Slots > 0 && e.LeaseUntil - now < HalfLease)
            {
                e.Syncing = true;
                syncs.Add((e, default));
            }
            else if (!e.Active && e.InFlight == 0 && e.Slots == 0 && (idle || e.Retired))
            {
                if (e.Retired)
                {
                    _retired.Remove(e);
                }
                else
                {
                    _entries.Remove(e.Subject.Key);
                }
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 9110, Level = LogLevel.Debug, Message = "Could not change a rate-limit allotment in Redis: {Reason}")]
        public static partial void SyncFailed(ILogger logger, string reason);
    }
}

/// <summary>
/// One node's allotment of one rate-limit subject (<see cref="AllottedRateLimitCounters"/>): what it holds of the
/// subject's requests, tokens and slots, and what it last saw of the shared bucket. Changed only under the owner's lock.
/// </summary>
internal sealed class RateAllotment(LimitSubject subject, string lease) : Allotment(lease)
{
    public readonly LimitSubject Subject = subject;
    /// <summary>
    /// The limits its round trips are sent under: <see cref="Subject"/>'s, or once retired the subject's newest (the script
    /// refills and caps the shared bucket by the limits it is sent).
    /// </summary>
    public Limits Current = subject.Limits;
    public bool Retired;
    public double Requests;
    public double Tokens;
    public long Slots;
    public int InFlight;
    public double BucketRequests;
    public double BucketTokens;
    public long SyncedAt;

    public bool CanTake(long tokens)
    {
        var limits = Subject.Limits;
        return Active
            && (limits.RequestsPerMinute is null || Requests >= 1)
            && (limits.TokensPerMinute is null || Tokens >= tokens)
            && (limits.MaxConcurrent is null || InFlight < Slots);
    }

    public void Take(long tokens, long now)
    {
        var limits = Subject.Limits;
        if (limits.RequestsPerMinute is not null)
        {
            Requests -= 1;
        }
        if (limits.TokensPerMinute is not null)
        {
            Tokens -= tokens;
        }
        InFlight++;
        LastUsed = now;
    }

    /// <summary>What to ask for, when a part is under half of <see cref="Allotments.Target"/> units (tokens in units of <paramref name="tokens"/>).</summary>
    public RateAllotmentChange? TopUp(long tokens)
    {
        var limits = Subject.Limits;
        const int target = Allotments.Target, min = Allotments.Minimum;
        var unit = Math.Max(1, tokens);
        double wantRequests = limits.RequestsPerMinute is not null && Requests < target / 2 ? target - Requests : 0;
        double wantTokens = limits.TokensPerMinute is not null && Tokens < target / 2 * unit ? target * unit - Tokens : 0;
        long wantSlots = limits.MaxConcurrent is not null && Slots - InFlight < target / 2 ? target - (Slots - InFlight) : 0;
        if (wantRequests <= 0 && wantTokens <= 0 && wantSlots <= 0)
        {
            return null;
        }
        return new RateAllotmentChange(0, 0, 0, wantRequests, wantTokens, wantSlots, min, min * unit, min);
    }

    /// <summary>
    /// Its subject's limits changed: nothing more is admitted from it, and the requests and tokens it holds are dropped
    /// rather than given back. They were taken out of the bucket under the old limits; the bucket has since been capped at
    /// the new ones and may have been spent down to nothing, so giving them back would admit more than the new limit in
    /// that minute. The bucket refills them at the new rate (the subject is refused early by at most what was held, for
    /// at most a minute). Slots are counts, not rates: they are given back.
    /// </summary>
    public void Retire()
    {
        Retired = true;
        Active = false;
        Requests = 0;
        Tokens = 0;
    }

    /// <summary>Takes out everything not in flight to give back; null when there is nothing.</summary>
    public RateAllotmentChange? GiveBack()
    {
        if (Retired)
        {
            // Settled into it after it retired (a request's unused tokens): dropped too, see Retire.
            Requests = 0;
            Tokens = 0;
        }
        var slots = Math.Max(0, Slots - InFlight);
        if (Requests == 0 && Tokens == 0 && slots == 0)
        {
            return null;
        }
        var change = new RateAllotmentChange(Requests, Tokens, slots, 0, 0, 0, 0, 0, 0);
        Requests = 0;
        Tokens = 0;
        return change;
    }
}
