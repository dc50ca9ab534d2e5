using System.Collections.Immutable;
using System.Security.Claims;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Persistence;
using Microsoft.AspNetCore;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.EntityFrameworkCore;
using Microsoft.IdentityModel.Tokens;
using OpenIddict.Abstractions;
using OpenIddict.Server.AspNetCore;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace Lattice.Gateway.Identity;

/// <summary>
/// The parts of Sign in with Lattice that need a person or our own rules: sign-in, consent (authorization
/// endpoint), device code verification, and the token endpoint's final say. OpenIddict does the protocol.
/// </summary>
public static class IdentityEndpoints
{
    public const string CookieScheme = CookieAuthenticationDefaults.AuthenticationScheme;
    public const string LoginPath = "/account/login";
    public const string SessionCookie = "lattice_session";

    /// <summary>
    /// The grant (authorization) id, kept in codes and refresh tokens only. OpenIddict ties a device code to the
    /// ad-hoc authorization it creates at <c>/connect/device</c> and restores that id at the token endpoint, so the
    /// grant the person made at <c>/connect/verify</c> travels in a claim of its own.
    /// </summary>
    private const string GrantClaim = "lattice_grant";

    public static IEndpointRouteBuilder MapIdentity(this IEndpointRouteBuilder routes)
    {
        routes.MapGet(LoginPath, (HttpContext context, string? returnUrl) => Pages.SignIn(context, SafeReturnUrl(returnUrl), null, null));
        routes.MapPost(LoginPath, SignInAsync);
        routes.MapPost("/account/logout", SignOutAsync);
        routes.MapMethods("/connect/authorize", [HttpMethods.Get, HttpMethods.Post], AuthorizeAsync);
        routes.MapPost("/connect/token", ExchangeAsync);
        routes.MapMethods("/connect/verify", [HttpMethods.Get, HttpMethods.Post], VerifyAsync);
        return routes;
    }

    // ---- sign in ----

    private static async Task<IResult> SignInAsync(HttpContext context, UserService users, IFailedAuthLimiter limiter, IAntiforgery antiforgery)
    {
        if (!await antiforgery.IsRequestValidAsync(context))
        {
            return Pages.Message("Sign in to Lattice", "The form expired. Go back and try again.", StatusCodes.Status400BadRequest);
        }
        var form = await context.Request.ReadFormAsync();
        var returnUrl = SafeReturnUrl(form["returnUrl"]);
        var email = form["email"].ToString();
        // Guessing one account's password is slow from any number of addresses; a right password from an address
        // others failed from still works.
        var account = email.Trim();
        UserEntity? user;
        try
        {
            if (await limiter.AccountBackoffAsync(account) is { Ticks: > 0 } wait)
            {
                var seconds = (long)Math.Ceiling(wait.TotalSeconds);
                return Pages.SignIn(context, returnUrl, email,
                    $"Too many failed attempts for this account. Try again in {seconds} second{(seconds == 1 ? "" : "s")}.", StatusCodes.Status429TooManyRequests);
            }
            user = await users.VerifyAsync(email, form["password"].ToString());
            if (user is null)
            {
                await limiter.RecordAccountFailureAsync(account);
                return await limiter.RecordFailureAsync(context)
                    ? Pages.SignIn(context, returnUrl, email, "That e-mail and password don't match.", StatusCodes.Status401Unauthorized)
                    : Pages.SignIn(context, returnUrl, email, "Too many failed attempts. Try again in a minute.", StatusCodes.Status429TooManyRequests);
            }
            await limiter.RecordAccountSuccessAsync(account);
        }
        catch (SharedCountersUnavailableException)
        {
            // Fail closed: attempts that cannot be counted are not checked at all.
            return Pages.SignIn(context, returnUrl, email, "Signing in is unavailable for a moment. Try again shortly.", StatusCodes.Status503ServiceUnavailable);
        }
        await StartSessionAsync(context, user);
        return Results.Redirect(returnUrl);
    }

    /// <summary>Signs the person in: the session cookie.</summary>
    internal static Task StartSessionAsync(HttpContext context, UserEntity user)
    {
        var identity = new ClaimsIdentity(CookieScheme, Claims.Name, Claims.Role);
        identity.AddClaim(new Claim(Claims.Subject, user.Id));
        identity.AddClaim(new Claim(Claims.Email, user.Email));
        identity.AddClaim(new Claim(Claims.Name, user.DisplayName));
        return context.SignInAsync(CookieScheme, new ClaimsPrincipal(identity));
    }

    /// <summary>The signed-in person, or null.</summary>
    internal static async Task<UserEntity?> SessionUserAsync(HttpContext context, UserService users)
    {
        var session = await context.AuthenticateAsync(CookieScheme);
        var userId = session.Succeeded ? session.Principal!.FindFirst(Claims.Subject)?.Value : null;
        return userId is null ? null : await users.FindAsync(userId);
    }

    private static async Task<IResult> SignOutAsync(HttpContext context, IAntiforgery antiforgery)
    {
        if (!await antiforgery.IsRequestValidAsync(context))
        {
            return Results.BadRequest();
        }
        await context.SignOutAsync(CookieScheme);
        return Pages.Message("Signed out", "You are signed out of Lattice.");
    }

    /// <summary>Where the sign-in page sends people when the return URL they brought is refused.</summary>
    public const string DefaultReturnUrl = LoginPath;

    /// <summary>
    /// The return URL when it is a plain local path (<c>/connect/authorize?…</c>), else <see cref="DefaultReturnUrl"/>: the
    /// sign-in page must not send people off-site. Refused are a second '/' or a '\' at the start (browsers read
    /// <c>//evil.example</c> and <c>/\evil.example</c> as another host), a '\' anywhere (read as '/'), and control
    /// characters, whitespace and non-ASCII anywhere: browsers drop tab, CR and LF from URLs, so <c>/\t/evil.example</c>
    /// arrives as <c>//evil.example</c>. A local path needs none of these; its own query is percent-encoded.
    /// </summary>
    public static string SafeReturnUrl(string? returnUrl)
    {
        if (string.IsNullOrEmpty(returnUrl) || returnUrl.Length > 4096 || returnUrl[0] != '/' || (returnUrl.Length > 1 && returnUrl[1] is '/' or '\\'))
        {
            return DefaultReturnUrl;
        }
        foreach (var c in returnUrl)
        {
            if (c is <= ' ' or >= '\u007f' or '\\')
            {
                return DefaultReturnUrl;
            }
        }
        return returnUrl;
    }

    private static string CurrentUrl(HttpContext context, IEnumerable<KeyValuePair<string, Microsoft.Extensions.Primitives.StringValues>> parameters) =>
        context.Request.PathBase + context.Request.Path + QueryString.Create(parameters);

    private static async Task<(UserEntity? User, IResult? Challenge)> RequireUserAsync(HttpContext context, UserService users, string returnUrl)
    {
        var user = await SessionUserAsync(context, users);
        if (user is null)
        {
            if (context.Request.Cookies.ContainsKey(SessionCookie))
            {
                // A session for a user who no longer exists.
                await context.SignOutAsync(CookieScheme);
            }
            return (null, Results.Redirect(LoginPath + QueryString.Create("returnUrl", returnUrl)));
        }
        return (user, null);
    }

    // ---- authorization code flow ----

    private static async Task<IResult> AuthorizeAsync(
        HttpContext context, UserService users, IOpenIddictApplicationManager applications,
        IOpenIddictAuthorizationManager authorizations, LatticeDbContext db, GrantService grants, IAntiforgery antiforgery)
    {
        var request = context.GetOpenIddictServerRequest() ?? throw new InvalidOperationException("Not an OpenID Connect request.");
        var parameters = context.Request.HasFormContentType
            ? (await context.Request.ReadFormAsync()).Where(p => !p.Key.StartsWith("__") && p.Key is not ("decision" or "granted_scope" or "workspace")).ToList()
            : context.Request.Query.ToList();

        var (user, challenge) = await RequireUserAsync(context, users, CurrentUrl(context, parameters));
        if (user is null)
        {
            if (request.HasPromptValue(PromptValues.None))
            {
                return Forbid(Errors.LoginRequired, "The user is not signed in.");
            }
            return challenge!;
        }

        var application = await applications.FindByClientIdAsync(request.ClientId!) ?? throw new InvalidOperationException("Unknown client.");
        var applicationId = (await applications.GetIdAsync(application))!;
        var appName = await applications.GetDisplayNameAsync(application) ?? request.ClientId!;
        var requested = request.GetScopes();
        var workspaces = await users.WorkspacesOfAsync(user.Id);
        if (workspaces.Count == 0)
        {
            return Pages.Message("No workspace", "Your account belongs to no workspace, so there is nothing to grant.", StatusCodes.Status403Forbidden);
        }

        var decision = context.Request.HasFormContentType ? context.Request.Form["decision"].ToString() : "";
        if (decision.Length == 0)
        {
            // A grant already covering every requested scope is reused unless the app asks to prompt again.
            if (!request.HasPromptValue(PromptValues.Consent))
            {
                if (await FindGrantAsync(authorizations, db, user.Id, applicationId, requested, workspaces.Select(w => w.Id)) is { } reused)
                {
                    return SignIn(Identity(user, reused.WorkspaceId, requested, reused.Id));
                }
                // A first-party app (the console) asks no consent of someone with one workspace: it gets what the person
                // may do there — workspace admin only in a workspace they own.
                if (workspaces.Count == 1 && await applications.HasConsentTypeAsync(application, ConsentTypes.Implicit))
                {
                    var only = workspaces[0].Id;
                    var scopes = await AllowedAsync(users, user.Id, only, requested);
                    var firstPartyGrant = (await FindGrantAsync(authorizations, db, user.Id, applicationId, scopes, [only]))?.Id
                        ?? await CreateGrantAsync(authorizations, grants, user, applicationId, request.ClientId!, only, scopes);
                    return SignIn(Identity(user, only, scopes, firstPartyGrant));
                }
            }
            if (request.HasPromptValue(PromptValues.None))
            {
                return Forbid(Errors.ConsentRequired, "The user has not granted these scopes to this app.");
            }
            return Pages.Consent(context, "/connect/authorize", appName, user.Email, requested,
                workspaces.Select(w => (w.Id, w.Name)).ToList(),
                parameters.SelectMany(p => p.Value.Select(v => new KeyValuePair<string, string>(p.Key, v ?? ""))));
        }

        if (!await antiforgery.IsRequestValidAsync(context))
        {
            return Pages.Message("Authorize " + appName, "The form expired. Go back to the app and try again.", StatusCodes.Status400BadRequest);
        }
        if (decision != "accept")
        {
            return Forbid(Errors.AccessDenied, "The user denied the request.");
        }
        var (workspaceId, granted, error) = ReadDecision(context.Request.Form, requested, workspaces);
        if (error is not null)
        {
            return Pages.Message("Authorize " + appName, error, StatusCodes.Status400BadRequest);
        }
        granted = await AllowedAsync(users, user.Id, workspaceId!, granted);
        var grantId = await CreateGrantAsync(authorizations, grants, user, applicationId, request.ClientId!, workspaceId!, granted);
        return SignIn(Identity(user, workspaceId!, granted, grantId));
    }

    /// <summary>A live grant of the user to the app covering <paramref name="scopes"/>, in one of <paramref name="workspaceIds"/>.</summary>
    private static async Task<(string Id, string WorkspaceId)?> FindGrantAsync(IOpenIddictAuthorizationManager authorizations, LatticeDbContext db,
        string userId, string applicationId, ImmutableArray<string> scopes, IEnumerable<string> workspaceIds)
    {
        var allowed = workspaceIds.ToHashSet(StringComparer.Ordinal);
        await foreach (var existing in authorizations.FindAsync(userId, applicationId, Statuses.Valid, AuthorizationTypes.Permanent, scopes))
        {
            var id = await authorizations.GetIdAsync(existing);
            var grant = await db.OAuthGrants.AsNoTracking().FirstOrDefaultAsync(g => g.Id == id && g.RevokedAt == null);
            if (grant is not null && allowed.Contains(grant.WorkspaceId))
            {
                return (id!, grant.WorkspaceId);
            }
        }
        return null;
    }

    /// <summary>
    /// <paramref name="scopes"/> less what the person may not do in the workspace: managing it
    /// (<see cref="Auth.Scopes.WorkspaceAdmin"/>) is for its owners only, and operating the gateway
    /// (<see cref="Auth.Scopes.Admin"/>, which only the console may ask for) for owners of the operator workspace signed
    /// in to it — whatever the app asked for.
    /// </summary>
    private static async Task<ImmutableArray<string>> AllowedAsync(UserService users, string userId, string workspaceId, ImmutableArray<string> scopes) =>
        scopes.Contains(Auth.Scopes.WorkspaceAdmin) || scopes.Contains(Auth.Scopes.Admin)
            ? Allowed(scopes, workspaceId, await users.RoleAsync(workspaceId, userId))
            : scopes;

    /// <summary>What a person of <paramref name="role"/> in <paramref name="workspaceId"/> may hold of <paramref name="scopes"/>.</summary>
    private static ImmutableArray<string> Allowed(ImmutableArray<string> scopes, string workspaceId, string? role)
    {
        if (role != UserService.OwnerRole)
        {
            return scopes.Remove(Auth.Scopes.WorkspaceAdmin).Remove(Auth.Scopes.Admin);
        }
        return workspaceId == DatabaseInitializer.OperatorWorkspaceId ? scopes : scopes.Remove(Auth.Scopes.Admin);
    }

    /// <summary>What the user chose: the workspace (one of theirs) and the scopes (a subset of those requested).</summary>
    private static (string? WorkspaceId, ImmutableArray<string> Granted, string? Error) ReadDecision(
        IFormCollection form, ImmutableArray<string> requested, List<WorkspaceEntity> workspaces)
    {
        var workspaceId = form["workspace"].ToString();
        if (workspaces.All(w => w.Id != workspaceId))
        {
            return (null, [], "Choose one of your workspaces.");
        }
        var chosen = form["granted_scope"].Where(s => s is not null).ToHashSet(StringComparer.Ordinal);
        var granted = requested.Where(chosen.Contains).ToImmutableArray();
        return (workspaceId, granted, null);
    }

    private static async Task<string> CreateGrantAsync(
        IOpenIddictAuthorizationManager authorizations, GrantService grants, UserEntity user, string applicationId,
        string clientId, string workspaceId, ImmutableArray<string> granted)
    {
        var identity = Identity(user, workspaceId, granted, null);
        var authorization = await authorizations.CreateAsync(new ClaimsPrincipal(identity), user.Id, applicationId, AuthorizationTypes.Permanent, granted);
        var id = (await authorizations.GetIdAsync(authorization))!;
        await grants.RecordAsync(id, workspaceId, user.Id, clientId, granted);
        return id;
    }

    /// <summary>Turns the authorization a device request was bound to into the user's permanent grant of <paramref name="granted"/>.</summary>
    private static async Task<string> AdoptGrantAsync(
        IOpenIddictAuthorizationManager authorizations, GrantService grants, object authorization, UserEntity user,
        string clientId, string workspaceId, ImmutableArray<string> granted)
    {
        var descriptor = new OpenIddictAuthorizationDescriptor();
        await authorizations.PopulateAsync(descriptor, authorization);
        descriptor.Subject = user.Id;
        descriptor.Type = AuthorizationTypes.Permanent;
        descriptor.Scopes.Clear();
        descriptor.Scopes.UnionWith(granted);
        await authorizations.UpdateAsync(authorization, descriptor);
        var id = (await authorizations.GetIdAsync(authorization))!;
        await grants.RecordAsync(id, workspaceId, user.Id, clientId, granted);
        return id;
    }

    private static ClaimsIdentity Identity(UserEntity user, string workspaceId, ImmutableArray<string> scopes, string? authorizationId)
    {
        var identity = new ClaimsIdentity(TokenValidationParameters.DefaultAuthenticationType, Claims.Name, Claims.Role);
        identity.SetClaim(Claims.Subject, user.Id)
            .SetClaim(Claims.Email, user.Email)
            .SetClaim(Claims.EmailVerified, user.EmailVerified)
            .SetClaim(Claims.Name, user.DisplayName)
            .SetClaim(AccessTokenValidator.WorkspaceClaim, workspaceId);
        identity.SetScopes(scopes);
        identity.SetAudiences(AccessTokenValidator.Audience);
        if (authorizationId is not null)
        {
            identity.SetAuthorizationId(authorizationId);
            identity.SetClaim(GrantClaim, authorizationId);
        }
        identity.SetDestinations(Destinations);
        return identity;
    }

    private static IEnumerable<string> Destinations(Claim claim) => claim.Type switch
    {
        Claims.Name when claim.Subject!.HasScope(OpenIddictConstants.Scopes.Profile) => [OpenIddictConstants.Destinations.AccessToken, OpenIddictConstants.Destinations.IdentityToken],
        Claims.Email or Claims.EmailVerified when claim.Subject!.HasScope(OpenIddictConstants.Scopes.Email) => [OpenIddictConstants.Destinations.AccessToken, OpenIddictConstants.Destinations.IdentityToken],
        Claims.Name or Claims.Email or Claims.EmailVerified or GrantClaim => [],
        Claims.Subject => [OpenIddictConstants.Destinations.AccessToken, OpenIddictConstants.Destinations.IdentityToken],
        _ => [OpenIddictConstants.Destinations.AccessToken],
    };

    private static IResult SignIn(ClaimsIdentity identity, AuthenticationProperties? properties = null) =>
        Results.SignIn(new ClaimsPrincipal(identity), properties, OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);

    private static IResult Forbid(string error, string description, string? redirectUri = null) =>
        Results.Forbid(new AuthenticationProperties(new Dictionary<string, string?>
        {
            [OpenIddictServerAspNetCoreConstants.Properties.Error] = error,
            [OpenIddictServerAspNetCoreConstants.Properties.ErrorDescription] = description,
        }) { RedirectUri = redirectUri }, [OpenIddictServerAspNetCoreDefaults.AuthenticationScheme]);

    // ---- token endpoint ----

    private static async Task<IResult> ExchangeAsync(HttpContext context, UserService users, LatticeDbContext db)
    {
        var request = context.GetOpenIddictServerRequest() ?? throw new InvalidOperationException("Not an OpenID Connect request.");
        if (!request.IsAuthorizationCodeGrantType() && !request.IsRefreshTokenGrantType() && !request.IsDeviceCodeGrantType())
        {
            return Forbid(Errors.UnsupportedGrantType, "This grant type is not supported.");
        }
        var result = await context.AuthenticateAsync(OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
        var principal = result.Principal;
        var userId = principal?.GetClaim(Claims.Subject);
        var workspaceId = principal?.GetClaim(AccessTokenValidator.WorkspaceClaim);
        var grantId = principal?.GetClaim(GrantClaim) ?? principal?.GetAuthorizationId();
        if (principal is null || userId is null || workspaceId is null || grantId is null)
        {
            return Forbid(Errors.InvalidGrant, "The grant is not valid.");
        }
        var user = await users.FindAsync(userId);
        var role = user is null ? null : await users.RoleAsync(workspaceId, userId);
        if (user is null || role is null)
        {
            return Forbid(Errors.InvalidGrant, "The user is no longer a member of the workspace this grant was made in.");
        }
        if (!await db.OAuthGrants.AnyAsync(g => g.Id == grantId && g.RevokedAt == null))
        {
            return Forbid(Errors.InvalidGrant, "The grant has been revoked.");
        }
        // An owner who has since become a member no longer manages the workspace (nor operates the gateway), whatever
        // the grant says.
        var scopes = Allowed(principal.GetScopes(), workspaceId, role);
        var identity = Identity(user, workspaceId, scopes, grantId);
        return SignIn(identity);
    }

    // ---- device authorization: the page where a person enters the code ----

    private static async Task<IResult> VerifyAsync(
        HttpContext context, UserService users, IOpenIddictApplicationManager applications,
        IOpenIddictAuthorizationManager authorizations, GrantService grants, IAntiforgery antiforgery)
    {
        var isPost = HttpMethods.IsPost(context.Request.Method);
        var parameters = isPost
            ? (await context.Request.ReadFormAsync()).Where(p => p.Key == "user_code").ToList()
            : context.Request.Query.Where(p => p.Key == "user_code").ToList();
        var (user, challenge) = await RequireUserAsync(context, users, CurrentUrl(context, parameters));
        if (user is null)
        {
            return challenge!;
        }

        var result = await context.AuthenticateAsync(OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
        var userCode = result.Properties?.GetTokenValue(OpenIddictServerAspNetCoreConstants.Tokens.UserCode);
        var clientId = result.Succeeded ? result.Principal!.GetClaim(Claims.ClientId) : null;
        if (clientId is null)
        {
            return Pages.EnterUserCode(context, string.IsNullOrEmpty(userCode) && parameters.Count == 0 ? null : "That code is not valid or has expired. Check it and try again.");
        }
        var application = await applications.FindByClientIdAsync(clientId) ?? throw new InvalidOperationException("Unknown client.");
        var appName = await applications.GetDisplayNameAsync(application) ?? clientId;
        var requested = result.Principal!.GetScopes();
        var workspaces = await users.WorkspacesOfAsync(user.Id);
        if (workspaces.Count == 0)
        {
            return Pages.Message("No workspace", "Your account belongs to no workspace, so there is nothing to grant.", StatusCodes.Status403Forbidden);
        }

        var decision = isPost ? context.Request.Form["decision"].ToString() : "";
        if (decision.Length == 0)
        {
            return Pages.Consent(context, "/connect/verify", appName, user.Email, requested,
                workspaces.Select(w => (w.Id, w.Name)).ToList(), [new("user_code", userCode ?? "")]);
        }
        if (!await antiforgery.IsRequestValidAsync(context))
        {
            return Pages.Message("Connect a device", "The form expired. Enter the code again.", StatusCodes.Status400BadRequest);
        }
        if (decision != "accept")
        {
            return Forbid(Errors.AccessDenied, "The user denied the request.", "/connect/verify/done?result=denied");
        }
        var (workspaceId, granted, error) = ReadDecision(context.Request.Form, requested, workspaces);
        if (error is not null)
        {
            return Pages.Message("Connect a device", error, StatusCodes.Status400BadRequest);
        }
        // OpenIddict bound the device code to an ad-hoc authorization when the device asked, and the device code keeps
        // that binding whatever this sign-in says (its token entry is what the token endpoint reads): that
        // authorization becomes the grant, or the device would find its grant unknown when it polls.
        var grantId = result.Principal!.GetAuthorizationId() is { } boundId && await authorizations.FindByIdAsync(boundId) is { } bound
            ? await AdoptGrantAsync(authorizations, grants, bound, user, clientId, workspaceId!, granted)
            : await CreateGrantAsync(authorizations, grants, user, (await applications.GetIdAsync(application))!, clientId, workspaceId!, granted);
        return SignIn(Identity(user, workspaceId!, granted, grantId), new AuthenticationProperties { RedirectUri = "/connect/verify/done?result=allowed" });
    }

    public static IEndpointRouteBuilder MapDeviceDone(this IEndpointRouteBuilder routes)
    {
        routes.MapGet("/connect/verify/done", (string? result) => result == "allowed"
            ? Pages.Message("Device connected", "You can close this window and go back to your device.")
            : Pages.Message("Request denied", "The device was not given access."));
        return routes;
    }
}
