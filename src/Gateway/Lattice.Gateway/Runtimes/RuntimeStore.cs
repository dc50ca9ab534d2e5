using System.Collections.Frozen;
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

/// <summary>Runtime records for routing, as a snapshot rebuilt after every runtime write.</summary>
public sealed class RuntimeStore(IServiceScopeFactory scopes)
{
    private volatile FrozenDictionary<string, RuntimeRecord> _current = FrozenDictionary<string, RuntimeRecord>.Empty;
    private readonly SemaphoreSlim _gate = new(1, 1);

    private volatile FrozenDictionary<string, RuntimeRecord[]> _byWorkspace = FrozenDictionary<string, RuntimeRecord[]>.Empty;

    public RuntimeRecord? Find(string latticeId) => _current.GetValueOrDefault(latticeId);

    /// <summary>The live (not revoked) runtimes <paramref name="caller"/> may use, oldest first.</summary>
    public IEnumerable<RuntimeRecord> UsableBy(Auth.Caller caller) =>
        _byWorkspace.TryGetValue(caller.WorkspaceId, out var records) ? records.Where(r => !r.Revoked && !r.Hosted && r.VisibleTo(caller)) : [];

    public async Task ReloadAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
            var rows = await db.Runtimes.AsNoTracking().ToListAsync(cancellationToken);
            _byWorkspace = rows.GroupBy(r => r.WorkspaceId).ToFrozenDictionary(
                g => g.Key,
                g => g.OrderBy(r => r.CreatedAt).Select(r => new RuntimeRecord(r.LatticeId, r.WorkspaceId, r.Hosted, r.RevokedAt is not null, r.OwnerUserId, r.CreatedAt)).ToArray(),
                StringComparer.Ordinal);
            _current = rows.ToFrozenDictionary(r => r.LatticeId, r => new RuntimeRecord(r.LatticeId, r.WorkspaceId, r.Hosted, r.RevokedAt is not null, r.OwnerUserId, r.CreatedAt), StringComparer.Ordinal);
        }
        finally
        {
            _gate.Release();
        }
    }
}
