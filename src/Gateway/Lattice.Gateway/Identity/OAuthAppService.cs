using Lattice.Gateway.Auth;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;
using OpenIddict.Abstractions;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace Lattice.Gateway.Identity;

/// <summary>What an app registration asks for.</summary>
/// <param name="FirstParty">
/// Lattice's own app (the console): no consent screen for a person with one workspace (OpenIddict's implicit consent
/// type), and the authorization endpoint without registered redirect URIs, its one being checked by
/// <see cref="Console.ConsoleAwareApplicationManager"/>. Never set from the admin API.
/// </param>
public sealed record OAuthAppSpec(string Name, IReadOnlyList<string> RedirectUris, IReadOnlyList<string> Scopes, bool Confidential, bool DeviceFlow, bool FirstParty = false);

/// <summary>A registered app as listings show it (never its secret).</summary>
public sealed record OAuthAppInfo(string ClientId, string WorkspaceId, string Name, string[] RedirectUris, string[] Scopes, bool Confidential, bool DeviceFlow, DateTimeOffset CreatedAt);

/// <summary>Registers OAuth apps for a workspace: the OpenIddict application (with PKCE required) plus who owns it.</summary>
public sealed class OAuthAppService(LatticeDbContext db, IOpenIddictApplicationManager applications, TimeProvider time)
{
    /// <summary>Creates the app; returns its client id and, for a confidential app, the secret (shown once, stored hashed).</summary>
    public async Task<(OAuthAppInfo App, string? Secret)> CreateAsync(string workspaceId, OAuthAppSpec spec, string? clientId = null, CancellationToken cancellationToken = default)
    {
        clientId ??= ApiKeySecrets.NewId("app_");
        var secret = spec.Confidential ? ApiKeySecrets.NewSecret("lcs_") : null;
        var descriptor = new OpenIddictApplicationDescriptor
        {
            ClientId = clientId,
            ClientSecret = secret,
            ClientType = spec.Confidential ? ClientTypes.Confidential : ClientTypes.Public,
            ConsentType = spec.FirstParty ? ConsentTypes.Implicit : ConsentTypes.Explicit,
            DisplayName = spec.Name,
        };
        foreach (var uri in spec.RedirectUris)
        {
            descriptor.RedirectUris.Add(new Uri(uri));
        }
        descriptor.Permissions.UnionWith([Permissions.Endpoints.Token, Permissions.Endpoints.Revocation, Permissions.GrantTypes.RefreshToken]);
        if (spec.Confidential)
        {
            descriptor.Permissions.Add(Permissions.Endpoints.Introspection);
        }
        if (spec.RedirectUris.Count > 0 || spec.FirstParty)
        {
            descriptor.Permissions.UnionWith([Permissions.Endpoints.Authorization, Permissions.GrantTypes.AuthorizationCode, Permissions.ResponseTypes.Code]);
            descriptor.Requirements.Add(Requirements.Features.ProofKeyForCodeExchange);
        }
        if (spec.DeviceFlow)
        {
            descriptor.Permissions.UnionWith([Permissions.Endpoints.DeviceAuthorization, Permissions.GrantTypes.DeviceCode]);
        }
        foreach (var scope in spec.Scopes)
        {
            descriptor.Permissions.Add(Permissions.Prefixes.Scope + scope);
        }
        await applications.CreateAsync(descriptor, cancellationToken);

        var row = new OAuthAppEntity { ClientId = clientId, WorkspaceId = workspaceId, Name = spec.Name, CreatedAt = time.GetUtcNow() };
        db.OAuthApps.Add(row);
        await db.SaveChangesAsync(cancellationToken);
        return (await DescribeAsync(row, cancellationToken), secret);
    }

    /// <summary>Adds scope permissions the app lacks; does nothing when it has them all.</summary>
    public async Task AllowScopesAsync(string clientId, IEnumerable<string> scopes, CancellationToken cancellationToken = default)
    {
        if (await applications.FindByClientIdAsync(clientId, cancellationToken) is not { } application)
        {
            return;
        }
        var descriptor = new OpenIddictApplicationDescriptor();
        await applications.PopulateAsync(descriptor, application, cancellationToken);
        var before = descriptor.Permissions.Count;
        descriptor.Permissions.UnionWith(scopes.Select(s => Permissions.Prefixes.Scope + s));
        if (descriptor.Permissions.Count != before)
        {
            await applications.UpdateAsync(application, descriptor, cancellationToken);
        }
    }

    /// <summary>Checks a registration; null when fine, else what is wrong and which field.</summary>
    public static (string Message, string Param)? Validate(OAuthAppSpec spec)
    {
        if (string.IsNullOrWhiteSpace(spec.Name) || spec.Name.Length > 200)
        {
            return ("'name' is required (1 to 200 characters).", "name");
        }
        if (spec.RedirectUris.Count == 0 && !spec.DeviceFlow)
        {
            return ("An app needs at least one redirect URI, or 'device_flow': true.", "redirect_uris");
        }
        foreach (var uri in spec.RedirectUris)
        {
            // RFC 8252: https, http only on loopback, or a private-use scheme in reverse-domain form.
            if (!Uri.TryCreate(uri, UriKind.Absolute, out var parsed) || parsed.Fragment.Length > 0 ||
                !(parsed.Scheme == Uri.UriSchemeHttps || (parsed.Scheme == Uri.UriSchemeHttp && parsed.IsLoopback) || parsed.Scheme.Contains('.')))
            {
                return ($"'{uri}' is not an acceptable redirect URI: use an absolute https URI without a fragment, http only on loopback, or a private-use scheme such as com.example.app:/callback.", "redirect_uris");
            }
        }
        if (spec.Scopes.Count == 0)
        {
            return ("'scopes' must name at least one scope.", "scopes");
        }
        foreach (var scope in spec.Scopes)
        {
            if (Array.IndexOf(IdentityServices.GrantableScopes, scope) < 0 && Array.IndexOf(IdentityServices.StandardScopes, scope) < 0)
            {
                return ($"Unknown scope '{scope}'.", "scopes");
            }
        }
        return null;
    }

    public async Task<List<OAuthAppInfo>> ListAsync(string workspaceId, CancellationToken cancellationToken = default)
    {
        var rows = await db.OAuthApps.AsNoTracking().Where(a => a.WorkspaceId == workspaceId).ToListAsync(cancellationToken);
        var list = new List<OAuthAppInfo>();
        foreach (var row in rows.OrderBy(r => r.CreatedAt))
        {
            list.Add(await DescribeAsync(row, cancellationToken));
        }
        return list;
    }

    public Task<OAuthAppEntity?> FindAsync(string clientId, CancellationToken cancellationToken = default) =>
        db.OAuthApps.AsNoTracking().FirstOrDefaultAsync(a => a.ClientId == clientId, cancellationToken);

    /// <summary>Deletes the app; its grants die with it.</summary>
    public async Task DeleteAsync(OAuthAppEntity row, GrantService grants, CancellationToken cancellationToken = default)
    {
        await grants.RevokeWhereAsync(g => g.ClientId == row.ClientId, cancellationToken);
        if (await applications.FindByClientIdAsync(row.ClientId, cancellationToken) is { } application)
        {
            await applications.DeleteAsync(application, cancellationToken);
        }
        db.OAuthApps.Remove(await db.OAuthApps.FirstAsync(a => a.ClientId == row.ClientId, cancellationToken));
        await db.SaveChangesAsync(cancellationToken);
    }

    public async Task<OAuthAppInfo> DescribeAsync(OAuthAppEntity row, CancellationToken cancellationToken = default)
    {
        var application = await applications.FindByClientIdAsync(row.ClientId, cancellationToken);
        if (application is null)
        {
            return new OAuthAppInfo(row.ClientId, row.WorkspaceId, row.Name, [], [], false, false, row.CreatedAt);
        }
        var permissions = await applications.GetPermissionsAsync(application, cancellationToken);
        var redirects = await applications.GetRedirectUrisAsync(application, cancellationToken);
        var type = await applications.GetClientTypeAsync(application, cancellationToken);
        return new OAuthAppInfo(
            row.ClientId, row.WorkspaceId, row.Name, [.. redirects],
            [.. permissions.Where(p => p.StartsWith(Permissions.Prefixes.Scope, StringComparison.Ordinal)).Select(p => p[Permissions.Prefixes.Scope.Length..])],
            type == ClientTypes.Confidential,
            permissions.Contains(Permissions.GrantTypes.DeviceCode),
            row.CreatedAt);
    }
}
