using Lattice.Gateway.Persistence;

namespace Lattice.Gateway.Billing;

/// <summary>
/// The budgets every node shares in Redis (<see cref="RedisBudgetCounters"/>), reserved from node-local allotments
/// while a line is far from its amount: the node reserves a share of a line's room in Redis in one round trip
/// (<see cref="RedisBudgetCounters.AllotAsync"/>), takes requests' reservations from it in memory, settles them into it
/// in memory, and moves what they spent to the shared counter in batches: with each top-up, every
/// <see cref="Allotments.Tick"/>, before a status is read on this node, and when it gives the allotment back (idle, or a
/// graceful stop). Near the amount (Redis grants nothing, see <see cref="Allotments"/>) and for a line without an
/// allotment yet, a request takes the exact per-request path.
/// </summary>
/// <remarks>
/// <para>An allotment is reserved in Redis like a request in flight, so a line is never overspent beyond what it would
/// be on the exact path (a request costing more than its worst case); its refusals come from the exact path.</para>
/// <para>A budget's <c>reserved_usd</c> includes the room nodes hold as allotments, and its <c>spent_usd</c> lags what
/// other nodes settled by at most a tick (this node's is flushed before it answers).</para>
/// <para>A node that dies leaves its allotment held until its lease lapses (<see cref="Allotments.Lease"/>); then the
/// whole of it is counted as spent, since the node may have spent any of it: the line refuses early by at most what the
/// node held (a sixteenth of the room left when it took it, and no more than <see cref="Allotments.Target"/> requests'
/// worst-case cost), never overspends.</para>
/// </remarks>
internal sealed partial class AllottedBudgetCounters : AllotmentOwner<BudgetAllotment, AllottedBudgetCounters.Change>, IBudgetCounters
{
    private readonly RedisBudgetCounters _shared;
    private readonly RedisStore _redis;
    private readonly ILogger<AllottedBudgetCounters> _logger;
    /// <summary>This node's allotment of each line and month, by <see cref="Key"/>.</summary>
    private readonly Dictionary<string, BudgetAllotment> _entries = new(StringComparer.Ordinal);
    /// <summary>Allotments replaced because their line's amount or month changed, kept until they have given everything back.</summary>
    private readonly List<BudgetAllotment> _retired = [];

    public AllottedBudgetCounters(RedisBudgetCounters shared, RedisStore redis, TimeProvider time, ILogger<AllottedBudgetCounters> logger)
        : base(time)
    {
        _shared = shared;
        _redis = redis;
        _logger = logger;
        StartTicking();
    }

    public async ValueTask<BudgetReservation> TryReserveAsync(BudgetLine[] lines, long picoUsd, DateTimeOffset at, CancellationToken cancellationToken)
    {
        if (!_redis.IsConnected)
        {
            return await _shared.TryReserveAsync(lines, picoUsd, at, cancellationToken);
        }
        var period = LocalBudgetCounters.PeriodStart(at);
        var now = Time.GetTimestamp();
        List<(BudgetAllotment, Change)>? syncs = null;
        BudgetReservation? local = null;
        BudgetAllotment[] entries;
        lock (Gate)
        {
            entries = EntriesFor(lines, line => EntryFor(line, period));
            var all = entries.Length > 0;
            foreach (var e in entries)
            {
                all &= e.Active && (picoUsd == 0 || e.Room >= picoUsd);
            }
            if (all)
            {
                foreach (var e in entries)
                {
                    e.Room -= picoUsd;
                    e.Reserved += picoUsd;
                    e.LastUsed = now;
                    if (picoUsd > 0)
                    {
                        e.Unit = Unit(picoUsd);
                    }
                    if (!e.Syncing && e.Room < Allotments.Target / 2 * e.Unit)
                    {
                        (syncs ??= []).Add((e, e.TopUp()));
                    }
                }
                local = new BudgetReservation(lines, period, picoUsd, null) { Hold = new BudgetAllotmentHold(entries) };
            }
        }
        Start(syncs);
        if (local is not null)
        {
            return local;
        }

        var reservation = await _shared.TryReserveAsync(lines, picoUsd, at, cancellationToken);
        if (reservation.Admitted && picoUsd > 0 && entries.Length > 0)
        {
            lock (Gate)
            {
                foreach (var e in entries)
                {
                    e.LastUsed = now;
                    e.Unit = Unit(picoUsd);
                    // A line's allotment replaced (or forgotten) while this request was on the exact path asks for nothing.
                    if (e.Syncing || !IsLive(e) || !e.ShouldAsk() || e.Room >= Allotments.Target / 2 * e.Unit)
                    {
                        continue;
                    }
                    (syncs ??= []).Add((e, e.TopUp()));
                }
            }
            Start(syncs);
        }
        return reservation;
    }

    public ValueTask SettleAsync(BudgetReservation reservation, long actualPicoUsd)
    {
        if (reservation.Hold is not { } hold)
        {
            return _shared.SettleAsync(reservation, actualPicoUsd);
        }
        var now = Time.GetTimestamp();
        lock (Gate)
        {
            // Settled into the allotment it was reserved from; the spend reaches Redis with the next flush.
            foreach (var e in hold.Entries)
            {
                e.Reserved -= reservation.PicoUsd;
                e.Room += reservation.PicoUsd - actualPicoUsd;
                e.Pending += actualPicoUsd;
                e.LastUsed = now;
            }
        }
        return default;
    }

    public async ValueTask<BudgetStatus> StatusAsync(BudgetPolicy budget, string? userId, DateTimeOffset at, CancellationToken cancellationToken)
    {
        // What this node settled is counted first (after a round trip under way, which may carry part of it), in its
        // allotment of the line and in those it replaced; other nodes' reaches Redis within a tick.
        var key = Key(new BudgetLine(budget, userId), LocalBudgetCounters.PeriodStart(at));
        for (var attempt = 0; attempt < 2; attempt++)
        {
            List<(BudgetAllotment, Change)> flushes = [];
            Task? underWay = null;
            lock (Gate)
            {
                if (FlushesOf(key, flushes))
                {
                    underWay = Syncs.QuietAsync(cancellationToken);
                }
            }
            await Task.WhenAll(flushes.Select(f => SyncAsync(f.Item1, f.Item2)));
            if (underWay is null)
            {
                break;
            }
            await underWay;
        }
        return await _shared.StatusAsync(budget, userId, at, cancellationToken);
    }

    protected override void CollectReturns(List<(BudgetAllotment, Change)> returns)
    {
        foreach (var e in _entries.Values.Concat(_retired))
        {
            e.Active = false;
            if (!e.Syncing && e.Held != 0)
            {
                returns.Add((e, e.GiveBack()));
            }
        }
    }

    /// <summary>The unit an allotment is sized in: a request's worst-case cost (kept small enough for <see cref="Allotments.Target"/> of them to add up).</summary>
    private static long Unit(long picoUsd) => Math.Clamp(picoUsd, 1, long.MaxValue / (4 * Allotments.Target));

    /// <summary>A line's counter in a month, as Redis keys it (budget, month, user): not its amount, which can change.</summary>
    private static string Key(BudgetLine line, DateTimeOffset period) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{line.Budget.Id}|{period.UtcTicks}|{line.UserId}");

    /// <summary>Under the lock: whether <paramref name="e"/> is its line's allotment now (not replaced, not forgotten).</summary>
    private bool IsLive(BudgetAllotment e) => _entries.TryGetValue(e.Key, out var live) && live == e;

    /// <summary>
    /// Under the lock: this node's allotment of <paramref name="line"/> in <paramref name="period"/>, a new one when the
    /// line's amount changed (or its month began). The one it replaces is reserved from no more: the next tick gives its
    /// room back and flushes its spend, and its spend is counted against the line's amount now (the thresholds its alerts
    /// are raised at).
    /// </summary>
    private BudgetAllotment EntryFor(BudgetLine line, DateTimeOffset period)
    {
        var key = Key(line, period);
        var amount = line.Budget.AmountPicoUsd;
        if (_entries.TryGetValue(key, out var e))
        {
            if (e.Line.Budget.AmountPicoUsd == amount)
            {
                return e;
            }
            Retire(e);
        }
        else
        {
            // A new month: the line's allotment of a past one goes the same way.
            List<BudgetAllotment>? past = null;
            foreach (var other in _entries.Values)
            {
                if (other.Period < period && string.Equals(other.Line.Budget.Id, line.Budget.Id, StringComparison.Ordinal)
                    && string.Equals(other.Line.UserId, line.UserId, StringComparison.Ordinal))
                {
                    (past ??= []).Add(other);
                }
            }
            if (past is not null)
            {
                foreach (var other in past)
                {
                    _entries.Remove(other.Key);
                    Retire(other);
                }
            }
        }
        // Every retired allotment of this line and month sends its round trips under this amount from now on — also one
        // retired under an amount whose own allotment has gone idle and been dropped since.
        foreach (var retired in _retired)
        {
            if (string.Equals(retired.Key, key, StringComparison.Ordinal))
            {
                retired.Amount = amount;
            }
        }
        e = new BudgetAllotment(key, line, period, NextLease());
        _entries[key] = e;
        return e;
    }

    /// <summary>Under the lock: <paramref name="e"/>, about to leave <see cref="_entries"/>, is reserved from no more and kept until it has given everything back.</summary>
    private void Retire(BudgetAllotment e)
    {
        e.Active = false;
        _retired.Add(e);
    }

    /// <summary>
    /// Under the lock: adds a flush of the spend this node settled in the line and month <paramref name="key"/> (its
    /// allotment, and those it replaced) to <paramref name="flushes"/>; whether some is in a round trip under way.
    /// </summary>
    private bool FlushesOf(string key, List<(BudgetAllotment, Change)> flushes)
    {
        var underWay = false;
        if (_entries.TryGetValue(key, out var live))
        {
            underWay |= FlushOf(live);
        }
        foreach (var e in _retired)
        {
            if (string.Equals(e.Key, key, StringComparison.Ordinal))
            {
                underWay |= FlushOf(e);
            }
        }
        return underWay;

        bool FlushOf(BudgetAllotment e)
        {
            if (e.Pending == 0)
            {
                return false;
            }
            if (e.Syncing)
            {
                return true;
            }
            flushes.Add((e, e.Flush()));
            return false;
        }
    }

    /// <summary>One round trip: applies <paramref name="change"/>, taken out of <paramref name="e"/> (now marked syncing) under the lock.</summary>
    protected override async Task ApplyAsync(BudgetAllotment e, Change change)
    {
        long? granted;
        try
        {
            granted = await _shared.AllotAsync(e.Line with { Budget = e.Line.Budget with { AmountPicoUsd = e.Amount } }, e.Period, e.Lease, Time.GetUtcNow() + Allotments.Lease, change.Held, change.Spent, change.Back,
                change.Want, change.Min, Allotments.Share, CancellationToken.None);
        }
        catch (Exception ex)
        {
            lock (Gate)
            {
                // Nothing changed in Redis: the spend and the room are still this node's to send.
                e.Syncing = false;
                e.Pending += change.Spent;
                e.Room += change.Back;
            }
            Log.SyncFailed(_logger, e.Line.Budget.Id, ex.Message);
            return;
        }
        var now = Time.GetTimestamp();
        Change? giveBack = null;
        lock (Gate)
        {
            e.Syncing = false;
            if (granted is not { } grant)
            {
                // Redis no longer holds this allotment (its lease lapsed and was counted as spent, or Redis lost the
                // line and rebuilds it from the ledger): what it held is gone; requests in flight settle into nothing.
                e.Active = false;
                e.Room = e.Reserved = e.Pending = e.Held = 0;
                if (IsLive(e))
                {
                    _entries.Remove(e.Key);
                }
                else
                {
                    _retired.Remove(e);
                }
                return;
            }
            e.Held = change.Held - change.Spent - change.Back + grant;
            e.Room += grant;
            e.LeaseUntil = LeaseEnd(now);
            if (change.Want > 0)
            {
                if (grant > 0 && !Stopped && IsLive(e))
                {
                    e.Active = true;
                }
                else
                {
                    // Near the amount (or replaced, or stopped): back to the exact path, and what is left goes back at once
                    // for it to use — the room, and the spend settled while this round trip was under way (at a stop no
                    // tick follows to flush it: it would show only once the lease lapsed, as spent room).
                    e.Refused();
                    if (e.Room != 0 || e.Pending != 0)
                    {
                        giveBack = e.GiveBack();
                    }
                }
            }
            else if (Stopped && (e.Room != 0 || e.Pending != 0))
            {
                // A flush or renewal that was under way at a graceful stop: the room goes back now, not counted as spent
                // when the lease lapses.
                giveBack = e.GiveBack();
            }
        }
        if (giveBack is { } back)
        {
            await SyncAsync(e, back);
        }
    }

    /// <summary>
    /// Flushes settled spend, gives back what is idle or no longer reserved from (replaced: the line's amount or month
    /// changed), renews leases about to lapse, forgets empty allotments.
    /// </summary>
    protected override void CollectTick(long now, List<(BudgetAllotment, Change)> syncs)
    {
        foreach (var e in _entries.Values.Concat(_retired).ToList())
        {
            if (e.Syncing)
            {
                continue;
            }
            var idle = WindDownIfIdle(e, now);
            if (!e.Active && e.Room != 0)
            {
                syncs.Add((e, e.GiveBack()));
            }
            else if (e.Pending != 0 || (e.Held != 0 && e.LeaseUntil - now < HalfLease))
            {
                syncs.Add((e, e.Flush()));
            }
            else if (!e.Active && e.Held == 0 && !IsLive(e))
            {
                // Replaced, and everything it held has been given back.
                _retired.Remove(e);
            }
            else if (!e.Active && e.Held == 0 && idle)
            {
                _entries.Remove(e.Key);
            }
        }
    }

    /// <summary>One change sent to Redis: what the node holds by its count, the spend it moves, the room it gives back, what it asks for.</summary>
    internal readonly record struct Change(long Held, long Spent, long Back, long Want, long Min);

    private static partial class Log
    {
        [LoggerMessage(EventId = 9111, Level = LogLevel.Debug, Message = "Could not change an allotment of budget {BudgetId} in Redis: {Reason}")]
        public static partial void SyncFailed(ILogger logger, string budgetId, string reason);
    }
}

/// <summary>
/// One node's allotment of one budget line in one period (<see cref="AllottedBudgetCounters"/>). Held = Room + Reserved +
/// Pending is what Redis holds for its lease. Changed only under the owner's lock.
/// </summary>
internal sealed class BudgetAllotment(string key, BudgetLine line, DateTimeOffset period, string lease) : Allotment(lease)
{
    public readonly string Key = key;
    public readonly BudgetLine Line = line;
    public readonly DateTimeOffset Period = period;
    /// <summary>The line's amount its round trips are sent with (thresholds, sizing): <see cref="Line"/>'s, or once replaced under a new amount, the newest.</summary>
    public long Amount = line.Budget.AmountPicoUsd;
    /// <summary>Room left to reserve from.</summary>
    public long Room;
    /// <summary>Reserved by requests in flight.</summary>
    public long Reserved;
    /// <summary>Settled spend not yet in Redis.</summary>
    public long Pending;
    /// <summary>What Redis holds for this allotment, as of the last change this node made.</summary>
    public long Held;
    /// <summary>The worst-case cost of the last request: the unit the allotment is sized in.</summary>
    public long Unit = 1;

    /// <summary>Moves the pending spend out to send, and asks for enough room to be back at the target (marks the allotment syncing).</summary>
    public AllottedBudgetCounters.Change TopUp() =>
        Flush() with { Want = Math.Max(0, Allotments.Target * Unit - Room), Min = Allotments.Minimum * Unit };

    /// <summary>Moves the pending spend out to send (marks the allotment syncing).</summary>
    public AllottedBudgetCounters.Change Flush()
    {
        Syncing = true;
        var change = new AllottedBudgetCounters.Change(Held, Pending, 0, 0, 0);
        Pending = 0;
        return change;
    }

    /// <summary>Moves the pending spend and the room left out to send back (marks the allotment syncing).</summary>
    public AllottedBudgetCounters.Change GiveBack()
    {
        var change = Flush() with { Back = Room };
        Room = 0;
        return change;
    }
}
