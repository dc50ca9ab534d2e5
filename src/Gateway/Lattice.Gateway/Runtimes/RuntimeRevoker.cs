using System.Linq.Expressions;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Runtimes;

/// <summary>
/// The one place a runtime is revoked — by its owner, by an operator, or because its owner left the workspace. The
/// record is marked and its credential stops working; the change is published on the change feed with it, so this node
/// cuts the link at once and every other node within a second (<see cref="RuntimeStore.ApplyAsync"/>).
/// </summary>
public sealed class RuntimeRevoker(LatticeDbContext db, Changes.ChangeFeed feed, TimeProvider time)
{
    public Task RevokeAsync(RuntimeEntity row, CancellationToken cancellationToken = default) => RevokeAsync([row], cancellationToken);

    /// <summary>Revokes every live runtime matching <paramref name="filter"/>; how many there were.</summary>
    public async Task<int> RevokeWhereAsync(Expression<Func<RuntimeEntity, bool>> filter, CancellationToken cancellationToken = default)
    {
        var live = await db.Runtimes.Where(filter).Where(r => r.RevokedAt == null).ToListAsync(cancellationToken);
        await RevokeAsync(live, cancellationToken);
        return live.Count;
    }

    private async Task RevokeAsync(IReadOnlyList<RuntimeEntity> rows, CancellationToken cancellationToken)
    {
        if (rows.Count == 0)
        {
            return;
        }
        var now = time.GetUtcNow();
        foreach (var row in rows)
        {
            row.RevokedAt ??= now;
            row.UpdatedAt = now;
            row.BootstrapTokenHash = null;
            feed.Record(db, Changes.ChangeKinds.Runtime, row.LatticeId, row.WorkspaceId);
        }
        await feed.SaveAsync(db, cancellationToken);
    }
}
