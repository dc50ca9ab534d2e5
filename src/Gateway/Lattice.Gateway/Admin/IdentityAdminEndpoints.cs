using Lattice.Gateway.Hosting;
using Lattice.Gateway.Identity;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Persistence;
using Lattice.Protocol;
using Microsoft.EntityFrameworkCore;
using static Lattice.Gateway.Admin.AdminEndpoints;
using Lattice.Gateway.ApiReference;

namespace Lattice.Gateway.Admin;

/// <summary>Users, workspace members, OAuth apps and grants in the admin API.</summary>
internal static class IdentityAdminEndpoints
{
    public static void Map(RouteGroupBuilder admin, RouteGroupBuilder workspace)
    {
        admin.MapPost("/users", CreateUserAsync).Describe("Admin: users, members and apps", "CreateUser", "Create a user");
        admin.MapGet("/users", ListUsersAsync).Describe("Admin: users, members and apps", "ListUsers", "List users");
        // Only the operator vouches for an address; there is no route by which a user marks their own.
        admin.MapPost("/users/{userId}/verify-email", VerifyEmailAsync).Describe("Admin: users, members and apps", "VerifyUserEmail", "Mark a user's e-mail address verified");
        workspace.MapGet("/workspaces/{workspaceId}/members", ListMembersAsync).Describe("Admin: users, members and apps", "ListMembers", "List a workspace's members");
        // Adding someone to a workspace is the operator's call until invitations exist: a workspace admin could
        // otherwise pull in (and learn the e-mail of) any user whose id they know.
        admin.MapPost("/workspaces/{workspaceId}/members", AddMemberAsync).Describe("Admin: users, members and apps", "AddMember", "Add a user to a workspace");
        workspace.MapDelete("/workspaces/{workspaceId}/members/{userId}", RemoveMemberAsync).Describe("Admin: users, members and apps", "RemoveMember", "Remove a member from a workspace");
        workspace.MapPost("/workspaces/{workspaceId}/invitations", InviteAsync).Describe("Admin: users, members and apps", "CreateInvitation", "Invite someone to a workspace by e-mail");
        workspace.MapGet("/workspaces/{workspaceId}/invitations", ListInvitationsAsync).Describe("Admin: users, members and apps", "ListInvitations", "List a workspace's invitations");
        workspace.MapPost("/invitations/{invitationId}/revoke", RevokeInvitationAsync).Describe("Admin: users, members and apps", "RevokeInvitation", "Revoke an invitation");

        workspace.MapPost("/workspaces/{workspaceId}/apps", CreateAppAsync).Describe("Admin: users, members and apps", "CreateApp", "Register an OAuth app");
        workspace.MapGet("/workspaces/{workspaceId}/apps", ListAppsAsync).Describe("Admin: users, members and apps", "ListApps", "List a workspace's OAuth apps");
        workspace.MapGet("/apps/{clientId}", GetAppAsync).Describe("Admin: users, members and apps", "GetApp", "Get an OAuth app");
        workspace.MapDelete("/apps/{clientId}", DeleteAppAsync).Describe("Admin: users, members and apps", "DeleteApp", "Delete an OAuth app");

        workspace.MapGet("/workspaces/{workspaceId}/grants", ListGrantsAsync).Describe("Admin: users, members and apps", "ListGrants", "List the OAuth grants in a workspace");
        workspace.MapPost("/grants/{grantId}/revoke", RevokeGrantAsync).Describe("Admin: users, members and apps", "RevokeGrant", "Revoke an OAuth grant and its tokens");
    }

    // ---- users and members ----

    private static async Task<IResult> CreateUserAsync(CreateUserRequest? body, UserService users, LatticeDbContext db)
    {
        var email = body?.Email?.Trim();
        if (!IsEmailAddress(email))
        {
            return Error(GatewayError.InvalidRequest("'email' must be an e-mail address.", "email"));
        }
        if (body!.Password is not { Length: >= 12 and <= 1024 })
        {
            return Error(GatewayError.InvalidRequest("'password' must be 12 to 1024 characters.", "password"));
        }
        var normalized = UserService.NormalizeEmail(email);
        if (await db.Users.AnyAsync(u => u.Email == normalized))
        {
            return Error(new GatewayError(StatusCodes.Status409Conflict, ErrorTypes.InvalidRequest, ErrorCodes.Conflict, "A user with this e-mail already exists.", "email"));
        }
        var name = string.IsNullOrWhiteSpace(body.Name) ? normalized : body.Name.Trim();
        var user = await users.CreateAsync(normalized, name, body.Password, body.EmailVerified ?? false);
        return AdminEndpoints.Json(ToDto(user), AdminJsonContext.Default.UserDto, StatusCodes.Status201Created);
    }

    private static async Task<IResult> VerifyEmailAsync(string userId, UserService users)
    {
        var user = await users.VerifyEmailAsync(userId);
        return user is null
            ? Error(GatewayError.NotFound($"The user '{userId}' does not exist."))
            : AdminEndpoints.Json(ToDto(user), AdminJsonContext.Default.UserDto);
    }

    private static UserDto ToDto(UserEntity u) => new(u.Id, u.Email, u.DisplayName, u.EmailVerified, u.CreatedAt.ToUnixTimeSeconds());

    private static async Task<IResult> ListUsersAsync(LatticeDbContext db)
    {
        var rows = await db.Users.AsNoTracking().ToListAsync();
        var data = rows.OrderBy(u => u.CreatedAt).Select(ToDto).ToList();
        return AdminEndpoints.Json(new ListDto<UserDto>(data), AdminJsonContext.Default.ListDtoUserDto);
    }

    private static async Task<IResult> ListMembersAsync(HttpContext context, string workspaceId, LatticeDbContext db)
    {
        if (!Manages(context, workspaceId) || await db.Workspaces.FindAsync(workspaceId) is null)
        {
            return Error(WorkspaceNotFound(workspaceId));
        }
        var rows = await (from m in db.WorkspaceMembers
                          join u in db.Users on m.UserId equals u.Id
                          where m.WorkspaceId == workspaceId
                          select new { m, u.Email }).AsNoTracking().ToListAsync();
        var data = rows.OrderBy(r => r.m.CreatedAt).Select(r => new MemberDto(r.m.WorkspaceId, r.m.UserId, r.Email, r.m.Role, r.m.CreatedAt.ToUnixTimeSeconds())).ToList();
        return AdminEndpoints.Json(new ListDto<MemberDto>(data), AdminJsonContext.Default.ListDtoMemberDto);
    }

    private static async Task<IResult> AddMemberAsync(HttpContext context, string workspaceId, AddMemberRequest? body, LatticeDbContext db, UserService users)
    {
        if (!Manages(context, workspaceId) || await db.Workspaces.FindAsync(workspaceId) is null)
        {
            return Error(WorkspaceNotFound(workspaceId));
        }
        var role = body?.Role ?? "member";
        if (role is not ("owner" or "member"))
        {
            return Error(GatewayError.InvalidRequest("'role' must be 'owner' or 'member'.", "role"));
        }
        if (body?.UserId is not { Length: > 0 } userId || await users.FindAsync(userId) is not { } user)
        {
            return Error(GatewayError.InvalidRequest("'user_id' must name an existing user.", "user_id"));
        }
        await users.AddMemberAsync(workspaceId, userId, role);
        var member = await db.WorkspaceMembers.AsNoTracking().FirstAsync(m => m.WorkspaceId == workspaceId && m.UserId == userId);
        return AdminEndpoints.Json(new MemberDto(workspaceId, userId, user.Email, member.Role, member.CreatedAt.ToUnixTimeSeconds()), AdminJsonContext.Default.MemberDto, StatusCodes.Status201Created);
    }

    private static async Task<IResult> RemoveMemberAsync(HttpContext context, string workspaceId, string userId, LatticeDbContext db, UserService users)
    {
        if (!Manages(context, workspaceId) || await db.Workspaces.FindAsync(workspaceId) is null)
        {
            return Error(WorkspaceNotFound(workspaceId));
        }
        if (!await users.RemoveMemberAsync(workspaceId, userId))
        {
            return Error(GatewayError.NotFound($"The user '{userId}' is not a member of this workspace."));
        }
        return TypedResults.NoContent();
    }

    // ---- invitations ----

    private static async Task<IResult> InviteAsync(HttpContext context, string workspaceId, CreateInvitationRequest? body, LatticeDbContext db, TimeProvider time, PublicUrl publicUrl)
    {
        if (!Manages(context, workspaceId) || await db.Workspaces.FindAsync(workspaceId) is null)
        {
            return Error(WorkspaceNotFound(workspaceId));
        }
        var email = body?.Email?.Trim();
        if (!IsEmailAddress(email))
        {
            return Error(GatewayError.InvalidRequest("'email' must be an e-mail address.", "email"));
        }
        var role = body!.Role ?? "member";
        if (role is not ("owner" or "member"))
        {
            return Error(GatewayError.InvalidRequest("'role' must be 'owner' or 'member'.", "role"));
        }
        var (invitation, token) = Invitations.Create(workspaceId, email, role, time.GetUtcNow());
        db.Invitations.Add(invitation);
        await db.SaveChangesAsync();
        // From the configured public URL, never the Host header: a caller choosing the host would choose where the
        // link the invitee receives points (and where its token would be sent).
        var url = publicUrl.Combine(Invitations.PagePath + "/" + token);
        return AdminEndpoints.Json(ToDto(invitation) with { AcceptUrl = url }, AdminJsonContext.Default.InvitationDto, StatusCodes.Status201Created);
    }

    private static async Task<IResult> ListInvitationsAsync(HttpContext context, string workspaceId, LatticeDbContext db)
    {
        if (!Manages(context, workspaceId) || await db.Workspaces.FindAsync(workspaceId) is null)
        {
            return Error(WorkspaceNotFound(workspaceId));
        }
        var rows = await db.Invitations.AsNoTracking().Where(i => i.WorkspaceId == workspaceId).ToListAsync();
        return AdminEndpoints.Json(new ListDto<InvitationDto>(rows.OrderBy(i => i.CreatedAt).Select(ToDto).ToList()), AdminJsonContext.Default.ListDtoInvitationDto);
    }

    private static async Task<IResult> RevokeInvitationAsync(HttpContext context, string invitationId, LatticeDbContext db, TimeProvider time)
    {
        var invitation = await db.Invitations.FirstOrDefaultAsync(i => i.Id == invitationId);
        if (invitation is null || !Manages(context, invitation.WorkspaceId))
        {
            return Error(GatewayError.NotFound($"The invitation '{invitationId}' does not exist."));
        }
        invitation.RevokedAt ??= time.GetUtcNow();
        await db.SaveChangesAsync();
        return AdminEndpoints.Json(ToDto(invitation), AdminJsonContext.Default.InvitationDto);
    }

    private static InvitationDto ToDto(InvitationEntity i) => new(
        i.Id, i.WorkspaceId, i.Email, i.Role, i.CreatedAt.ToUnixTimeSeconds(), i.ExpiresAt.ToUnixTimeSeconds(),
        i.AcceptedAt?.ToUnixTimeSeconds(), i.RevokedAt?.ToUnixTimeSeconds());

    // ---- OAuth apps ----

    private static async Task<IResult> CreateAppAsync(HttpContext context, string workspaceId, CreateAppRequest? body, LatticeDbContext db, OAuthAppService apps)
    {
        if (!Manages(context, workspaceId) || await db.Workspaces.FindAsync(workspaceId) is null)
        {
            return Error(WorkspaceNotFound(workspaceId));
        }
        var spec = new OAuthAppSpec(body?.Name?.Trim() ?? "", body?.RedirectUris ?? [], body?.Scopes ?? [], body?.Confidential ?? false, body?.DeviceFlow ?? false);
        if (OAuthAppService.Validate(spec) is { } problem)
        {
            return Error(GatewayError.InvalidRequest(problem.Message, problem.Param));
        }
        var (app, secret) = await apps.CreateAsync(workspaceId, spec);
        return AdminEndpoints.Json(ToDto(app) with { ClientSecret = secret }, AdminJsonContext.Default.AppDto, StatusCodes.Status201Created);
    }

    private static async Task<IResult> ListAppsAsync(HttpContext context, string workspaceId, LatticeDbContext db, OAuthAppService apps)
    {
        if (!Manages(context, workspaceId) || await db.Workspaces.FindAsync(workspaceId) is null)
        {
            return Error(WorkspaceNotFound(workspaceId));
        }
        var list = await apps.ListAsync(workspaceId);
        return AdminEndpoints.Json(new ListDto<AppDto>(list.Select(ToDto).ToList()), AdminJsonContext.Default.ListDtoAppDto);
    }

    private static async Task<IResult> GetAppAsync(HttpContext context, string clientId, OAuthAppService apps)
    {
        var row = await apps.FindAsync(clientId);
        if (row is null || !Manages(context, row.WorkspaceId))
        {
            return Error(AppNotFound(clientId));
        }
        return AdminEndpoints.Json(ToDto(await apps.DescribeAsync(row)), AdminJsonContext.Default.AppDto);
    }

    private static async Task<IResult> DeleteAppAsync(HttpContext context, string clientId, OAuthAppService apps, GrantService grants)
    {
        var row = await apps.FindAsync(clientId);
        if (row is null || !Manages(context, row.WorkspaceId) || clientId is IdentityServices.CliClientId or Console.ConsoleClient.ClientId)
        {
            return Error(AppNotFound(clientId));
        }
        await apps.DeleteAsync(row, grants);
        return TypedResults.NoContent();
    }

    /// <summary>Something shaped like an e-mail address (local part, @, domain), of a sane length.</summary>
    private static bool IsEmailAddress([System.Diagnostics.CodeAnalysis.NotNullWhen(true)] string? email) =>
        !string.IsNullOrEmpty(email) && email.Length <= 320 && email.IndexOf('@') > 0 && !email.EndsWith('@');

    private static GatewayError AppNotFound(string clientId) => GatewayError.NotFound($"The app '{clientId}' does not exist.");

    private static AppDto ToDto(OAuthAppInfo a) =>
        new(a.ClientId, a.WorkspaceId, a.Name, a.RedirectUris, a.Scopes, a.Confidential, a.DeviceFlow, a.CreatedAt.ToUnixTimeSeconds());

    // ---- grants ----

    private static async Task<IResult> ListGrantsAsync(HttpContext context, string workspaceId, LatticeDbContext db)
    {
        if (!Manages(context, workspaceId) || await db.Workspaces.FindAsync(workspaceId) is null)
        {
            return Error(WorkspaceNotFound(workspaceId));
        }
        var rows = await db.OAuthGrants.AsNoTracking().Where(g => g.WorkspaceId == workspaceId).ToListAsync();
        return AdminEndpoints.Json(new ListDto<GrantDto>(rows.OrderBy(g => g.CreatedAt).Select(ToDto).ToList()), AdminJsonContext.Default.ListDtoGrantDto);
    }

    private static async Task<IResult> RevokeGrantAsync(HttpContext context, string grantId, GrantService grants)
    {
        var grant = await grants.FindAsync(grantId);
        if (grant is null || !Manages(context, grant.WorkspaceId))
        {
            return Error(GatewayError.NotFound($"The grant '{grantId}' does not exist."));
        }
        if (grant.RevokedAt is null)
        {
            await grants.RevokeAsync(grant);
        }
        return AdminEndpoints.Json(ToDto(grant), AdminJsonContext.Default.GrantDto);
    }

    private static GrantDto ToDto(OAuthGrantEntity g) =>
        new(g.Id, g.WorkspaceId, g.UserId, g.ClientId, g.Scopes.Split(' ', StringSplitOptions.RemoveEmptyEntries), g.CreatedAt.ToUnixTimeSeconds(), g.RevokedAt?.ToUnixTimeSeconds());
}
