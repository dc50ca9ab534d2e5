using System.Collections.Concurrent;
using Lattice.Gateway.Cluster;

namespace Lattice.Gateway.Runtimes;

/// <summary>
/// The runtimes connected to this gateway node, by lattice id. Also their heartbeat: one timer for all links
/// (every <see cref="RuntimeConnection.PingEvery"/>) pings each link and drops the ones silent for longer than
/// <see cref="RuntimeConnection.DeadAfter"/>, instead of a timer per link — and, with several nodes, renews each
/// link's lease (<see cref="LinkLeases"/>) so the other nodes can reach it.
/// </summary>
public sealed class RuntimeRegistry(TimeProvider time, LinkLeases? leases = null) : IDisposable
{
    private readonly ConcurrentDictionary<string, RuntimeConnection> _connections = new(StringComparer.Ordinal);
    private readonly Lock _timerGate = new();
    private ITimer? _heartbeat;
    private bool _disposed;

    public RuntimeConnection? Find(string latticeId) =>
        _connections.TryGetValue(latticeId, out var c) && !c.Closed.IsCancellationRequested ? c : null;

    public int Count => _connections.Count;

    /// <summary>Registers a new link; an older link of the same runtime is cut (the daemon reconnected).</summary>
    public void Add(RuntimeConnection connection)
    {
        RuntimeConnection? previous = null;
        _connections.AddOrUpdate(connection.LatticeId, connection, (_, old) =>
        {
            previous = old;
            return connection;
        });
        previous?.Abort();
        EnsureHeartbeat();
    }

    public void Remove(RuntimeConnection connection) =>
        _connections.TryRemove(new KeyValuePair<string, RuntimeConnection>(connection.LatticeId, connection));

    /// <summary>Tells the other nodes this node holds <paramref name="connection"/> (its hello is in): they forward its requests here.</summary>
    public Task AnnounceAsync(RuntimeConnection connection) => leases?.ClaimAsync(connection) ?? Task.CompletedTask;

    /// <summary>The link has ended: its lease goes, unless a newer link of the runtime (on any node) has taken it.</summary>
    public Task WithdrawAsync(RuntimeConnection connection) => leases?.ReleaseAsync(connection) ?? Task.CompletedTask;

    /// <summary>Cuts a runtime's link, if it has one here.</summary>
    public void Disconnect(string latticeId)
    {
        if (_connections.TryRemove(latticeId, out var connection))
        {
            connection.Abort();
        }
    }

    /// <summary>One heartbeat round over every link (the timer's callback; tests call it directly).</summary>
    internal void Heartbeat()
    {
        foreach (var (_, connection) in _connections)
        {
            connection.Heartbeat();
        }
        if (leases is { Enabled: true } && !_connections.IsEmpty)
        {
            leases.Renew(_connections.Values.ToArray());
        }
    }

    private void EnsureHeartbeat()
    {
        if (_heartbeat is not null)
        {
            return;
        }
        lock (_timerGate)
        {
            if (_heartbeat is null && !_disposed)
            {
                _heartbeat = time.CreateTimer(static s => ((RuntimeRegistry)s!).Heartbeat(), this,
                    RuntimeConnection.PingEvery, RuntimeConnection.PingEvery);
            }
        }
    }

    public void Dispose()
    {
        lock (_timerGate)
        {
            _disposed = true;
            _heartbeat?.Dispose();
            _heartbeat = null;
        }
    }
}
