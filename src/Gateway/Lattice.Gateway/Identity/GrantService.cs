using System.Linq.Expressions;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;
using OpenIddict.Abstractions;

namespace Lattice.Gateway.Identity;

/// <summary>Records and revokes grants (a user's consent to an app, in one workspace).</summary>
public sealed class GrantService(
    LatticeDbContext db,
    IOpenIddictAuthorizationManager authorizations,
    IOpenIddictTokenManager tokens,
    RevocationSet revoked,
    TimeProvider time)
{
    public async Task RecordAsync(string authorizationId, string workspaceId, string userId, string clientId, IEnumerable<string> scopes, CancellationToken cancellationToken = default)
    {
        db.OAuthGrants.Add(new OAuthGrantEntity
        {
            Id = authorizationId,
            WorkspaceId = workspaceId,
            UserId = userId,
            ClientId = clientId,
            Scopes = string.Join(' ', scopes),
            CreatedAt = time.GetUtcNow(),
        });
        await db.SaveChangesAsync(cancellationToken);
    }

    public Task<OAuthGrantEntity?> FindAsync(string id, CancellationToken cancellationToken = default) =>
        db.OAuthGrants.FirstOrDefaultAsync(g => g.Id == id, cancellationToken);

    /// <summary>Revokes every live grant matching <paramref name="filter"/>: their tokens fail on the next request.</summary>
    public async Task<int> RevokeWhereAsync(Expression<Func<OAuthGrantEntity, bool>> filter, CancellationToken cancellationToken = default)
    {
        var live = await db.OAuthGrants.Where(filter).Where(g => g.RevokedAt == null).ToListAsync(cancellationToken);
        foreach (var grant in live)
        {
            await RevokeAsync(grant, cancellationToken);
        }
        return live.Count;
    }

    public async Task RevokeAsync(OAuthGrantEntity grant, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        grant.RevokedAt ??= now;
        db.Revocations.Add(new RevocationEntity { Kind = RevocationSet.GrantKind, SubjectId = grant.Id, RevokedAt = now });
        await db.SaveChangesAsync(cancellationToken);
        revoked.Apply(RevocationSet.GrantKind, grant.Id);

        if (await authorizations.FindByIdAsync(grant.Id, cancellationToken) is { } authorization)
        {
            await authorizations.TryRevokeAsync(authorization, cancellationToken);
        }
        // Refresh tokens, device codes and authorization codes of the grant stop working too.
        await tokens.RevokeByAuthorizationIdAsync(grant.Id, cancellationToken);
    }

    /// <summary>Logs a revocation OpenIddict made itself (RFC 7009), so every node stops honouring it.</summary>
    public async Task LogAsync(string kind, string subjectId, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        if (kind == RevocationSet.GrantKind && await db.OAuthGrants.FindAsync([subjectId], cancellationToken) is { } grant)
        {
            grant.RevokedAt ??= now;
        }
        db.Revocations.Add(new RevocationEntity { Kind = kind, SubjectId = subjectId, RevokedAt = now });
        await db.SaveChangesAsync(cancellationToken);
        revoked.Apply(kind, subjectId);
    }
}
