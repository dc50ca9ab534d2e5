namespace Lattice.Gateway.Changes;

/// <summary>
/// A push channel between nodes that wakes the change-feed poller early (PostgreSQL <c>LISTEN/NOTIFY</c>, Redis pub/sub).
/// It only says "look now": what changed is always read from the <c>changes</c> table, so a lost or repeated signal
/// costs at most one poll interval, never a change.
/// </summary>
public interface IChangeSignal
{
    /// <summary>
    /// Tells the other nodes that changes were committed; called after each commit that recorded some. Best effort:
    /// a failure is the implementation's to log, never the writer's to see.
    /// </summary>
    ValueTask PublishAsync(CancellationToken cancellationToken);

    /// <summary>Completes when another node published since this was last called (or was cancelled).</summary>
    Task WaitAsync(CancellationToken cancellationToken);
}

/// <summary>No push channel: nodes learn of changes by polling alone, within <see cref="ChangeFeedPoller.Interval"/>.</summary>
public sealed class PollingOnlyChangeSignal : IChangeSignal
{
    public ValueTask PublishAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public Task WaitAsync(CancellationToken cancellationToken) => Task.Delay(Timeout.Infinite, cancellationToken);
}
