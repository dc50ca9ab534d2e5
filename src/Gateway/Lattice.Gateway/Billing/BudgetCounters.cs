using System.Collections.Concurrent;
using Lattice.Gateway.Billing.Alerts;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Billing;

/// <summary>What a reservation took: the budget lines and period it holds, and how much; or the line that refused it.</summary>
public sealed record BudgetReservation(BudgetLine[] Lines, DateTimeOffset PeriodStart, long PicoUsd, BudgetLine? RefusedBy)
{
    public bool Admitted => RefusedBy is null;

    /// <summary>
    /// Set when the reservation was taken from this node's allotments (<see cref="AllottedBudgetCounters"/>), not the
    /// shared counters: what it is settled into.
    /// </summary>
    public BudgetAllotmentHold? Hold { get; init; }
}

/// <summary>A budget's counters in one period: spent (settled) and reserved (in flight).</summary>
public readonly record struct BudgetStatus(DateTimeOffset PeriodStart, DateTimeOffset PeriodEnd, long SpentPicoUsd, long ReservedPicoUsd);

/// <summary>
/// Budget counters every node must agree on: reserve a request's worst-case cost at admission, settle it to the
/// actual cost at the end. In this node's memory (<see cref="LocalBudgetCounters"/>), or in the Redis every node shares
/// (<see cref="RedisBudgetCounters"/>, when <c>Lattice:Redis</c> is set).
/// </summary>
public interface IBudgetCounters
{
    /// <summary>Reserves <paramref name="picoUsd"/> against every line, all or nothing, in the period of <paramref name="at"/>.</summary>
    ValueTask<BudgetReservation> TryReserveAsync(BudgetLine[] lines, long picoUsd, DateTimeOffset at, CancellationToken cancellationToken);

    /// <summary>Ends a reservation: what was reserved is released and <paramref name="actualPicoUsd"/> is spent.</summary>
    ValueTask SettleAsync(BudgetReservation reservation, long actualPicoUsd);

    ValueTask<BudgetStatus> StatusAsync(BudgetPolicy budget, string? userId, DateTimeOffset at, CancellationToken cancellationToken);
}

/// <summary>
/// Budget counters in this node's memory. A counter starts from what the ledger holds for its budget and period
/// (the ledger is flushed first), so a restart loses nothing; from then on settles add to it as requests end.
/// </summary>
/// <remarks>
/// A counter created while requests of its budget are finishing may count one of them twice (settled into the new
/// counter and already committed to the ledger it read): a budget errs towards refusing early, never towards overspend.
/// </remarks>
public sealed partial class LocalBudgetCounters(
    IServiceScopeFactory scopes,
    UsageLedger ledger,
    IBudgetAlertSink alerts,
    TimeProvider time,
    ILogger<LocalBudgetCounters> logger) : IBudgetCounters
{
    /// <summary>The percentages of a budget whose crossing raises an alert, once per budget and period.</summary>
    public static readonly int[] Thresholds = [50, 80, 100];

    private readonly ConcurrentDictionary<(string BudgetId, DateTimeOffset Period, string User), Counter> _counters = new();
    private readonly Lock _gate = new();
    private DateTimeOffset _latestPeriod;

    public async ValueTask<BudgetReservation> TryReserveAsync(BudgetLine[] lines, long picoUsd, DateTimeOffset at, CancellationToken cancellationToken)
    {
        var period = PeriodStart(at);
        var counters = new Counter[lines.Length];
        for (var i = 0; i < lines.Length; i++)
        {
            counters[i] = CounterFor(lines[i], period);
            if (!counters[i].Loaded.IsCompletedSuccessfully)
            {
                await counters[i].Loaded.WaitAsync(cancellationToken);
            }
        }
        lock (_gate)
        {
            for (var i = 0; i < lines.Length; i++)
            {
                var c = counters[i];
                var amount = lines[i].Budget.AmountPicoUsd;
                if (picoUsd > 0 && (Int128)c.Spent + c.Reserved + picoUsd > amount)
                {
                    if ((Int128)c.Spent + picoUsd > amount)
                    {
                        // What is spent already leaves no room for this request: the budget is used up.
                        RaiseCrossed(lines[i], c, period, 100);
                    }
                    return new BudgetReservation(lines, period, picoUsd, lines[i]);
                }
            }
            foreach (var c in counters)
            {
                c.Reserved += picoUsd;
            }
        }
        return new BudgetReservation(lines, period, picoUsd, null);
    }

    public ValueTask SettleAsync(BudgetReservation reservation, long actualPicoUsd)
    {
        Settle(reservation, actualPicoUsd);
        return default;
    }

    public void Settle(BudgetReservation reservation, long actualPicoUsd)
    {
        if (!reservation.Admitted)
        {
            return;
        }
        lock (_gate)
        {
            foreach (var line in reservation.Lines)
            {
                if (!_counters.TryGetValue(Key(line, reservation.PeriodStart), out var c))
                {
                    continue;
                }
                c.Reserved = Math.Max(0, c.Reserved - reservation.PicoUsd);
                var before = c.Spent;
                c.Spent = before + actualPicoUsd;
                var amount = line.Budget.AmountPicoUsd;
                foreach (var threshold in Thresholds)
                {
                    if ((Int128)before * 100 < (Int128)amount * threshold && (Int128)c.Spent * 100 >= (Int128)amount * threshold)
                    {
                        RaiseCrossed(line, c, reservation.PeriodStart, threshold);
                    }
                }
            }
        }
    }

    public async ValueTask<BudgetStatus> StatusAsync(BudgetPolicy budget, string? userId, DateTimeOffset at, CancellationToken cancellationToken)
    {
        var period = PeriodStart(at);
        var c = CounterFor(new BudgetLine(budget, userId), period);
        await c.Loaded.WaitAsync(cancellationToken);
        lock (_gate)
        {
            return new BudgetStatus(period, period.AddMonths(1), c.Spent, c.Reserved);
        }
    }

    /// <summary>The calendar month (UTC) that <paramref name="at"/> falls in.</summary>
    public static DateTimeOffset PeriodStart(DateTimeOffset at)
    {
        var utc = at.UtcDateTime;
        return new DateTimeOffset(utc.Year, utc.Month, 1, 0, 0, 0, TimeSpan.Zero);
    }

    private static (string, DateTimeOffset, string) Key(BudgetLine line, DateTimeOffset period) => (line.Budget.Id, period, line.UserId ?? "");

    private Counter CounterFor(BudgetLine line, DateTimeOffset period) =>
        _counters.TryGetValue(Key(line, period), out var existing)
            ? existing
            : _counters.GetOrAdd(Key(line, period), static (_, state) => state.Self.Load(state.Line, state.Period), (Self: this, Line: line, Period: period));

    private Counter Load(BudgetLine line, DateTimeOffset period)
    {
        if (period > _latestPeriod)
        {
            // A new month: counters of months before the last one are no longer charged to; drop them.
            _latestPeriod = period;
            foreach (var key in _counters.Keys)
            {
                if (key.Period < period.AddMonths(-1))
                {
                    _counters.TryRemove(key, out _);
                }
            }
        }
        var counter = new Counter();
        counter.Loaded = LoadAsync(counter, line, period);
        return counter;
    }

    private async Task LoadAsync(Counter counter, BudgetLine line, DateTimeOffset period)
    {
        await Task.Yield();
        try
        {
            // What finished before this counter existed is in the ledger once the queue is committed.
            await ledger.FlushAsync(CancellationToken.None);
            var spent = await SpentInLedgerAsync(scopes, line, period, period.AddMonths(1));
            lock (_gate)
            {
                counter.Spent += spent;
            }
        }
        catch (Exception ex)
        {
            // Leave the counter to be loaded again by the next request rather than trusting a partial figure.
            _counters.TryRemove(new KeyValuePair<(string, DateTimeOffset, string), Counter>(Key(line, period), counter));
            LogLoadFailed(logger, line.Budget.Id, ex);
            throw;
        }
    }

    /// <summary>What the ledger holds against a budget line between two instants (the ledger's queue flushed by the caller).</summary>
    public static async Task<long> SpentInLedgerAsync(IServiceScopeFactory scopes, BudgetLine line, DateTimeOffset start, DateTimeOffset end)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        var b = line.Budget;
        var records = db.UsageRecords.AsNoTracking().Where(r => r.WorkspaceId == b.WorkspaceId && r.CreatedAt >= start && r.CreatedAt < end);
        records = b.Scope switch
        {
            BudgetScopes.Key => records.Where(r => r.KeyId == b.SubjectId),
            BudgetScopes.App => records.Where(r => r.AppId == b.SubjectId),
            BudgetScopes.AppUser => records.Where(r => r.AppId == b.SubjectId && r.UserId == line.UserId),
            _ => records,
        };
        return await records.SumAsync(r => r.CostPicoUsd);
    }

    /// <summary>Under the lock: raises a threshold once per counter (the outbox keeps it once across restarts).</summary>
    private void RaiseCrossed(BudgetLine line, Counter c, DateTimeOffset period, int threshold)
    {
        var bit = 1 << Array.IndexOf(Thresholds, threshold);
        if ((c.Raised & bit) != 0)
        {
            return;
        }
        c.Raised |= bit;
        alerts.Raise(Alert(line, period, threshold, c.Spent, time.GetUtcNow()));
    }

    /// <summary>The alert for <paramref name="line"/> crossing <paramref name="threshold"/> percent with <paramref name="spent"/> spent.</summary>
    public static BudgetAlert Alert(BudgetLine line, DateTimeOffset period, int threshold, long spent, DateTimeOffset at)
    {
        var b = line.Budget;
        return new BudgetAlert(b.Id, b.WorkspaceId, b.Scope, b.SubjectId, line.UserId, period, period.AddMonths(1), threshold, b.AmountPicoUsd, spent, at);
    }

    private sealed class Counter
    {
        public long Spent;
        public long Reserved;
        public int Raised;
        public Task Loaded = Task.CompletedTask;
    }

    [LoggerMessage(EventId = 9101, Level = LogLevel.Error, Message = "Could not read budget {BudgetId}'s spend from the ledger")]
    private static partial void LogLoadFailed(ILogger logger, string budgetId, Exception exception);
}
