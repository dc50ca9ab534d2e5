using System.Text;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Persistence;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Identity;

/// <summary>
/// Invitations to join a workspace: a workspace admin invites an e-mail address and passes the link on; the person
/// opens it, signs in with that address (or creates their account with it) and joins.
/// </summary>
public static class Invitations
{
    public const string PagePath = "/account/invitations";
    public static readonly TimeSpan Lifetime = TimeSpan.FromDays(7);
    private const string TokenPrefix = "inv_";
    private const string Gone = "This invitation link is not valid: it has expired, been used or been withdrawn. Ask for a new one.";

    public static (InvitationEntity Invitation, string Token) Create(string workspaceId, string email, string role, DateTimeOffset now)
    {
        var token = ApiKeySecrets.NewSecret(TokenPrefix);
        return (new InvitationEntity
        {
            Id = ApiKeySecrets.NewId("ivt_"),
            WorkspaceId = workspaceId,
            Email = UserService.NormalizeEmail(email),
            Role = role,
            TokenHash = ApiKeySecrets.Hash(token),
            CreatedAt = now,
            ExpiresAt = now + Lifetime,
        }, token);
    }

    public static IEndpointRouteBuilder MapInvitations(this IEndpointRouteBuilder routes)
    {
        routes.MapGet(PagePath + "/{token}", ShowAsync);
        routes.MapPost(PagePath + "/{token}", AcceptAsync);
        return routes;
    }

    private static async Task<InvitationEntity?> FindLiveAsync(LatticeDbContext db, string token, DateTimeOffset now)
    {
        if (!token.StartsWith(TokenPrefix, StringComparison.Ordinal) || token.Length > 200)
        {
            return null;
        }
        var hash = ApiKeySecrets.Hash(token);
        var invitation = await db.Invitations.FirstOrDefaultAsync(i => i.TokenHash == hash);
        return invitation is { AcceptedAt: null, RevokedAt: null } && invitation.ExpiresAt > now ? invitation : null;
    }

    private static async Task<IResult> ShowAsync(HttpContext context, string token, LatticeDbContext db, UserService users, IFailedAuthLimiter limiter, TimeProvider time)
    {
        var invitation = await FindLiveAsync(db, token, time.GetUtcNow());
        if (invitation is null)
        {
            try
            {
                return await limiter.RecordFailureAsync(context)
                    ? Pages.Message("Invitation", Gone, StatusCodes.Status410Gone)
                    : Pages.Message("Invitation", "Too many failed attempts. Try again in a minute.", StatusCodes.Status429TooManyRequests);
            }
            catch (SharedCountersUnavailableException)
            {
                return Pages.Message("Invitation", "Invitations are unavailable for a moment. Try again shortly.", StatusCodes.Status503ServiceUnavailable);
            }
        }
        var workspace = (await db.Workspaces.FindAsync(invitation.WorkspaceId))!;
        var title = $"Join {workspace.Name}";
        var user = await IdentityEndpoints.SessionUserAsync(context, users);
        if (user is not null)
        {
            if (user.Email != invitation.Email)
            {
                return Pages.Message(title, "This invitation is for another e-mail address. Sign out and open the link again.", StatusCodes.Status403Forbidden);
            }
            return Pages.Html(title, $"""
                <p>You are invited to join <strong id="workspace">{Pages.Encode(workspace.Name)}</strong> as {Pages.Encode(invitation.Role)}, signed in as {Pages.Encode(user.Email)}.</p>
                <form method="post">{Pages.Antiforgery(context)}<button type="submit" id="join">Join</button></form>
                """);
        }
        if (await db.Users.AnyAsync(u => u.Email == invitation.Email))
        {
            return Results.Redirect(IdentityEndpoints.LoginPath + QueryString.Create("returnUrl", PagePath + "/" + token));
        }
        var body = new StringBuilder();
        body.Append($"""<p>You are invited to join <strong id="workspace">{Pages.Encode(workspace.Name)}</strong> as {Pages.Encode(invitation.Role)}. Create your Lattice account for <strong>{Pages.Encode(invitation.Email)}</strong>:</p>""");
        body.Append($"""
            <form method="post">
            {Pages.Antiforgery(context)}
            <label for="name">Name</label>
            <input id="name" name="name" type="text" autocomplete="name" required>
            <label for="password">Password (at least 12 characters)</label>
            <input id="password" name="password" type="password" autocomplete="new-password" minlength="12" required>
            <button type="submit" id="join">Create account and join</button>
            </form>
            """);
        return Pages.Html(title, body.ToString());
    }

    private static async Task<IResult> AcceptAsync(
        HttpContext context, string token, LatticeDbContext db, UserService users, IAntiforgery antiforgery, TimeProvider time)
    {
        if (!context.Request.HasFormContentType || !await antiforgery.IsRequestValidAsync(context))
        {
            return Pages.Message("Invitation", "The form expired. Open the invitation link again.", StatusCodes.Status400BadRequest);
        }
        var now = time.GetUtcNow();
        var invitation = await FindLiveAsync(db, token, now);
        if (invitation is null)
        {
            return Pages.Message("Invitation", Gone, StatusCodes.Status410Gone);
        }
        var workspace = (await db.Workspaces.FindAsync(invitation.WorkspaceId))!;
        var title = $"Join {workspace.Name}";
        var user = await IdentityEndpoints.SessionUserAsync(context, users);
        if (user is null)
        {
            if (await db.Users.AnyAsync(u => u.Email == invitation.Email))
            {
                return Results.Redirect(IdentityEndpoints.LoginPath + QueryString.Create("returnUrl", PagePath + "/" + token));
            }
            var form = context.Request.Form;
            var password = form["password"].ToString();
            if (password.Length is < 12 or > 1024)
            {
                return Pages.Message(title, "The password must be 12 to 1024 characters. Go back and choose another.", StatusCodes.Status400BadRequest);
            }
            var name = form["name"].ToString().Trim();
            // Holding the link proves nothing about the address (links get forwarded): unverified until an operator says.
            user = await users.CreateAsync(invitation.Email, name.Length is > 0 and <= 200 ? name : invitation.Email, password, emailVerified: false);
            await IdentityEndpoints.StartSessionAsync(context, user);
        }
        else if (user.Email != invitation.Email)
        {
            return Pages.Message(title, "This invitation is for another e-mail address. Sign out and open the link again.", StatusCodes.Status403Forbidden);
        }
        invitation.AcceptedAt = now;
        invitation.AcceptedBy = user.Id;
        await db.SaveChangesAsync();
        await users.AddMemberAsync(invitation.WorkspaceId, user.Id, invitation.Role);
        return Pages.Message(title, $"You are now a member of {workspace.Name}.");
    }
}
