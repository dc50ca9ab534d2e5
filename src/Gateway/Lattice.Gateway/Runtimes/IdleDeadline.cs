namespace Lattice.Gateway.Runtimes;

/// <summary>Something whose progress an <see cref="IdleDeadline"/> watches: when its last piece arrived.</summary>
internal interface IIdleProgress
{
    /// <summary>A <see cref="TimeProvider"/> timestamp: when the last frame (or record) arrived.</summary>
    long LastFrameAt { get; }
}

/// <summary>
/// A dispatch's execution timeout measured as time without progress: it fires only when no frame of the dispatch
/// has arrived for the whole timeout, so an answer that keeps producing is never cut however long it runs.
/// </summary>
/// <remarks>
/// Frames only note their arrival time (<see cref="RuntimeDispatch.LastFrameAt"/>); the one timer, when it comes
/// due, re-arms itself for what is left since the last frame instead of being reset by every frame.
/// </remarks>
internal sealed class IdleDeadline : IDisposable
{
    private readonly TimeProvider _time;
    private readonly TimeSpan _idle;
    private readonly CancellationTokenSource _cts;
    private readonly ITimer _timer;
    private readonly long _startedAt;
    private IIdleProgress? _progress;
    private int _disposed;

    public IdleDeadline(TimeProvider time, TimeSpan idle, CancellationToken aborted)
    {
        _time = time;
        _idle = idle;
        _startedAt = time.GetTimestamp();
        _cts = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        _timer = time.CreateTimer(static state => ((IdleDeadline)state!).Due(), this, idle, Timeout.InfiniteTimeSpan);
    }

    /// <summary>Cancelled when the client goes away or the dispatch has made no progress for the timeout.</summary>
    public CancellationToken Token => _cts.Token;

    /// <summary>From now on progress is the dispatch's frames (before: the time waiting for a slot counts as idle).</summary>
    public void Watch(IIdleProgress progress) => Volatile.Write(ref _progress, progress);

    /// <summary>Cancels <see cref="Token"/> now: the dispatch is given up (a no-op once disposed).</summary>
    public void Abort()
    {
        try
        {
            _cts.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The dispatch has finished already.
        }
    }

    private void Due()
    {
        var last = Volatile.Read(ref _progress)?.LastFrameAt ?? _startedAt;
        var idleFor = _time.GetElapsedTime(last);
        try
        {
            if (idleFor >= _idle)
            {
                _cts.Cancel();
            }
            else
            {
                _timer.Change(_idle - idleFor, Timeout.InfiniteTimeSpan);
            }
        }
        catch (ObjectDisposedException)
        {
            // The dispatch finished while the timer came due.
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _timer.Dispose();
            _cts.Dispose();
        }
    }
}
