namespace Lattice.Gateway.Billing;

/// <summary>
/// How node-local allotments are sized and kept (<see cref="AllottedRateLimitCounters"/>, <see cref="AllottedBudgetCounters"/>),
/// in one place. A unit is what one request takes: a request, its token estimate, an in-flight slot, its worst-case cost.
/// </summary>
/// <remarks>
/// <para>A node asks for an allotment of a subject or budget line once it has admitted <see cref="WarmUp"/> requests of it
/// on the exact path, and asks for <see cref="Target"/> units; Redis grants at most the room left divided by
/// <see cref="Share"/>, and nothing when that is under <see cref="Minimum"/> units. So an allotment exists only while
/// the room left is at least <see cref="Share"/> × <see cref="Minimum"/> units (128 requests' worth), each takes at most
/// a sixteenth of what is left, and near a limit every node is back on the exact per-request path.</para>
/// <para>Room a node holds is a real reservation in Redis: requests and tokens are taken out of the shared bucket,
/// slots and budget room are counted as in flight or reserved. What it holds as slots or budget room is a lease renewed
/// while the node lives (<see cref="Lease"/>); a lease that lapses is freed (slots) or counted as spent (budget room: the
/// node may have spent any of it) by the next script that touches the key (<see cref="Lapse"/>).</para>
/// </remarks>
public static class Allotments
{
    /// <summary>Units an allotment is topped up to; a top-up is asked for when a part falls under half of it.</summary>
    public const int Target = 64;

    /// <summary>Fewer units than this are not worth an allotment: the subject or line stays on the exact path.</summary>
    public const int Minimum = 8;

    /// <summary>An allotment takes at most this fraction (1/Share) of the room left.</summary>
    public const int Share = 16;

    /// <summary>Exact admissions on this node before it asks for an allotment (a caller sending a few requests never holds one).</summary>
    public const int WarmUp = 8;

    /// <summary>Exact admissions on this node before it asks again after Redis granted nothing (near a limit).</summary>
    public const int AfterRefusal = 64;

    /// <summary>An allotment unused this long is given back.</summary>
    public static readonly TimeSpan Idle = TimeSpan.FromSeconds(5);

    /// <summary>How long a lease on slots or budget room lasts unless renewed; renewed when half of it is left.</summary>
    public static readonly TimeSpan Lease = TimeSpan.FromSeconds(60);

    /// <summary>How often a node flushes settled spend, renews leases and gives back idle allotments.</summary>
    public static readonly TimeSpan Tick = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Lua: <c>lapse(key, now)</c> removes the leases on <c>key</c> whose expiry (field <c>e:&lt;lease&gt;</c>, µs) has
    /// passed and returns what each held (field <c>n:&lt;lease&gt;</c>, an integer string); field <c>le</c> is the earliest
    /// expiry, so a key without a lapsed lease costs one <c>HGET</c>.
    /// </summary>
    public const string Lapse = """
        local function lapse(key, now)
          local freed = {}
          local le = tonumber(redis.call('HGET', key, 'le'))
          if not le or now <= le then return freed end
          local all = redis.call('HGETALL', key)
          local nextle = nil
          for j = 1, #all, 2 do
            if string.sub(all[j], 1, 2) == 'e:' then
              local lease = string.sub(all[j], 3)
              local e = tonumber(all[j + 1])
              if e < now then
                local n = redis.call('HGET', key, 'n:' .. lease)
                if n and n ~= '0' then freed[#freed + 1] = n end
                redis.call('HDEL', key, all[j], 'n:' .. lease)
              elseif not nextle or e < nextle then nextle = e end
            end
          end
          if nextle then redis.call('HSET', key, 'le', string.format('%.0f', nextle)) else redis.call('HDEL', key, 'le') end
          return freed
        end
        """;
}

/// <summary>What a request admitted from a node's rate-limit allotments took from: one allotment per subject.</summary>
public sealed class RateAllotmentHold
{
    internal RateAllotmentHold(RateAllotment[] entries) => Entries = entries;

    internal RateAllotment[] Entries { get; }
}

/// <summary>What a reservation taken from a node's budget allotments took from: one allotment per line.</summary>
public sealed class BudgetAllotmentHold
{
    internal BudgetAllotmentHold(BudgetAllotment[] entries) => Entries = entries;

    internal BudgetAllotment[] Entries { get; }
}

/// <summary>
/// One change to a node's allotment of a rate-limit subject: what it gives back, what it asks for, and the least of each
/// part worth taking (a part asked for and granted less than that makes the whole grant nothing).
/// </summary>
public readonly record struct RateAllotmentChange(
    double BackRequests, double BackTokens, long BackSlots,
    double WantRequests, double WantTokens, long WantSlots,
    double MinRequests, double MinTokens, long MinSlots);

/// <summary>
/// Redis's answer to a <see cref="RateAllotmentChange"/>: whether it granted, what it granted, what the shared bucket
/// holds after it, and the slots the node's lease now holds.
/// </summary>
public readonly record struct RateAllotmentGrant(bool Granted, double Requests, double Tokens, long Slots, double BucketRequests, double BucketTokens, long HeldSlots);

/// <summary>
/// Counts an allotment owner's round trips to Redis that are under way, so a caller (a test, on a fake clock) can wait
/// for the background ones to end instead of sleeping.
/// </summary>
public sealed class AllotmentSyncs
{
    private readonly Lock _gate = new();
    private TaskCompletionSource _quiet = NewQuiet();
    private int _underWay;
    private long _completed;

    /// <summary>Round trips that have ended, done or failed.</summary>
    public long Completed => Interlocked.Read(ref _completed);

    /// <summary>Completes once no round trip is under way.</summary>
    public Task QuietAsync(CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            return _underWay == 0 ? Task.CompletedTask : _quiet.Task.WaitAsync(cancellationToken);
        }
    }

    internal void Started()
    {
        lock (_gate)
        {
            _underWay++;
        }
    }

    internal void Ended()
    {
        TaskCompletionSource? quiet = null;
        lock (_gate)
        {
            Interlocked.Increment(ref _completed);
            if (--_underWay == 0)
            {
                quiet = _quiet;
                _quiet = NewQuiet();
            }
        }
        quiet?.TrySetResult();
    }

    private static TaskCompletionSource NewQuiet() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>
/// What the two allotment owners (<see cref="AllottedRateLimitCounters"/>, <see cref="AllottedBudgetCounters"/>) share:
/// the lock their allotments are changed under, the round trips that change them in Redis (counted in
/// <see cref="Syncs"/>), the tick that gives back, flushes and renews, and the give-back at a graceful stop.
/// </summary>
internal abstract class AllotmentOwner<TEntry, TChange> : IAsyncDisposable where TEntry : Allotment
{
    private readonly string _node = Guid.NewGuid().ToString("N")[..12];
    private ITimer? _timer;
    private long _leases;
    private int _ticking;

    protected AllotmentOwner(TimeProvider time) => Time = time;

    protected TimeProvider Time { get; }

    /// <summary>Allotments are changed only under this lock.</summary>
    protected Lock Gate { get; } = new();

    /// <summary>Set (under the lock) at a graceful stop: nothing more is taken.</summary>
    protected bool Stopped { get; private set; }

    /// <summary>This node's round trips that change its allotments (in the background, mostly).</summary>
    public AllotmentSyncs Syncs { get; } = new();

    /// <summary>Half a lease, in timestamp ticks: a lease with less left is renewed.</summary>
    protected long HalfLease => (long)(Allotments.Lease.TotalSeconds / 2 * Time.TimestampFrequency);

    /// <summary>When a lease renewed at <paramref name="now"/> ends, in timestamp ticks.</summary>
    protected long LeaseEnd(long now) => now + (long)(Allotments.Lease.TotalSeconds * Time.TimestampFrequency);

    /// <summary>Starts the tick; called once the owner is built.</summary>
    protected void StartTicking() =>
        _timer = Time.CreateTimer(static state => ((AllotmentOwner<TEntry, TChange>)state!).OnTick(), this, Allotments.Tick, Allotments.Tick);

    /// <summary>Under the lock: a new lease name, one per allotment, so a replaced allotment never mixes with its successor.</summary>
    protected string NextLease() => $"{_node}.{++_leases}";

    /// <summary>
    /// Under the lock, each tick: whether <paramref name="entry"/> has been unused for <see cref="Allotments.Idle"/>; an
    /// idle allotment is no longer admitted from (given back by the caller) and has to warm up again.
    /// </summary>
    protected bool WindDownIfIdle(TEntry entry, long now)
    {
        var idle = Time.GetElapsedTime(entry.LastUsed, now) >= Allotments.Idle;
        if (idle && entry.Active)
        {
            entry.Active = false;
            entry.Exact = 0;
            entry.AskAfter = Allotments.WarmUp;
        }
        return idle;
    }

    /// <summary>Under the lock: this node's allotment for each of <paramref name="items"/>; none once stopped (every request then goes to Redis).</summary>
    protected TEntry[] EntriesFor<TItem>(TItem[] items, Func<TItem, TEntry> entryFor)
    {
        if (Stopped)
        {
            return [];
        }
        var entries = new TEntry[items.Length];
        for (var i = 0; i < items.Length; i++)
        {
            entries[i] = entryFor(items[i]);
        }
        return entries;
    }

    /// <summary>One round trip that applies <paramref name="change"/> to <paramref name="entry"/> (marked syncing under the lock).</summary>
    protected abstract Task ApplyAsync(TEntry entry, TChange change);

    /// <summary>Under the lock, each tick: adds the round trips to make (give-backs, flushes, renewals); forgets empty allotments.</summary>
    protected abstract void CollectTick(long now, List<(TEntry, TChange)> syncs);

    /// <summary>Under the lock, at a graceful stop: adds what to give back.</summary>
    protected abstract void CollectReturns(List<(TEntry, TChange)> returns);

    protected void Start(List<(TEntry, TChange)>? syncs)
    {
        if (syncs is null)
        {
            return;
        }
        foreach (var (entry, change) in syncs)
        {
            _ = SyncAsync(entry, change);
        }
    }

    protected async Task SyncAsync(TEntry entry, TChange change)
    {
        Syncs.Started();
        try
        {
            await ApplyAsync(entry, change);
        }
        finally
        {
            Syncs.Ended();
        }
    }

    /// <summary>Gives back everything this node holds that is not in flight (a graceful stop: requests have drained).</summary>
    public async ValueTask DisposeAsync()
    {
        if (_timer is not null)
        {
            await _timer.DisposeAsync();
        }
        List<(TEntry, TChange)> returns = [];
        lock (Gate)
        {
            Stopped = true;
            CollectReturns(returns);
        }
        await Task.WhenAll(returns.Select(r => SyncAsync(r.Item1, r.Item2)));
        // A round trip that was under way (a top-up, a flush, a renewal) gives back what is left when it ends, now that
        // the owner is stopped: wait for those too, before the connection to Redis goes.
        await Syncs.QuietAsync();
        GC.SuppressFinalize(this);
    }

    private void OnTick()
    {
        if (Interlocked.Exchange(ref _ticking, 1) == 0)
        {
            _ = TickAsync();
        }
    }

    private async Task TickAsync()
    {
        try
        {
            var now = Time.GetTimestamp();
            List<(TEntry, TChange)> syncs = [];
            lock (Gate)
            {
                CollectTick(now, syncs);
            }
            await Task.WhenAll(syncs.Select(s => SyncAsync(s.Item1, s.Item2)));
        }
        finally
        {
            Volatile.Write(ref _ticking, 0);
        }
    }
}

/// <summary>What both kinds of allotment keep besides their room; changed only under their owner's lock.</summary>
internal abstract class Allotment(string lease)
{
    /// <summary>The lease it is held under in Redis: one per allotment, so a replaced one never mixes with its successor.</summary>
    public readonly string Lease = lease;
    /// <summary>Requests are admitted from it (granted and not wound down).</summary>
    public bool Active;
    /// <summary>A round trip that changes it is under way.</summary>
    public bool Syncing;
    public long LeaseUntil;
    public long LastUsed;
    /// <summary>Exact admissions since it last asked; it asks at <see cref="AskAfter"/>.</summary>
    public int Exact;
    public int AskAfter = Allotments.WarmUp;

    /// <summary>Counts an exact admission; whether it is time to ask (always, for an allotment being admitted from).</summary>
    public bool ShouldAsk() => Active || ++Exact >= AskAfter;

    /// <summary>Redis granted nothing (near a limit): back to the exact path, asking again only after many exact admissions.</summary>
    public void Refused()
    {
        Active = false;
        Exact = 0;
        AskAfter = Allotments.AfterRefusal;
    }
}
