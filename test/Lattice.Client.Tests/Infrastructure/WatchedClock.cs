using System.Threading.Channels;
using Microsoft.Extensions.Time.Testing;

namespace Lattice.Client.Tests.Infrastructure;

/// <summary>
/// The SDK's clock in tests: a fake clock (possibly the gateway's own) that reports every wait the SDK arms, so a test
/// advances time exactly when the SDK is waiting and never sleeps.
/// </summary>
public sealed class WatchedClock(FakeTimeProvider inner) : TimeProvider
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private readonly Channel<TimeSpan> _armed = Channel.CreateUnbounded<TimeSpan>();

    public WatchedClock() : this(new FakeTimeProvider(DateTimeOffset.UtcNow))
    {
    }

    public FakeTimeProvider Fake => inner;

    public override DateTimeOffset GetUtcNow() => inner.GetUtcNow();

    public override long GetTimestamp() => inner.GetTimestamp();

    public override long TimestampFrequency => inner.TimestampFrequency;

    public override TimeZoneInfo LocalTimeZone => inner.LocalTimeZone;

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var timer = inner.CreateTimer(callback, state, dueTime, period);
        if (dueTime != Timeout.InfiniteTimeSpan)
        {
            _armed.Writer.TryWrite(dueTime);
        }
        return timer;
    }

    /// <summary>Waits until the SDK arms its next wait; returns how long that wait is.</summary>
    public async Task<TimeSpan> NextWaitAsync() => await _armed.Reader.ReadAsync().AsTask().WaitAsync(Patience);

    /// <summary>Waits for the SDK's next wait and lets it elapse.</summary>
    public async Task<TimeSpan> ElapseNextWaitAsync()
    {
        var wait = await NextWaitAsync();
        inner.Advance(wait);
        return wait;
    }

    public void Advance(TimeSpan by) => inner.Advance(by);
}
