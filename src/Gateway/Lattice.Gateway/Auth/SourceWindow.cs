using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace Lattice.Gateway.Auth;

/// <summary>Counts events per source address in fixed one-minute windows: in this process, or in Redis for every node.</summary>
public interface ISourceCounter
{
    /// <summary>Counts one event from <paramref name="address"/>: the source's count in the current window, and how long until the window ends.</summary>
    ValueTask<(long Count, TimeSpan UntilNextWindow)> IncrementAsync(IPAddress address);
}

/// <summary>
/// Counts events per source address in fixed one-minute windows: the counting behind
/// <see cref="FailedAuthLimiter"/> (failed attempts) and <see cref="Identity.DeviceAuthorizationLimiter"/> (device
/// authorization requests).
/// </summary>
/// <remarks>
/// <para>A source is an IPv4 address, or an IPv6 address's /64 — one subscriber's whole allocation counts as one.</para>
/// <para>The table holds only the current window's sources, so ending a window frees it whole (no scan), and it is
/// bounded: past <see cref="MaxSources"/> sources a new one is counted with its neighbours (IPv4 /24, IPv6 /48), and
/// past twice that, all new ones share one counter — a flood of addresses costs memory for at most that many.</para>
/// </remarks>
public sealed class SourceWindow(TimeProvider time) : ISourceCounter
{
    public const int MaxSources = 100_000;
    public static readonly TimeSpan Window = TimeSpan.FromMinutes(1);
    private static readonly IPAddress Overflow = IPAddress.IPv6None;

    private Generation _current = new(time.GetUtcNow().UtcTicks);

    /// <summary>Sources counted in the current window.</summary>
    public int TrackedSources => Current(time.GetUtcNow().UtcTicks).Sources;

    /// <summary>Counts one event from <paramref name="address"/>; returns the source's count in the current window.</summary>
    public int Increment(IPAddress address) => Current(time.GetUtcNow().UtcTicks).Increment(SourceOf(address));

    public ValueTask<(long Count, TimeSpan UntilNextWindow)> IncrementAsync(IPAddress address) =>
        ValueTask.FromResult(((long)Increment(address), UntilNextWindow()));

    /// <summary>How long until the current window ends and every count starts again.</summary>
    public TimeSpan UntilNextWindow()
    {
        var now = time.GetUtcNow().UtcTicks;
        return TimeSpan.FromTicks(Window.Ticks - (now - Current(now).StartTicks));
    }

    /// <summary>The source an address is counted as: IPv4 as it is (also when mapped into IPv6), IPv6 by its /64.</summary>
    public static IPAddress SourceOf(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            return address.MapToIPv4();
        }
        return address.AddressFamily == AddressFamily.InterNetworkV6 ? Prefix(address, 64) : address;
    }

    private Generation Current(long now)
    {
        var current = Volatile.Read(ref _current);
        while (now - current.StartTicks >= Window.Ticks)
        {
            // The window is over: a fresh table replaces the old one whole.
            var fresh = new Generation(now);
            var seen = Interlocked.CompareExchange(ref _current, fresh, current);
            current = seen == current ? fresh : seen;
        }
        return current;
    }

    private static IPAddress Prefix(IPAddress address, int bits)
    {
        var bytes = address.GetAddressBytes();
        for (var i = 0; i < bytes.Length; i++)
        {
            var keep = Math.Clamp(bits - i * 8, 0, 8);
            bytes[i] &= (byte)(0xFF00 >> keep);
        }
        return new IPAddress(bytes);
    }

    /// <summary>One window's counts by source.</summary>
    private sealed class Generation(long startTicks)
    {
        private readonly ConcurrentDictionary<IPAddress, StrongBox<int>> _counts = new();
        private int _sources;

        public long StartTicks { get; } = startTicks;
        public int Sources => Volatile.Read(ref _sources);

        public int Increment(IPAddress source)
        {
            if (!_counts.TryGetValue(source, out var count))
            {
                var key = Volatile.Read(ref _sources) switch
                {
                    < MaxSources => source,
                    < 2 * MaxSources => Prefix(source, source.AddressFamily == AddressFamily.InterNetworkV6 ? 48 : 24),
                    _ => Overflow,
                };
                count = _counts.GetOrAdd(key, static (_, generation) =>
                {
                    Interlocked.Increment(ref generation._sources);
                    return new StrongBox<int>();
                }, this);
            }
            return Interlocked.Increment(ref count.Value);
        }
    }
}
