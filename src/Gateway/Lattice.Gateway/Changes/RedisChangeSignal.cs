using Lattice.Gateway.Persistence;

namespace Lattice.Gateway.Changes;

/// <summary>
/// The change feed's push channel over Redis pub/sub, when <c>Lattice:Redis</c> is set: a node that committed changes
/// publishes on <c>&lt;prefix&gt;changes</c>, and every node subscribed wakes its poller at once instead of at the next
/// poll. A message carries nothing (what changed is read from the <c>changes</c> table); one lost while Redis is away
/// costs at most a poll interval.
/// </summary>
public sealed class RedisChangeSignal(RedisStore redis) : IChangeSignal
{
    private const string Channel = "changes";

    private readonly object _gate = new();
    private TaskCompletionSource _published = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _subscribed;

    /// <summary>Messages received since this node started (this node's own included).</summary>
    public long Received => Interlocked.Read(ref _received);

    private long _received;

    public async ValueTask PublishAsync(CancellationToken cancellationToken) => await redis.TryPublishAsync(Channel);

    public async Task WaitAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _subscribed) == 0)
        {
            // Subscribed on the poller's first wait (Redis is connected by then, or on a later wait once it is).
            if (!await redis.TrySubscribeAsync(Channel, OnMessage))
            {
                // Not connected yet (the poller may start before Redis does) or Redis is away: wake the poller once it
                // is connected, so the next wait subscribes. Connected and still refused: poll alone from here on.
                if (await IsConnectedAsync(cancellationToken))
                {
                    await Task.Delay(Timeout.Infinite, cancellationToken);
                }
                return;
            }
            Volatile.Write(ref _subscribed, 1);
        }
        Task published;
        lock (_gate)
        {
            published = _published.Task;
            if (published.IsCompleted)
            {
                // A message came since the last wait: taken now.
                _published = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                return;
            }
        }
        await published.WaitAsync(cancellationToken);
        lock (_gate)
        {
            if (_published.Task == published)
            {
                _published = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }
        }
    }

    /// <summary>True when Redis was connected already; else waits until it is and answers false.</summary>
    private async Task<bool> IsConnectedAsync(CancellationToken cancellationToken)
    {
        var wait = redis.WhenConnectedAsync(cancellationToken);
        if (wait.IsCompletedSuccessfully)
        {
            return true;
        }
        await wait;
        return false;
    }

    private void OnMessage()
    {
        Interlocked.Increment(ref _received);
        lock (_gate)
        {
            _published.TrySetResult();
        }
    }
}
