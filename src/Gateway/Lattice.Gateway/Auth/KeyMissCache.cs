using System.Collections.Concurrent;
using System.Globalization;

namespace Lattice.Gateway.Auth;

/// <summary>
/// Key hashes the database did not know (or knew only as revoked), remembered briefly so that a credential missing from
/// the node's snapshot costs the database one lookup per <see cref="Lifetime"/>, not one per request.
/// </summary>
/// <remarks>
/// <para>Like <see cref="SourceWindow"/>, it keeps whole generations rather than per-entry expiry: an entry lives from one
/// to two <see cref="Lifetime"/>s (its own generation and the next), and ending a generation drops it whole, with no scan.</para>
/// <para>Bounded: a generation holds at most <see cref="MaxEntries"/> hashes, each as the first 128 bits of its digest.
/// Once the current one is full, <see cref="IsFull"/> tells the store to answer further misses from the snapshot
/// alone, without the database, until the generation ends — a flood of junk keys costs neither database reads nor
/// memory past the bound, and a genuinely new key still arrives through the change feed within a second.</para>
/// </remarks>
public sealed class KeyMissCache(TimeProvider time)
{
    public const int MaxEntries = 100_000;
    public static readonly TimeSpan Lifetime = TimeSpan.FromSeconds(30);

    private Generations _generations = new(new Generation(time.GetUtcNow().UtcTicks), null);

    /// <summary>True when <paramref name="hash"/> (lowercase hex SHA-256) missed recently.</summary>
    public bool Contains(string hash)
    {
        var g = Current();
        var key = Key(hash);
        return g.Current.Contains(key) || (g.Previous?.Contains(key) ?? false);
    }

    /// <summary>Remembers a miss; false when the current generation is full (the miss is not remembered).</summary>
    public bool TryAdd(string hash) => Current().Current.TryAdd(Key(hash));

    /// <summary>The current generation is full: misses not already remembered must not reach the database.</summary>
    public bool IsFull => Current().Current.Count >= MaxEntries;

    /// <summary>Hashes remembered in the current and previous generations (for tests and metrics).</summary>
    public int Count
    {
        get
        {
            var g = Current();
            return g.Current.Count + (g.Previous?.Count ?? 0);
        }
    }

    private static UInt128 Key(string hash) =>
        UInt128.TryParse(hash.AsSpan(0, Math.Min(32, hash.Length)), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var key) ? key : UInt128.Zero;

    private Generations Current()
    {
        var now = time.GetUtcNow().UtcTicks;
        var g = Volatile.Read(ref _generations);
        while (now - g.Current.StartTicks >= Lifetime.Ticks)
        {
            // The current generation's entries stay one more lifetime as the previous one, unless it ended long ago.
            var previous = now - g.Current.StartTicks < 2 * Lifetime.Ticks ? g.Current : null;
            var fresh = new Generations(new Generation(now), previous);
            var seen = Interlocked.CompareExchange(ref _generations, fresh, g);
            g = seen == g ? fresh : seen;
        }
        return g;
    }

    private sealed record Generations(Generation Current, Generation? Previous);

    private sealed class Generation(long startTicks)
    {
        private readonly ConcurrentDictionary<UInt128, byte> _hashes = new();
        private int _count;

        public long StartTicks { get; } = startTicks;
        public int Count => Volatile.Read(ref _count);

        public bool Contains(UInt128 key) => _hashes.ContainsKey(key);

        public bool TryAdd(UInt128 key)
        {
            if (Count >= MaxEntries)
            {
                return false;
            }
            if (_hashes.TryAdd(key, 0))
            {
                Interlocked.Increment(ref _count);
            }
            return true;
        }
    }
}
