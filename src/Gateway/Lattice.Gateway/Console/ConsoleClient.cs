using Lattice.Gateway.Hosting;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;
using OpenIddict.Core;
using OpenIddict.EntityFrameworkCore.Models;

namespace Lattice.Gateway.Console;

/// <summary>
/// The web console's OAuth client: public (a page cannot keep a secret), authorization code with PKCE, first party
/// (OpenIddict's implicit consent type, so its owner's own console asks no consent), and the only client that may ask
/// for <see cref="Auth.Scopes.WorkspaceAdmin"/> — which a person gets only in a workspace they own — and
/// <see cref="Auth.Scopes.Admin"/>, which only an owner of the operator workspace signed in to it gets.
/// </summary>
public static class ConsoleClient
{
    public const string ClientId = "lattice-console";

    /// <summary>Where the console is served, and where the authorization server sends the browser back to.</summary>
    public const string BasePath = "/console";
    public const string CallbackPath = BasePath + "/callback";

    /// <summary>What the console asks for: everything its pages call, and nothing that outlives the browser tab (no refresh tokens).</summary>
    public static readonly string[] Scopes =
    [
        Auth.Scopes.UsageRead, Auth.Scopes.PersonalRuntimeManage, Auth.Scopes.Inference, Auth.Scopes.CatalogRead,
        Auth.Scopes.WorkspaceAdmin, Auth.Scopes.Admin, OpenIddictConstants.Scopes.Email, OpenIddictConstants.Scopes.Profile,
    ];

    /// <summary>The console's redirect URI on this gateway.</summary>
    public static string RedirectUri(PublicUrl publicUrl) => publicUrl.Combine(CallbackPath);
}

/// <summary>
/// OpenIddict's application manager, except that the console's redirect URI is the gateway's own public URL whatever it
/// is now: the URL is often derived from the listening port (<c>lattice up --port 0</c>), so no fixed registration
/// could name it. Every other client's redirect URIs are exactly those registered.
/// </summary>
public sealed class ConsoleAwareApplicationManager(
    IOpenIddictApplicationCache<OpenIddictEntityFrameworkCoreApplication> cache,
    ILogger<OpenIddictApplicationManager<OpenIddictEntityFrameworkCoreApplication>> logger,
    IOptionsMonitor<OpenIddictCoreOptions> options,
    IOpenIddictApplicationStore<OpenIddictEntityFrameworkCoreApplication> store,
    PublicUrl publicUrl)
    : OpenIddictApplicationManager<OpenIddictEntityFrameworkCoreApplication>(cache, logger, options, store)
{
    public override async ValueTask<bool> ValidateRedirectUriAsync(OpenIddictEntityFrameworkCoreApplication application, string uri, CancellationToken cancellationToken = default)
    {
        if (application.ClientId == ConsoleClient.ClientId)
        {
            return string.Equals(uri, ConsoleClient.RedirectUri(publicUrl), StringComparison.Ordinal);
        }
        return await base.ValidateRedirectUriAsync(application, uri, cancellationToken);
    }
}
