using Lattice.Gateway.Billing.Alerts;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Persistence;
using StackExchange.Redis;

namespace Lattice.Gateway.Billing;

/// <summary>
/// The budget counters of <see cref="LocalBudgetCounters"/>, kept in the Redis every node shares: one hash per budget
/// line and month (spent, reserved, the alerts raised). A reservation checks and takes every line in one Lua script, and
/// a settle releases and spends in another, so however many nodes reserve at once no two can both take the last room:
/// a budget is overspent only by what a request costs beyond its worst-case reservation (which is none), as on one node.
/// </summary>
/// <remarks>
/// <para>A line's counter starts from the ledger (this node's queue flushed first) the first time any node needs it
/// in its month, and is kept until the end of the next month. If Redis loses it (a restart without persistence), it
/// starts from the ledger again: what other nodes had not yet written to the ledger is then counted when they settle,
/// and what they had is counted twice until the month ends — as on one node, a budget errs towards refusing early.</para>
/// <para>Amounts are compared in the script as doubles: exact up to 2^53 pico-dollars (about $9,000), within a few
/// pico-dollars beyond. The counters themselves are 64-bit integers (<c>HINCRBY</c>) and exact.</para>
/// </remarks>
public sealed partial class RedisBudgetCounters(
    RedisStore redis,
    IServiceScopeFactory scopes,
    UsageLedger ledger,
    IBudgetAlertSink alerts,
    TimeProvider time,
    ILogger<RedisBudgetCounters> logger) : IBudgetCounters
{
    /// <summary>
    /// Spends <c>spent</c> (a string, exact) on line <c>i</c> (KEYS[i]) and appends {i, threshold, spent} to <c>out</c> for
    /// each of the three thresholds it crosses for the first time in its month.
    /// </summary>
    private const string Spend = """
        local function spend(i, spentNow, amount, thresholds, out)
          local before = tonumber(redis.call('HGET', KEYS[i], 's'))
          redis.call('HINCRBY', KEYS[i], 's', spentNow)
          local spent = redis.call('HGET', KEYS[i], 's')
          local after, a = tonumber(spent), tonumber(redis.call('HGET', KEYS[i], 'a')) or 0
          for j = 1, 3 do
            local flag = 2 ^ (j - 1)
            if before * 100 < amount * thresholds[j] and after * 100 >= amount * thresholds[j] and bit.band(a, flag) == 0 then
              a = bit.bor(a, flag)
              out[#out + 1] = i
              out[#out + 1] = thresholds[j]
              out[#out + 1] = spent
            end
          end
          redis.call('HSET', KEYS[i], 'a', a)
        end
        """;

    /// <summary>
    /// Counts what nodes that stopped renewing their allotment's lease (<see cref="Allotments"/>) still held on line
    /// <c>i</c> as spent: a node that died may have spent any of it, so its room is not given back (a budget errs towards
    /// refusing early). It is spent like any spend (<see cref="Spend"/>): a threshold it crosses is raised, appended to
    /// <c>out</c>, so the alerts agree with the spend the status shows (a threshold passed here would otherwise never be
    /// raised that month: the next spend starts above it).
    /// </summary>
    private const string LapseAsSpent = Allotments.Lapse + "\n" + Spend + "\n" + """
        local function lapseAsSpent(i, now, amount, thresholds, out)
          for _, n in ipairs(lapse(KEYS[i], now)) do
            if redis.call('HINCRBY', KEYS[i], 'r', '-' .. n) < 0 then redis.call('HSET', KEYS[i], 'r', 0) end
            spend(i, n, amount, thresholds, out)
          end
        end
        """;

    /// <summary>
    /// ARGV: picoUsd, then each line's amount, then now (µs), then the three thresholds. Returns {-1, i} when line i has no
    /// counter yet; {0, i, raise, spent} when line i has no room (raise 1: the 100% alert is this caller's to raise); {1}
    /// when every line took the reservation; either of the last two followed by {i, threshold, spent} per threshold that
    /// lapsed allotments crossed.
    /// </summary>
    private const string ReserveScript = LapseAsSpent + "\n" + """
        local pico, n = tonumber(ARGV[1]), #KEYS
        for i = 1, n do
          if redis.call('EXISTS', KEYS[i]) == 0 then return {-1, i} end
        end
        local thresholds, out = {tonumber(ARGV[n + 3]), tonumber(ARGV[n + 4]), tonumber(ARGV[n + 5])}, {}
        for i = 1, n do lapseAsSpent(i, tonumber(ARGV[n + 2]), tonumber(ARGV[1 + i]), thresholds, out) end
        local function answer(head)
          for _, v in ipairs(out) do head[#head + 1] = v end
          return head
        end
        for i = 1, n do
          local b = redis.call('HMGET', KEYS[i], 's', 'r', 'a')
          local s, r, a = tonumber(b[1]), tonumber(b[2]), tonumber(b[3]) or 0
          local amount = tonumber(ARGV[1 + i])
          if pico > 0 and s + r + pico > amount then
            local raise = 0
            if s + pico > amount and bit.band(a, 4) == 0 then
              redis.call('HSET', KEYS[i], 'a', bit.bor(a, 4))
              raise = 1
            end
            return answer({0, i, raise, b[1]})
          end
        end
        for i = 1, n do redis.call('HINCRBY', KEYS[i], 'r', ARGV[1]) end
        return answer({1})
        """;

    /// <summary>
    /// ARGV: minus what was reserved, actual, the three thresholds, then each line's amount, then now (µs). Returns {i,
    /// threshold, spent} for each threshold a line crossed for the first time in its month.
    /// </summary>
    private const string SettleScript = LapseAsSpent + "\n" + """
        local thresholds, out = {tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])}, {}
        for i = 1, #KEYS do
          if redis.call('EXISTS', KEYS[i]) == 1 then
            lapseAsSpent(i, tonumber(ARGV[6 + #KEYS]), tonumber(ARGV[5 + i]), thresholds, out)
            if redis.call('HINCRBY', KEYS[i], 'r', ARGV[1]) < 0 then redis.call('HSET', KEYS[i], 'r', 0) end
            spend(i, ARGV[2], tonumber(ARGV[5 + i]), thresholds, out)
          end
        end
        return out
        """;

    /// <summary>
    /// One node's allotment of one line (KEYS[1]): moves what the node spent from its allotment to the line's spend, gives
    /// back what it returns, and takes a share of the line's room (ARGV[10] is the divisor), or nothing when that is under
    /// the minimum. The node's whole allotment is a lease (<see cref="Allotments"/>) renewed to ARGV[3]. ARGV: now (µs),
    /// node, lease expiry (µs), what the node holds by its count, spent, minus spent, minus back, want, min, divisor,
    /// amount, the three thresholds. Returns {-1} when the line has no counter, {-2, '0'} when Redis does not hold what the
    /// node thinks it holds (its lease lapsed, or Redis lost it), else {1, taken}; either of the last two followed by
    /// {1, threshold, spent} per crossing (a lapsed allotment's included).
    /// </summary>
    private const string AllotScript = LapseAsSpent + "\n" + """
        if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
        local now, node, expiry = tonumber(ARGV[1]), ARGV[2], ARGV[3]
        local amount, thresholds = tonumber(ARGV[11]), {tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])}
        local out = {1, '0'}
        lapseAsSpent(1, now, amount, thresholds, out)
        local field = 'n:' .. node
        if (redis.call('HGET', KEYS[1], field) or '0') ~= ARGV[4] then
          out[1] = -2
          return out
        end
        if ARGV[5] ~= '0' then
          redis.call('HINCRBY', KEYS[1], 'r', ARGV[6])
          redis.call('HINCRBY', KEYS[1], field, ARGV[6])
          spend(1, ARGV[5], amount, thresholds, out)
        end
        if ARGV[7] ~= '0' then
          redis.call('HINCRBY', KEYS[1], 'r', ARGV[7])
          redis.call('HINCRBY', KEYS[1], field, ARGV[7])
        end
        local want = tonumber(ARGV[8])
        if want > 0 then
          local b = redis.call('HMGET', KEYS[1], 's', 'r')
          local grant = math.min(want, math.floor((amount - tonumber(b[1]) - tonumber(b[2])) / tonumber(ARGV[10])))
          if grant >= tonumber(ARGV[9]) then
            out[2] = string.format('%.0f', grant)
            redis.call('HINCRBY', KEYS[1], 'r', out[2])
            redis.call('HINCRBY', KEYS[1], field, out[2])
          end
        end
        local h = redis.call('HGET', KEYS[1], field)
        if not h or h == '0' then
          redis.call('HDEL', KEYS[1], field, 'e:' .. node)
        else
          redis.call('HSET', KEYS[1], 'e:' .. node, expiry)
          local le = tonumber(redis.call('HGET', KEYS[1], 'le'))
          if not le or tonumber(expiry) < le then redis.call('HSET', KEYS[1], 'le', expiry) end
        end
        return out
        """;

    /// <summary>ARGV: spent, ttl (ms). Starts a line's counter unless another node already did.</summary>
    private const string StartScript = """
        if redis.call('EXISTS', KEYS[1]) == 0 then
          redis.call('HSET', KEYS[1], 's', ARGV[1], 'r', 0, 'a', 0)
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
        end
        return 0
        """;

    /// <summary>ARGV: now (µs), the amount, the three thresholds. Returns {spent, reserved, then {1, threshold, spent} per crossing}.</summary>
    private const string ReadScript = LapseAsSpent + "\n" + """
        local out = {}
        if redis.call('EXISTS', KEYS[1]) == 1 then
          lapseAsSpent(1, tonumber(ARGV[1]), tonumber(ARGV[2]), {tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])}, out)
        end
        local b = redis.call('HMGET', KEYS[1], 's', 'r')
        local result = {b[1], b[2]}
        for _, v in ipairs(out) do result[#result + 1] = v end
        return result
        """;

    public async ValueTask<BudgetReservation> TryReserveAsync(BudgetLine[] lines, long picoUsd, DateTimeOffset at, CancellationToken cancellationToken)
    {
        var period = LocalBudgetCounters.PeriodStart(at);
        var keys = new RedisKey[lines.Length];
        var values = new RedisValue[5 + lines.Length];
        values[0] = picoUsd;
        for (var i = 0; i < lines.Length; i++)
        {
            keys[i] = Key(lines[i], period);
            values[1 + i] = lines[i].Budget.AmountPicoUsd;
        }
        values[1 + lines.Length] = RedisRateLimitCounters.Microseconds(time.GetUtcNow());
        for (var j = 0; j < 3; j++)
        {
            values[2 + lines.Length + j] = LocalBudgetCounters.Thresholds[j];
        }
        // Each pass either answers or starts one missing counter; a counter that vanished again (expired, Redis
        // restarted) in between is started again, a few times at most.
        for (var attempt = 0; attempt <= lines.Length + 2; attempt++)
        {
            var result = (RedisResult[])(await redis.EvaluateAsync(ReserveScript, keys, values))!;
            var outcome = (int)result[0];
            if (outcome == 1)
            {
                RaiseCrossed(lines, period, result, 1);
                return new BudgetReservation(lines, period, picoUsd, null);
            }
            var line = lines[(int)result[1] - 1];
            if (outcome == 0)
            {
                RaiseCrossed(lines, period, result, 4);
                if ((int)result[2] == 1)
                {
                    alerts.Raise(LocalBudgetCounters.Alert(line, period, 100, (long)result[3], time.GetUtcNow()));
                }
                return new BudgetReservation(lines, period, picoUsd, line);
            }
            await StartAsync(line, period, cancellationToken);
        }
        throw new SharedCountersUnavailableException(null);
    }

    public async ValueTask SettleAsync(BudgetReservation reservation, long actualPicoUsd)
    {
        if (!reservation.Admitted)
        {
            return;
        }
        var lines = reservation.Lines;
        var keys = new RedisKey[lines.Length];
        var values = new RedisValue[6 + lines.Length];
        values[0] = -reservation.PicoUsd;
        values[1] = actualPicoUsd;
        for (var j = 0; j < 3; j++)
        {
            values[2 + j] = LocalBudgetCounters.Thresholds[j];
        }
        for (var i = 0; i < lines.Length; i++)
        {
            keys[i] = Key(lines[i], reservation.PeriodStart);
            values[5 + i] = lines[i].Budget.AmountPicoUsd;
        }
        values[5 + lines.Length] = RedisRateLimitCounters.Microseconds(time.GetUtcNow());
        var crossed = (RedisResult[])(await redis.EvaluateAsync(SettleScript, keys, values))!;
        RaiseCrossed(lines, reservation.PeriodStart, crossed, 0);
    }

    /// <summary>Raises the alerts a script reported, as {line, threshold, spent} triples from <paramref name="from"/> on.</summary>
    private void RaiseCrossed(BudgetLine[] lines, DateTimeOffset period, RedisResult[] crossed, int from)
    {
        for (var k = from; k + 2 < crossed.Length; k += 3)
        {
            alerts.Raise(LocalBudgetCounters.Alert(lines[(int)crossed[k] - 1], period, (int)crossed[k + 1], (long)crossed[k + 2], time.GetUtcNow()));
        }
    }

    /// <summary>
    /// Changes this node's allotment of <paramref name="line"/> in one round trip (<see cref="AllottedBudgetCounters"/> owns
    /// the node's side): spends <paramref name="spent"/> from it, gives <paramref name="back"/> back, takes up to
    /// <paramref name="want"/> (nothing under <paramref name="min"/>, never more than the room left over
    /// <paramref name="share"/>), and renews its lease to <paramref name="leaseUntil"/>. Null when Redis does not hold
    /// <paramref name="held"/> for this node (its lease lapsed, or Redis lost it): the allotment is gone.
    /// </summary>
    public async Task<long?> AllotAsync(BudgetLine line, DateTimeOffset period, string node, DateTimeOffset leaseUntil, long held, long spent, long back, long want, long min,
        int share, CancellationToken cancellationToken)
    {
        RedisValue[] values =
        [
            RedisRateLimitCounters.Microseconds(time.GetUtcNow()), node, RedisRateLimitCounters.Microseconds(leaseUntil), held, spent, -spent, -back, want, min, share,
            line.Budget.AmountPicoUsd, LocalBudgetCounters.Thresholds[0], LocalBudgetCounters.Thresholds[1], LocalBudgetCounters.Thresholds[2],
        ];
        RedisKey[] key = [Key(line, period)];
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var result = (RedisResult[])(await redis.EvaluateAsync(AllotScript, key, values))!;
            switch ((int)result[0])
            {
                case -1 when held == 0:
                    await StartAsync(line, period, cancellationToken);
                    continue;
                case -1:
                    return null;
                case -2:
                    RaiseCrossed([line], period, result, 2);
                    return null;
                default:
                    RaiseCrossed([line], period, result, 2);
                    return long.Parse((string)result[1]!, System.Globalization.CultureInfo.InvariantCulture);
            }
        }
        throw new SharedCountersUnavailableException(null);
    }

    public async ValueTask<BudgetStatus> StatusAsync(BudgetPolicy budget, string? userId, DateTimeOffset at, CancellationToken cancellationToken)
    {
        var period = LocalBudgetCounters.PeriodStart(at);
        var line = new BudgetLine(budget, userId);
        RedisKey[] key = [Key(line, period)];
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var read = (RedisResult[])(await redis.EvaluateAsync(ReadScript, key,
                [RedisRateLimitCounters.Microseconds(time.GetUtcNow()), budget.AmountPicoUsd,
                    LocalBudgetCounters.Thresholds[0], LocalBudgetCounters.Thresholds[1], LocalBudgetCounters.Thresholds[2]]))!;
            if (!read[0].IsNull)
            {
                RaiseCrossed([line], period, read, 2);
                return new BudgetStatus(period, period.AddMonths(1), (long)read[0], (long)read[1]);
            }
            await StartAsync(line, period, cancellationToken);
        }
        throw new SharedCountersUnavailableException(null);
    }

    /// <summary>Starts a line's counter in its month from the ledger, unless another node got there first.</summary>
    private async Task StartAsync(BudgetLine line, DateTimeOffset period, CancellationToken cancellationToken)
    {
        long spent;
        try
        {
            // What finished on this node before the counter existed is in the ledger once the queue is committed.
            await ledger.FlushAsync(cancellationToken);
            spent = await LocalBudgetCounters.SpentInLedgerAsync(scopes, line, period, period.AddMonths(1));
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            Log.LoadFailed(logger, line.Budget.Id, ex);
            throw;
        }
        // Kept through the next month, so last month's status still reads; at least a day for a period long past.
        var ttl = period.AddMonths(2) - time.GetUtcNow();
        var ttlMs = (long)Math.Max(TimeSpan.FromDays(1).TotalMilliseconds, ttl.TotalMilliseconds);
        await redis.EvaluateAsync(StartScript, [Key(line, period)], [spent, ttlMs]);
    }

    private RedisKey Key(BudgetLine line, DateTimeOffset period) =>
        redis.Key(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"b:{line.Budget.Id}:{period.UtcDateTime:yyyy-MM}:{line.UserId}"));

    private static partial class Log
    {
        [LoggerMessage(EventId = 9102, Level = LogLevel.Error, Message = "Could not read budget {BudgetId}'s spend from the ledger")]
        public static partial void LoadFailed(ILogger logger, string budgetId, Exception exception);
    }
}
