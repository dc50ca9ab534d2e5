using System.Linq.Expressions;
using Lattice.Gateway.Identity;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Runtimes;

/// <summary>
/// The one place a runtime is revoked — by its owner, by an operator, or because its owner left the workspace. The
/// record is marked, its credential stops working, the revocation goes into the revocation log so every other node
/// reloads its records and cuts the link within a second, and this node cuts it at once.
/// </summary>
public sealed class RuntimeRevoker(LatticeDbContext db, RuntimeStore store, RuntimeRegistry registry, TimeProvider time)
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
            db.Revocations.Add(new RevocationEntity { Kind = RevocationSet.RuntimeKind, SubjectId = row.LatticeId, RevokedAt = now });
        }
        await db.SaveChangesAsync(cancellationToken);
        // The snapshot before the cut: routing stops choosing the runtime, and a link that registers after the cut
        // finds the record revoked when it checks after its hello.
        await store.ReloadAsync(cancellationToken);
        foreach (var row in rows)
        {
            // In-flight dispatches fail, and the daemon's reconnect is refused.
            registry.Disconnect(row.LatticeId);
        }
    }
}
