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
    /// ARGV: picoUsd, then each line's amount. Returns {-1, i} when line i has no counter yet; {0, i, raise, spent} when
    /// line i has no room (raise 1: the 100% alert is this caller's to raise); {1} when every line took the reservation.
    /// </summary>
    private const string ReserveScript = """
        local pico = tonumber(ARGV[1])
        for i = 1, #KEYS do
          if redis.call('EXISTS', KEYS[i]) == 0 then return {-1, i} end
        end
        for i = 1, #KEYS do
          local b = redis.call('HMGET', KEYS[i], 's', 'r', 'a')
          local s, r, a = tonumber(b[1]), tonumber(b[2]), tonumber(b[3]) or 0
          local amount = tonumber(ARGV[1 + i])
          if pico > 0 and s + r + pico > amount then
            local raise = 0
            if s + pico > amount and bit.band(a, 4) == 0 then
              redis.call('HSET', KEYS[i], 'a', bit.bor(a, 4))
              raise = 1
            end
            return {0, i, raise, b[1]}
          end
        end
        for i = 1, #KEYS do redis.call('HINCRBY', KEYS[i], 'r', ARGV[1]) end
        return {1}
        """;

    /// <summary>
    /// ARGV: minus what was reserved, actual, the three thresholds, then each line's amount. Returns {i, threshold, spent} for each
    /// threshold a line crossed for the first time in its month.
    /// </summary>
    private const string SettleScript = """
        local thresholds, out = {tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])}, {}
        for i = 1, #KEYS do
          if redis.call('EXISTS', KEYS[i]) == 1 then
            if redis.call('HINCRBY', KEYS[i], 'r', ARGV[1]) < 0 then redis.call('HSET', KEYS[i], 'r', 0) end
            local before = tonumber(redis.call('HGET', KEYS[i], 's'))
            redis.call('HINCRBY', KEYS[i], 's', ARGV[2])
            local spent = redis.call('HGET', KEYS[i], 's')
            local after, a, amount = tonumber(spent), tonumber(redis.call('HGET', KEYS[i], 'a')) or 0, tonumber(ARGV[5 + i])
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

    private const string ReadScript = "return redis.call('HMGET', KEYS[1], 's', 'r')";

    public async ValueTask<BudgetReservation> TryReserveAsync(BudgetLine[] lines, long picoUsd, DateTimeOffset at, CancellationToken cancellationToken)
    {
        var period = LocalBudgetCounters.PeriodStart(at);
        var keys = new RedisKey[lines.Length];
        var values = new RedisValue[1 + lines.Length];
        values[0] = picoUsd;
        for (var i = 0; i < lines.Length; i++)
        {
            keys[i] = Key(lines[i], period);
            values[1 + i] = lines[i].Budget.AmountPicoUsd;
        }
        // Each pass either answers or starts one missing counter; a counter that vanished again (expired, Redis
        // restarted) in between is started again, a few times at most.
        for (var attempt = 0; attempt <= lines.Length + 2; attempt++)
        {
            var result = (RedisResult[])(await redis.EvaluateAsync(ReserveScript, keys, values))!;
            var outcome = (int)result[0];
            if (outcome == 1)
            {
                return new BudgetReservation(lines, period, picoUsd, null);
            }
            var line = lines[(int)result[1] - 1];
            if (outcome == 0)
            {
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
        var values = new RedisValue[5 + lines.Length];
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
        var crossed = (RedisResult[])(await redis.EvaluateAsync(SettleScript, keys, values))!;
        for (var k = 0; k + 2 < crossed.Length; k += 3)
        {
            alerts.Raise(LocalBudgetCounters.Alert(lines[(int)crossed[k] - 1], reservation.PeriodStart, (int)crossed[k + 1], (long)crossed[k + 2], time.GetUtcNow()));
        }
    }

    public async ValueTask<BudgetStatus> StatusAsync(BudgetPolicy budget, string? userId, DateTimeOffset at, CancellationToken cancellationToken)
    {
        var period = LocalBudgetCounters.PeriodStart(at);
        var line = new BudgetLine(budget, userId);
        RedisKey[] key = [Key(line, period)];
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var read = (RedisResult[])(await redis.EvaluateAsync(ReadScript, key, []))!;
            if (!read[0].IsNull)
            {
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
