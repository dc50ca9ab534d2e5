using System.Collections.Concurrent;
using System.Net;
using Lattice.Gateway.Hosting;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Auth;

/// <summary>
/// Slows guessing: counts failed authentication attempts (bad keys, tokens, bootstrap tokens, invitations, passwords)
/// per source in fixed one-minute windows, and past the limit answers further <em>failing</em> attempts from that source
/// with 429 instead of 401. A credential that is valid is never refused because others failed from the same address
/// (a proxy, an office behind NAT): callers check the credential first and consult the limiter only when it failed.
/// </summary>
/// <remarks>
/// <para>A source is the client's address as the connection reports it (the forwarded one only from configured trusted
/// proxies, <see cref="GatewayOptions.TrustedProxies"/>): an IPv4 address, or an IPv6 address's /64 — one subscriber's
/// whole allocation counts as one.</para>
/// <para>Counting is <see cref="SourceWindow"/>'s: it holds only the current window's failing sources, so ending a
/// window frees it whole, and it is bounded however many addresses fail.</para>
/// <para>Passwords are also limited per account (<see cref="AccountBackoff"/>): after
/// <see cref="FreeAccountFailures"/> consecutive failures an account's next attempt must wait, doubling up to
/// <see cref="MaxAccountBackoff"/>, so guessing one person's password from many addresses is slow too.</para>
/// </remarks>
public sealed class FailedAuthLimiter(IOptions<GatewayOptions> options, TimeProvider time)
{
    public const int MaxSources = SourceWindow.MaxSources;
    public const int FreeAccountFailures = 5;
    public static readonly TimeSpan MaxAccountBackoff = TimeSpan.FromMinutes(15);

    private readonly int _limit = options.Value.FailedAuthPerMinute;
    private readonly SourceWindow _failures = new(time);
    private readonly ConcurrentDictionary<string, AccountFailures> _accounts = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Sources with failures in the current window (for tests and metrics).</summary>
    public int TrackedSources => _failures.TrackedSources;

    /// <summary>
    /// Records a failed attempt from the request's source; false when the source is now over its limit, so the
    /// caller answers 429 rather than 401.
    /// </summary>
    public bool RecordFailure(HttpContext context)
    {
        if (_limit <= 0 || context.Connection.RemoteIpAddress is not { } address)
        {
            return true;
        }
        return _failures.Increment(address) <= _limit;
    }

    /// <summary>The source an address is counted as: IPv4 as it is (also when mapped into IPv6), IPv6 by its /64.</summary>
    public static IPAddress SourceOf(IPAddress address) => SourceWindow.SourceOf(address);

    /// <summary>How long the account must wait before its next password attempt; zero when it may try now.</summary>
    public TimeSpan AccountBackoff(string account)
    {
        if (_limit <= 0 || !_accounts.TryGetValue(account, out var failures))
        {
            return TimeSpan.Zero;
        }
        var wait = failures.NotBeforeTicks - time.GetUtcNow().UtcTicks;
        return wait > 0 ? TimeSpan.FromTicks(wait) : TimeSpan.Zero;
    }

    /// <summary>Records a wrong password for the account, starting or lengthening its backoff.</summary>
    public void RecordAccountFailure(string account)
    {
        if (_limit <= 0)
        {
            return;
        }
        var now = time.GetUtcNow().UtcTicks;
        if (_accounts.Count >= MaxSources)
        {
            // Accounts whose backoff ended long ago are forgotten first; a scan only when the table is full.
            foreach (var (key, value) in _accounts)
            {
                if (now - value.NotBeforeTicks > MaxAccountBackoff.Ticks)
                {
                    _accounts.TryRemove(key, out _);
                }
            }
        }
        _accounts.GetOrAdd(account, static _ => new AccountFailures()).Fail(now);
    }

    /// <summary>The right password: the account's count starts again.</summary>
    public void RecordAccountSuccess(string account) => _accounts.TryRemove(account, out _);

    private sealed class AccountFailures
    {
        private int _failures;

        public long NotBeforeTicks { get; private set; }

        public void Fail(long now)
        {
            lock (this)
            {
                var failures = ++_failures;
                if (failures >= FreeAccountFailures)
                {
                    // 1 s after the fifth failure, then doubling: 2 s, 4 s, … up to the maximum.
                    var seconds = Math.Min(1L << Math.Min(failures - FreeAccountFailures, 20), (long)MaxAccountBackoff.TotalSeconds);
                    NotBeforeTicks = now + TimeSpan.FromSeconds(seconds).Ticks;
                }
            }
        }
    }
}
