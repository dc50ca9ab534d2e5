using System.Collections.Concurrent;
using System.Net;
using Lattice.Gateway.Hosting;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Auth;

/// <summary>
/// Slows guessing (see <see cref="FailedAuthLimiter"/> for the rules): in this process, or in the Redis every node shares
/// (<see cref="RedisFailedAuthLimiter"/>), so attempts count wherever they land.
/// </summary>
public interface IFailedAuthLimiter
{
    /// <summary>
    /// Records a failed attempt from the request's source; false when the source is now over its limit, so the
    /// caller answers 429 rather than 401.
    /// </summary>
    ValueTask<bool> RecordFailureAsync(HttpContext context);

    /// <summary>How long the account must wait before its next password attempt; zero when it may try now.</summary>
    ValueTask<TimeSpan> AccountBackoffAsync(string account);

    /// <summary>Records a wrong password for the account, starting or lengthening its backoff.</summary>
    ValueTask RecordAccountFailureAsync(string account);

    /// <summary>The right password: the account's count starts again.</summary>
    ValueTask RecordAccountSuccessAsync(string account);
}

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
public sealed class FailedAuthLimiter(IOptions<GatewayOptions> options, TimeProvider time) : IFailedAuthLimiter
{
    public const int MaxSources = SourceWindow.MaxSources;
    public const int FreeAccountFailures = 5;
    public static readonly TimeSpan MaxAccountBackoff = TimeSpan.FromMinutes(15);

    private readonly int _limit = options.Value.FailedAuthPerMinute;
    private readonly SourceWindow _failures = new(time);
    private readonly ConcurrentDictionary<string, AccountFailures> _accounts = new(StringComparer.OrdinalIgnoreCase);
    // Accounts in the table (ConcurrentDictionary.Count takes every lock), and when it was last swept.
    private int _accountCount;
    private long _lastSweepTicks;

    /// <summary>Sources with failures in the current window (for tests and metrics).</summary>
    public int TrackedSources => _failures.TrackedSources;

    public ValueTask<bool> RecordFailureAsync(HttpContext context) => ValueTask.FromResult(RecordFailure(context));

    public ValueTask<TimeSpan> AccountBackoffAsync(string account) => ValueTask.FromResult(AccountBackoff(account));

    public ValueTask RecordAccountFailureAsync(string account)
    {
        RecordAccountFailure(account);
        return default;
    }

    public ValueTask RecordAccountSuccessAsync(string account)
    {
        RecordAccountSuccess(account);
        return default;
    }

    /// <inheritdoc cref="IFailedAuthLimiter.RecordFailureAsync"/>
    public bool RecordFailure(HttpContext context)
    {
        if (_limit <= 0 || context.Connection.RemoteIpAddress is not { } address)
        {
            return true;
        }
        return _failures.Increment(address) <= _limit;
    }

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
        if (!_accounts.TryGetValue(account, out var failures))
        {
            // Bounded: a full table forgets accounts whose backoff ended long ago, swept at most once a window; while
            // it stays full, a new account is left to the per-source limit.
            if (Volatile.Read(ref _accountCount) >= MaxSources && !Sweep(now))
            {
                return;
            }
            failures = _accounts.GetOrAdd(account, static (_, limiter) =>
            {
                Interlocked.Increment(ref limiter._accountCount);
                return new AccountFailures();
            }, this);
        }
        failures.Fail(now);
    }

    /// <summary>The right password: the account's count starts again.</summary>
    public void RecordAccountSuccess(string account)
    {
        if (_accounts.TryRemove(account, out _))
        {
            Interlocked.Decrement(ref _accountCount);
        }
    }

    /// <summary>Forgets accounts whose backoff ended more than the longest backoff ago; true when there is room now.</summary>
    private bool Sweep(long now)
    {
        var last = Volatile.Read(ref _lastSweepTicks);
        if (now - last >= SourceWindow.Window.Ticks && Interlocked.CompareExchange(ref _lastSweepTicks, now, last) == last)
        {
            foreach (var (key, value) in _accounts)
            {
                if (now - value.NotBeforeTicks > MaxAccountBackoff.Ticks && _accounts.TryRemove(key, out _))
                {
                    Interlocked.Decrement(ref _accountCount);
                }
            }
        }
        return Volatile.Read(ref _accountCount) < MaxSources;
    }

    /// <summary>The wait after an account's <paramref name="failures"/>th consecutive failure, or null for none yet.</summary>
    public static TimeSpan? BackoffAfter(long failures) => failures < FreeAccountFailures
        ? null
        // 1 s after the fifth failure, then doubling: 2 s, 4 s, … up to the maximum.
        : TimeSpan.FromSeconds(Math.Min(1L << (int)Math.Min(failures - FreeAccountFailures, 20), (long)MaxAccountBackoff.TotalSeconds));

    private sealed class AccountFailures
    {
        private int _failures;

        public long NotBeforeTicks { get; private set; }

        public void Fail(long now)
        {
            lock (this)
            {
                var failures = ++_failures;
                if (BackoffAfter(failures) is { } backoff)
                {
                    NotBeforeTicks = now + backoff.Ticks;
                }
            }
        }
    }
}
