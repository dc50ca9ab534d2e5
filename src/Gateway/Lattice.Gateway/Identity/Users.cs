using Lattice.Gateway.Auth;
using Lattice.Gateway.Persistence;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Identity;

/// <summary>Users, passwords and workspace membership.</summary>
public sealed class UserService(LatticeDbContext db, GrantService grants, Runtimes.RuntimeRevoker runtimes, TimeProvider time)
{
    private static readonly PasswordHasher<UserEntity> Hasher = new();

    /// <summary>A hash made once, so a sign-in for an unknown e-mail costs as much as one for a known one.</summary>
    private static readonly string DummyHash = Hasher.HashPassword(new UserEntity { Id = "", Email = "", DisplayName = "", PasswordHash = "" }, "not a password");

    public static string NormalizeEmail(string email) => email.Trim().ToLowerInvariant();

    /// <param name="emailVerified">Whether the address is known to be the person's: only an operator can say so.</param>
    public async Task<UserEntity> CreateAsync(string email, string displayName, string password, bool emailVerified, CancellationToken cancellationToken = default)
    {
        var user = new UserEntity
        {
            Id = ApiKeySecrets.NewId("usr_"),
            Email = NormalizeEmail(email),
            DisplayName = displayName,
            PasswordHash = "",
            EmailVerified = emailVerified,
            CreatedAt = time.GetUtcNow(),
        };
        user.PasswordHash = Hasher.HashPassword(user, password);
        db.Users.Add(user);
        await db.SaveChangesAsync(cancellationToken);
        return user;
    }

    /// <summary>The user when the password matches; null otherwise. Takes the same time whether or not the e-mail exists.</summary>
    public async Task<UserEntity?> VerifyAsync(string email, string password, CancellationToken cancellationToken = default)
    {
        var normalized = NormalizeEmail(email);
        var user = await db.Users.FirstOrDefaultAsync(u => u.Email == normalized, cancellationToken);
        if (user is null)
        {
            Hasher.VerifyHashedPassword(new UserEntity { Id = "", Email = "", DisplayName = "", PasswordHash = "" }, DummyHash, password);
            return null;
        }
        var result = Hasher.VerifyHashedPassword(user, user.PasswordHash, password);
        if (result == PasswordVerificationResult.SuccessRehashNeeded)
        {
            user.PasswordHash = Hasher.HashPassword(user, password);
            await db.SaveChangesAsync(cancellationToken);
        }
        return result == PasswordVerificationResult.Failed ? null : user;
    }

    /// <summary>Marks the user's address verified (an operator's act); null when there is no such user.</summary>
    public async Task<UserEntity?> VerifyEmailAsync(string userId, CancellationToken cancellationToken = default)
    {
        var user = await db.Users.FirstOrDefaultAsync(u => u.Id == userId, cancellationToken);
        if (user is { EmailVerified: false })
        {
            user.EmailVerified = true;
            await db.SaveChangesAsync(cancellationToken);
        }
        return user;
    }

    public Task<UserEntity?> FindAsync(string userId, CancellationToken cancellationToken = default) =>
        db.Users.FirstOrDefaultAsync(u => u.Id == userId, cancellationToken);

    /// <summary>The workspaces the user belongs to, oldest membership first.</summary>
    public async Task<List<WorkspaceEntity>> WorkspacesOfAsync(string userId, CancellationToken cancellationToken = default)
    {
        var rows = await (from m in db.WorkspaceMembers
                          join w in db.Workspaces on m.WorkspaceId equals w.Id
                          where m.UserId == userId
                          select new { w, m.CreatedAt }).ToListAsync(cancellationToken);
        return rows.OrderBy(r => r.CreatedAt).Select(r => r.w).ToList();
    }

    /// <summary>The user's role in the workspace (<c>owner</c> or <c>member</c>), or null when not a member.</summary>
    public Task<string?> RoleAsync(string workspaceId, string userId, CancellationToken cancellationToken = default) =>
        db.WorkspaceMembers.Where(m => m.WorkspaceId == workspaceId && m.UserId == userId).Select(m => (string?)m.Role).FirstOrDefaultAsync(cancellationToken);

    public const string OwnerRole = "owner";

    public Task<bool> IsMemberAsync(string workspaceId, string userId, CancellationToken cancellationToken = default) =>
        db.WorkspaceMembers.AnyAsync(m => m.WorkspaceId == workspaceId && m.UserId == userId, cancellationToken);

    public async Task AddMemberAsync(string workspaceId, string userId, string role, CancellationToken cancellationToken = default)
    {
        if (!await IsMemberAsync(workspaceId, userId, cancellationToken))
        {
            db.WorkspaceMembers.Add(new WorkspaceMemberEntity { WorkspaceId = workspaceId, UserId = userId, Role = role, CreatedAt = time.GetUtcNow() });
            await db.SaveChangesAsync(cancellationToken);
        }
    }

    /// <summary>
    /// Removes the membership and revokes every grant the user made in that workspace and every personal runtime they
    /// own there (their links are cut), effective at once.
    /// </summary>
    public async Task<bool> RemoveMemberAsync(string workspaceId, string userId, CancellationToken cancellationToken = default)
    {
        var member = await db.WorkspaceMembers.FirstOrDefaultAsync(m => m.WorkspaceId == workspaceId && m.UserId == userId, cancellationToken);
        if (member is null)
        {
            return false;
        }
        db.WorkspaceMembers.Remove(member);
        await db.SaveChangesAsync(cancellationToken);
        await grants.RevokeWhereAsync(g => g.WorkspaceId == workspaceId && g.UserId == userId, cancellationToken);
        await runtimes.RevokeWhereAsync(r => r.WorkspaceId == workspaceId && r.OwnerUserId == userId, cancellationToken);
        return true;
    }
}
