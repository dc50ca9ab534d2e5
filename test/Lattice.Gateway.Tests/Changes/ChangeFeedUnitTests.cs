using Lattice.Gateway.Auth;
using Lattice.Gateway.Changes;
using Microsoft.Extensions.Time.Testing;

namespace Lattice.Gateway.Tests.Changes;

/// <summary>The poller's wait (a push wakes it early; the interval holds otherwise) and the bounded table of key misses.</summary>
public sealed class ChangeFeedUnitTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    /// <summary>A push channel the test fires by hand.</summary>
    private sealed class ManualSignal : IChangeSignal
    {
        private TaskCompletionSource _next = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public ValueTask PublishAsync(CancellationToken cancellationToken)
        {
            Interlocked.Exchange(ref _next, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
            return ValueTask.CompletedTask;
        }

        public Task WaitAsync(CancellationToken cancellationToken) => Volatile.Read(ref _next).Task.WaitAsync(cancellationToken);
    }

    /// <summary>A push channel that is broken: every wait fails at once.</summary>
    private sealed class BrokenSignal : IChangeSignal
    {
        public ValueTask PublishAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public Task WaitAsync(CancellationToken cancellationToken) => Task.FromException(new InvalidOperationException("down"));
    }

    [Fact]
    public async Task A_push_wakes_the_poller_before_its_interval_is_up()
    {
        var time = new FakeTimeProvider();
        var signal = new ManualSignal();
        var wait = ChangeFeedPoller.NextReadAsync(signal, ChangeFeedPoller.Interval, time, CancellationToken.None);
        Assert.False(wait.IsCompleted);

        await signal.PublishAsync(CancellationToken.None);

        Assert.True(await wait.WaitAsync(Timeout));
    }

    [Fact]
    public async Task Without_a_push_the_poller_reads_when_its_interval_is_up_and_not_before()
    {
        var time = new FakeTimeProvider();
        var wait = ChangeFeedPoller.NextReadAsync(new PollingOnlyChangeSignal(), ChangeFeedPoller.Interval, time, CancellationToken.None);
        time.Advance(ChangeFeedPoller.Interval - TimeSpan.FromMilliseconds(1));
        Assert.False(wait.IsCompleted);

        time.Advance(TimeSpan.FromMilliseconds(1));

        Assert.True(await wait.WaitAsync(Timeout));
    }

    [Fact]
    public async Task A_broken_push_channel_does_not_turn_polling_into_a_busy_loop()
    {
        var time = new FakeTimeProvider();
        var wait = ChangeFeedPoller.NextReadAsync(new BrokenSignal(), ChangeFeedPoller.Interval, time, CancellationToken.None);
        // Give a wrongly finished wait every chance to show itself.
        await Task.Yield();
        Assert.False(wait.IsCompleted);

        time.Advance(ChangeFeedPoller.Interval);

        Assert.True(await wait.WaitAsync(Timeout));
    }

    [Fact]
    public async Task Stopping_ends_the_wait_with_false()
    {
        using var stop = new CancellationTokenSource();
        var wait = ChangeFeedPoller.NextReadAsync(new PollingOnlyChangeSignal(), ChangeFeedPoller.Interval, new FakeTimeProvider(), stop.Token);

        await stop.CancelAsync();

        Assert.False(await wait.WaitAsync(Timeout));
    }

    private static readonly string Hash = new('a', 64);
    private static readonly string OtherHash = new('b', 64);

    [Fact]
    public void A_miss_is_remembered_for_one_to_two_lifetimes()
    {
        var time = new FakeTimeProvider();
        var misses = new KeyMissCache(time);
        time.Advance(KeyMissCache.Lifetime - TimeSpan.FromSeconds(1));
        Assert.True(misses.TryAdd(Hash));
        Assert.True(misses.Contains(Hash));
        Assert.False(misses.Contains(OtherHash));

        // Its own generation ends: it lives on in the previous one.
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(misses.Contains(Hash));

        time.Advance(KeyMissCache.Lifetime);
        Assert.False(misses.Contains(Hash));
        Assert.Equal(0, misses.Count);
    }

    [Fact]
    public void The_miss_table_is_bounded_and_frees_itself_whole()
    {
        var time = new FakeTimeProvider();
        var misses = new KeyMissCache(time);
        for (var i = 0; i < KeyMissCache.MaxEntries; i++)
        {
            Assert.True(misses.TryAdd(i.ToString("x32") + new string('0', 32)));
        }
        Assert.True(misses.IsFull);
        Assert.False(misses.TryAdd(Hash));
        Assert.False(misses.Contains(Hash));
        Assert.Equal(KeyMissCache.MaxEntries, misses.Count);

        time.Advance(KeyMissCache.Lifetime);
        Assert.False(misses.IsFull);
        Assert.True(misses.TryAdd(Hash));

        time.Advance(KeyMissCache.Lifetime);
        Assert.Equal(1, misses.Count);
    }
}
