using System.Collections.Frozen;
using Lattice.Gateway.Changes;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Runtimes;

/// <summary>What routing needs to know of a runtime record.</summary>
public sealed record RuntimeRecord(string LatticeId, string WorkspaceId, bool Hosted, bool Revoked, string? OwnerUserId, DateTimeOffset CreatedAt)
{
    /// <summary>
    /// Whether <paramref name="caller"/> may see and use this runtime: only callers of its own workspace, and of
    /// those, an OAuth token only for its user's own runtimes and the workspace's shared (unowned) ones.
    /// </summary>
    public bool VisibleTo(Auth.Caller caller) => RuntimeAccess.Visible(caller, WorkspaceId, OwnerUserId);
}

/// <summary>The one rule for who sees which runtime, for snapshots and queries alike.</summary>
public static class RuntimeAccess
{
    public static bool Visible(Auth.Caller caller, string workspaceId, string? ownerUserId) =>
        workspaceId == caller.WorkspaceId && (caller.UserId is null || ownerUserId is null || ownerUserId == caller.UserId);

    /// <summary>The runtime records <paramref name="caller"/> may see.</summary>
    public static IQueryable<RuntimeEntity> VisibleTo(this IQueryable<RuntimeEntity> runtimes, Auth.Caller caller)
    {
        var workspaceId = caller.WorkspaceId;
        var userId = caller.UserId;
        var query = runtimes.Where(r => r.WorkspaceId == workspaceId);
        return userId is null ? query : query.Where(r => r.OwnerUserId == null || r.OwnerUserId == userId);
    }
}

/// <summary>
/// Runtime records: their creation, and a snapshot for routing, kept current by the change feed — each runtime
/// written here or on another node is read again by its lattice id. A runtime whose record is now revoked loses its
/// link to this node (revocations are written by <see cref="RuntimeRevoker"/>).
/// </summary>
public sealed class RuntimeStore(IServiceScopeFactory scopes, ChangeFeed feed, RuntimeRegistry links) : IChangeHandler
{
    /// <summary>More runtimes than this in one batch of changes: every record is read again rather than one by one.</summary>
    private const int RefreshLimit = 500;

    private volatile FrozenDictionary<string, RuntimeRecord> _current = FrozenDictionary<string, RuntimeRecord>.Empty;
    private readonly SemaphoreSlim _gate = new(1, 1);
    // Under _gate: every record by lattice id; the snapshots are made from it.
    private readonly Dictionary<string, RuntimeRecord> _byId = new(StringComparer.Ordinal);

    private volatile FrozenDictionary<string, RuntimeRecord[]> _byWorkspace = FrozenDictionary<string, RuntimeRecord[]>.Empty;

    public IReadOnlyCollection<string> Kinds { get; } = [ChangeKinds.Runtime];

    public RuntimeRecord? Find(string latticeId) => _current.GetValueOrDefault(latticeId);

    /// <summary>Every runtime record in the current snapshot (for the metrics' gauges, read at collection time).</summary>
    public IEnumerable<RuntimeRecord> All => _current.Values;

    /// <summary>The live (not revoked) runtimes <paramref name="caller"/> may use, oldest first.</summary>
    public IEnumerable<RuntimeRecord> UsableBy(Auth.Caller caller) =>
        _byWorkspace.TryGetValue(caller.WorkspaceId, out var records) ? records.Where(r => !r.Revoked && !r.Hosted && r.VisibleTo(caller)) : [];

    /// <summary>Stores a new runtime record and publishes it.</summary>
    public Task AddAsync(RuntimeEntity runtime, CancellationToken cancellationToken = default) => feed.WriteAsync(db =>
    {
        db.Runtimes.Add(runtime);
        feed.Record(db, ChangeKinds.Runtime, runtime.LatticeId, runtime.WorkspaceId);
        return Task.FromResult(runtime);
    }, cancellationToken);

    /// <summary>Reads the changed runtimes again (every record, for a large batch), then cuts the links of those now revoked.</summary>
    public async Task ApplyAsync(IReadOnlyList<ChangeEntity> changes, CancellationToken cancellationToken)
    {
        var ids = changes.Select(c => c.EntityId).Distinct(StringComparer.Ordinal).ToList();
        if (ids.Count > RefreshLimit)
        {
            await ReloadAsync(cancellationToken);
        }
        else
        {
            await _gate.WaitAsync(cancellationToken);
            try
            {
                await using var scope = scopes.CreateAsyncScope();
                var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
                var rows = await db.Runtimes.AsNoTracking().Where(r => ids.Contains(r.LatticeId)).ToListAsync(cancellationToken);
                foreach (var id in ids)
                {
                    _byId.Remove(id);
                }
                foreach (var row in rows)
                {
                    _byId[row.LatticeId] = ToRecord(row);
                }
                Publish();
            }
            finally
            {
                _gate.Release();
            }
        }
        // The snapshot before the cut: routing stops choosing the runtime, and a link that registers after the cut
        // finds the record revoked when it checks after its hello.
        foreach (var id in ids)
        {
            if (Find(id) is null or { Revoked: true })
            {
                // In-flight dispatches fail, and the daemon's reconnect is refused.
                links.Disconnect(id);
            }
        }
    }

    public async Task ReloadAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
            var rows = await db.Runtimes.AsNoTracking().ToListAsync(cancellationToken);
            _byId.Clear();
            foreach (var row in rows)
            {
                _byId[row.LatticeId] = ToRecord(row);
            }
            Publish();
        }
        finally
        {
            _gate.Release();
        }
    }

    private static RuntimeRecord ToRecord(RuntimeEntity r) => new(r.LatticeId, r.WorkspaceId, r.Hosted, r.RevokedAt is not null, r.OwnerUserId, r.CreatedAt);

    /// <summary>Swaps in snapshots made from <see cref="_byId"/>; under the gate.</summary>
    private void Publish()
    {
        _byWorkspace = _byId.Values.GroupBy(r => r.WorkspaceId).ToFrozenDictionary(
            g => g.Key, g => g.OrderBy(r => r.CreatedAt).ToArray(), StringComparer.Ordinal);
        _current = _byId.ToFrozenDictionary(StringComparer.Ordinal);
    }
}
