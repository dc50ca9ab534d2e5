using System.Collections.Concurrent;
using System.Net;
using Lattice.Gateway.Hosting;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Auth;

/// <summary>
/// Counts failed authentication attempts (bad keys, bad tokens, bad passwords) per source address in fixed
/// one-minute windows; past the limit, further attempts from that address fail with 429 until the window ends,
/// even with a valid credential — so guessing is slow.
/// </summary>
public sealed class FailedAuthLimiter(IOptions<GatewayOptions> options, TimeProvider time)
{
    private static readonly TimeSpan Window = TimeSpan.FromMinutes(1);
    private readonly int _limit = options.Value.FailedAuthPerMinute;
    private readonly ConcurrentDictionary<IPAddress, Counter> _counters = new();

    /// <summary>True while the address has failures left in its window.</summary>
    public bool IsAllowed(HttpContext context)
    {
        if (_limit <= 0 || context.Connection.RemoteIpAddress is not { } address)
        {
            return true;
        }
        return !_counters.TryGetValue(address, out var counter) || counter.Count(time.GetUtcNow()) < _limit;
    }

    /// <summary>Records a failure; false when the address is now over its limit.</summary>
    public bool RecordFailure(HttpContext context)
    {
        if (_limit <= 0 || context.Connection.RemoteIpAddress is not { } address)
        {
            return true;
        }
        var now = time.GetUtcNow();
        if (_counters.Count > 100_000)
        {
            foreach (var (key, value) in _counters)
            {
                if (value.Count(now) == 0)
                {
                    _counters.TryRemove(key, out _);
                }
            }
        }
        return _counters.GetOrAdd(address, static _ => new Counter()).Increment(now) <= _limit;
    }

    private sealed class Counter
    {
        private long _windowStart;
        private int _count;

        public int Count(DateTimeOffset now) => now.UtcTicks - Interlocked.Read(ref _windowStart) >= Window.Ticks ? 0 : Volatile.Read(ref _count);

        public int Increment(DateTimeOffset now)
        {
            lock (this)
            {
                if (now.UtcTicks - _windowStart >= Window.Ticks)
                {
                    _windowStart = now.UtcTicks;
                    _count = 0;
                }
                return ++_count;
            }
        }
    }
}
