using Lattice.Gateway.Hosting;
using Lattice.Gateway.Persistence;
using Microsoft.AspNetCore;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.AspNetCore.DataProtection.Repositories;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;
using OpenIddict.Server;
using OpenIddict.Server.AspNetCore;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace Lattice.Gateway.Identity;

/// <summary>Registers users, the OAuth 2.1 authorization server (OpenIddict), sessions and access-token checking.</summary>
public static class IdentityServices
{
    /// <summary>The public client the <c>lattice</c> CLI signs in with (device authorization grant).</summary>
    public const string CliClientId = "lattice-cli";

    public static readonly string[] GrantableScopes =
    [
        Auth.Scopes.Inference, Auth.Scopes.WorkspaceOnly, Auth.Scopes.Marketplace, Auth.Scopes.CatalogRead,
        Auth.Scopes.PersonalRuntimeManage, Auth.Scopes.UsageRead, Auth.Scopes.Streaming,
    ];

    public static readonly string[] StandardScopes = [OpenIddictConstants.Scopes.OpenId, OpenIddictConstants.Scopes.Profile, OpenIddictConstants.Scopes.Email, OpenIddictConstants.Scopes.OfflineAccess];

    /// <summary>Where the data-protection key ring is kept (files mode 0600, like the OAuth keys).</summary>
    public static string DataProtectionDirectory(string dataDirectory) => Path.Combine(dataDirectory, "data-protection");

    public static IServiceCollection AddIdentityServer(this IServiceCollection services)
    {
        services.AddSingleton(sp => new SigningKeys(sp.GetRequiredService<IOptions<GatewayOptions>>().Value.DataDirectory));
        services.AddSingleton<RevocationSet>();
        services.AddSingleton<SignInLinks>();
        services.AddSingleton<AccessTokenValidator>();
        services.AddSingleton<OAuthPruner>();
        services.AddHostedService(sp => sp.GetRequiredService<OAuthPruner>());
        services.AddScoped<GrantService>();
        services.AddScoped<UserService>();
        services.AddScoped<OAuthAppService>();
        services.AddSingleton(sp => new DeviceAuthorizationLimiter(sp.GetRequiredService<IOptions<GatewayOptions>>(), sp.GetRequiredService<TimeProvider>()));
        // The session and antiforgery cookies are protected with ASP.NET Core's data-protection keys. They live with the
        // rest of the gateway's state, so sign-ins survive restarts and every node on the same data directory accepts them.
        services.AddDataProtection().SetApplicationName("lattice");
        services.AddOptions<KeyManagementOptions>().Configure<IOptions<GatewayOptions>, ILoggerFactory>((o, gateway, loggers) =>
            o.XmlRepository = new FileSystemXmlRepository(new DirectoryInfo(DataProtectionDirectory(gateway.Value.DataDirectory)), loggers));
        services.AddAntiforgery(o =>
        {
            o.Cookie.Name = "lattice_af";
            o.FormFieldName = "__af";
        });
        // Behind a proxy that terminates TLS the gateway sees plain HTTP, so "secure when the request was" is not enough:
        // the public URL says whether browsers reach it over https.
        services.AddOptions<AntiforgeryOptions>().Configure<IOptions<GatewayOptions>>((o, gateway) =>
        {
            if (gateway.Value.IsPublicHttps)
            {
                o.Cookie.SecurePolicy = CookieSecurePolicy.Always;
            }
        });
        services.AddOptions<CookieAuthenticationOptions>(IdentityEndpoints.CookieScheme).Configure<IOptions<GatewayOptions>>((o, gateway) =>
        {
            if (gateway.Value.IsPublicHttps)
            {
                o.Cookie.SecurePolicy = CookieSecurePolicy.Always;
            }
        });

        services.AddAuthentication()
            .AddCookie(IdentityEndpoints.CookieScheme, o =>
            {
                o.Cookie.Name = IdentityEndpoints.SessionCookie;
                o.Cookie.HttpOnly = true;
                o.Cookie.SameSite = SameSiteMode.Lax;
                o.LoginPath = IdentityEndpoints.LoginPath;
                o.ExpireTimeSpan = TimeSpan.FromHours(12);
                o.SlidingExpiration = true;
            });

        services.AddOpenIddict()
            .AddCore(o =>
            {
                o.UseEntityFrameworkCore().UseDbContext<LatticeDbContext>();
                o.ReplaceApplicationManager<OpenIddict.EntityFrameworkCore.Models.OpenIddictEntityFrameworkCoreApplication, Console.ConsoleAwareApplicationManager>();
            })
            .AddServer(o =>
            {
                o.SetAuthorizationEndpointUris("connect/authorize")
                    .SetTokenEndpointUris("connect/token")
                    .SetDeviceAuthorizationEndpointUris("connect/device")
                    .SetEndUserVerificationEndpointUris("connect/verify")
                    .SetRevocationEndpointUris("connect/revoke")
                    .SetIntrospectionEndpointUris("connect/introspect")
                    .SetJsonWebKeySetEndpointUris(".well-known/jwks")
                    .SetConfigurationEndpointUris(".well-known/openid-configuration");

                o.AllowAuthorizationCodeFlow().RequireProofKeyForCodeExchange()
                    .AllowRefreshTokenFlow()
                    .AllowDeviceAuthorizationFlow();

                // Workspace admin is registered, but only the console's client is permitted to ask for it (see Console/ConsoleClient).
                o.RegisterScopes([.. StandardScopes, .. GrantableScopes, Auth.Scopes.WorkspaceAdmin, Auth.Scopes.Admin]);
                o.RegisterAudiences(AccessTokenValidator.Audience);

                // Access tokens are plain signed JWTs (eyJ…) that the gateway checks without the database.
                o.DisableAccessTokenEncryption();
                // A refresh token works once; presenting a spent one revokes the whole chain.
                o.SetRefreshTokenReuseLeeway(TimeSpan.Zero);
                o.SetUserCodeLifetime(TimeSpan.FromMinutes(10));

                o.Configure(options =>
                {
                    // Only S256 code challenges.
                    options.CodeChallengeMethods.Remove(CodeChallengeMethods.Plain);
                });

                // Every URL OpenIddict writes (issuer, discovery endpoints, verification_uri) starts from the public URL,
                // never from the Host header the caller sent.
                o.AddEventHandler<ProcessRequestContext>(h => h.UseSingletonHandler<UsePublicUrl>()
                    .SetOrder(OpenIddictServerAspNetCoreHandlers.ResolveRequestUri.Descriptor.Order + 1)
                    .SetType(OpenIddictServerHandlerType.Custom));
                DeviceAuthorizationLimiter.Register(o);

                // Runs just before OpenIddict's own check of the token's entry, which refuses a spent refresh token and
                // revokes the chain in the database — not the access tokens (JWTs) the gateway checks in memory.
                o.AddEventHandler<ValidateTokenContext>(h => h.UseScopedHandler<RevokeGrantOnRefreshTokenReuse>()
                    .SetOrder(OpenIddictServerHandlers.Protection.ValidateTokenEntry.Descriptor.Order - 1)
                    .SetType(OpenIddictServerHandlerType.Custom));

                o.AddEventHandler<HandleRevocationRequestContext>(h => h.UseScopedHandler<LogRevocation>()
                    .SetOrder(OpenIddictServerHandlers.Revocation.RevokeToken.Descriptor.Order + 500)
                    .SetType(OpenIddictServerHandlerType.Custom));

                o.UseAspNetCore()
                    .EnableAuthorizationEndpointPassthrough()
                    .EnableTokenEndpointPassthrough()
                    .EnableEndUserVerificationEndpointPassthrough()
                    // The gateway listens on plain HTTP on loopback; TLS terminates in front of it in production.
                    .DisableTransportSecurityRequirement();
            });

        services.AddOptions<OpenIddictServerOptions>().Configure<IOptions<GatewayOptions>, SigningKeys>((options, gateway, keys) =>
        {
            options.AccessTokenLifetime = gateway.Value.AccessTokenLifetime;
            // Configured: the issuer is fixed. Unset: UsePublicUrl gives each request the server's own address.
            options.Issuer = gateway.Value.ParsePublicUrl();
            options.SigningCredentials.Add(new Microsoft.IdentityModel.Tokens.SigningCredentials(keys.Signing, Microsoft.IdentityModel.Tokens.SecurityAlgorithms.RsaSha256));
            options.EncryptionCredentials.Add(new Microsoft.IdentityModel.Tokens.EncryptingCredentials(keys.Encryption,
                Microsoft.IdentityModel.Tokens.SecurityAlgorithms.RsaOAEP, Microsoft.IdentityModel.Tokens.SecurityAlgorithms.Aes256CbcHmacSha512));
        });
        return services;
    }

    /// <summary>
    /// Replaces the base and request URIs OpenIddict took from the request (scheme, <c>Host</c> header, path base) with
    /// the gateway's public URL, before it matches endpoints: the issuer it signs into tokens and checks, the discovery
    /// document's endpoints and the device flow's <c>verification_uri</c> are then the public URL's whatever
    /// <c>Host</c> a caller sends.
    /// </summary>
    private sealed class UsePublicUrl(PublicUrl publicUrl) : IOpenIddictServerHandler<ProcessRequestContext>
    {
        public ValueTask HandleAsync(ProcessRequestContext context)
        {
            if (context.Transaction.GetHttpRequest() is { } request)
            {
                var baseUri = publicUrl.Value;
                context.BaseUri = baseUri;
                context.RequestUri = new Uri(baseUri, request.Path.ToUriComponent().TrimStart('/') + request.QueryString.ToUriComponent());
            }
            return default;
        }
    }

    /// <summary>
    /// A refresh token presented again after it was spent means two parties hold it: the grant is revoked (the database
    /// record, OpenIddict's authorization and tokens, and the revocation log), so every access token minted from it is
    /// refused at once on this node and within a second on every other. OpenIddict then refuses the request itself.
    /// </summary>
    private sealed class RevokeGrantOnRefreshTokenReuse(IOpenIddictTokenManager tokens, GrantService grants, TimeProvider time) : IOpenIddictServerHandler<ValidateTokenContext>
    {
        public async ValueTask HandleAsync(ValidateTokenContext context)
        {
            if (context.IsRejected || context.TokenId is not { Length: > 0 } tokenId || context.AuthorizationId is not { Length: > 0 } grantId ||
                context.Principal is null || !context.Principal.HasTokenType(TokenTypeIdentifiers.RefreshToken))
            {
                return;
            }
            if (await tokens.FindByIdAsync(tokenId) is not { } token || !await tokens.HasStatusAsync(token, Statuses.Redeemed))
            {
                return;
            }
            // Within the reuse leeway OpenIddict accepts it again (the same test as its own); the gateway sets none.
            if (context.Options.RefreshTokenReuseLeeway is { } leeway &&
                (await tokens.GetRedemptionDateAsync(token) is not { } redeemed || time.GetUtcNow() < redeemed + leeway))
            {
                return;
            }
            if (await grants.FindAsync(grantId) is { } grant)
            {
                if (grant.RevokedAt is null)
                {
                    await grants.RevokeAsync(grant);
                }
            }
            else
            {
                await grants.LogAsync(RevocationSet.GrantKind, grantId);
            }
        }
    }

    /// <summary>
    /// After OpenIddict revoked a token at <c>/connect/revoke</c> (RFC 7009): a revoked refresh token takes its whole
    /// grant with it; a revoked access token stops working at once on every node.
    /// </summary>
    private sealed class LogRevocation(GrantService grants) : IOpenIddictServerHandler<HandleRevocationRequestContext>
    {
        public async ValueTask HandleAsync(HandleRevocationRequestContext context)
        {
            if (context.IsRejected || context.GenericTokenPrincipal is null)
            {
                return;
            }
            if (context.GenericTokenPrincipal.HasTokenType(TokenTypeIdentifiers.RefreshToken) && context.GenericTokenPrincipal.GetAuthorizationId() is { } grantId)
            {
                var grant = await grants.FindAsync(grantId);
                if (grant is not null)
                {
                    await grants.RevokeAsync(grant);
                }
                else
                {
                    await grants.LogAsync(RevocationSet.GrantKind, grantId);
                }
            }
            else if (context.GenericTokenPrincipal.GetTokenId() is { } tokenId)
            {
                await grants.LogAsync(RevocationSet.TokenKind, tokenId);
            }
        }
    }
}
