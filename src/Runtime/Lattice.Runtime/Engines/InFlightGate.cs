namespace Lattice.Runtime.Engines;

/// <summary>
/// Counts an engine's requests in flight and lets disposal close the door and wait for the last one, so weights
/// are never freed under a running request.
/// </summary>
internal sealed class InFlightGate
{
    private readonly Lock _lock = new();
    private int _inFlight;
    private bool _closed;
    private TaskCompletionSource? _drained;

    public bool IsClosed
    {
        get
        {
            lock (_lock)
            {
                return _closed;
            }
        }
    }

    /// <summary>Admits one request; throws <see cref="ObjectDisposedException"/> once closed.</summary>
    public void Enter(object owner)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_closed, owner);
            _inFlight++;
        }
    }

    public void Exit()
    {
        TaskCompletionSource? drained = null;
        lock (_lock)
        {
            if (--_inFlight == 0)
            {
                drained = _drained;
            }
        }
        drained?.TrySetResult();
    }

    /// <summary>Admits nothing more and waits for the requests in flight; false when it was already closed.</summary>
    public async ValueTask<bool> CloseAsync()
    {
        Task? drained = null;
        lock (_lock)
        {
            if (_closed)
            {
                return false;
            }
            _closed = true;
            if (_inFlight > 0)
            {
                _drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                drained = _drained.Task;
            }
        }
        if (drained is not null)
        {
            await drained.ConfigureAwait(false);
        }
        return true;
    }
}
