using System.Collections.Concurrent;

namespace Lattice.Gateway.Runtimes;

/// <summary>The runtimes connected to this gateway node, by lattice id.</summary>
public sealed class RuntimeRegistry
{
    private readonly ConcurrentDictionary<string, RuntimeConnection> _connections = new(StringComparer.Ordinal);

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
    }

    public void Remove(RuntimeConnection connection) =>
        _connections.TryRemove(new KeyValuePair<string, RuntimeConnection>(connection.LatticeId, connection));

    /// <summary>Cuts a runtime's link, if it has one here.</summary>
    public void Disconnect(string latticeId)
    {
        if (_connections.TryRemove(latticeId, out var connection))
        {
            connection.Abort();
        }
    }
}
