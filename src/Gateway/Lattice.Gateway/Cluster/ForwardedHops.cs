using System.Collections.Concurrent;

namespace Lattice.Gateway.Cluster;

/// <summary>
/// The requests this node is running on its links for other nodes, by the id it gave each in its start record
/// (<see cref="HopStart.Hop"/>). The node that forwarded one cancels it through <see cref="NodeEndpoints.CancelPattern"/>
/// when its client goes away: the request is then cancelled on the link as a local one is, and the runtime's count of
/// it goes back over the hop, which stays open for it.
/// </summary>
internal sealed class ForwardedHops
{
    private readonly ConcurrentDictionary<long, ForwardedHop> _running = new();
    // Starts at a random point, so an id of this process is never one a previous process on the same address gave out.
    private long _last = Random.Shared.NextInt64(1, long.MaxValue / 2);

    /// <summary>A forwarded request starts; its token is cancelled when the hop's connection closes or a cancel comes.</summary>
    public ForwardedHop Begin(CancellationToken aborted)
    {
        var hop = new ForwardedHop(Interlocked.Increment(ref _last), aborted);
        _running[hop.Id] = hop;
        return hop;
    }

    public void End(ForwardedHop hop)
    {
        _running.TryRemove(new KeyValuePair<long, ForwardedHop>(hop.Id, hop));
        hop.Dispose();
    }

    /// <summary>Asks the forwarded request <paramref name="id"/> to stop; false when none by that id is running (it has ended).</summary>
    public bool Cancel(long id)
    {
        if (!_running.TryGetValue(id, out var hop))
        {
            return false;
        }
        hop.RequestCancel();
        return true;
    }
}

internal sealed class ForwardedHop(long id, CancellationToken aborted) : IDisposable
{
    private readonly CancellationTokenSource _cts = CancellationTokenSource.CreateLinkedTokenSource(aborted);
    private int _cancelRequested;

    public long Id { get; } = id;

    /// <summary>Cancelled when the node that forwarded the request goes away or cancels it.</summary>
    public CancellationToken Token => _cts.Token;

    /// <summary>The forwarding node cancelled the request (its client went away) and waits for the runtime's count.</summary>
    public bool CancelRequested => Volatile.Read(ref _cancelRequested) == 1;

    public void RequestCancel()
    {
        if (Interlocked.Exchange(ref _cancelRequested, 1) == 0)
        {
            try
            {
                _cts.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // It ended meanwhile.
            }
        }
    }

    public void Dispose() => _cts.Dispose();
}
