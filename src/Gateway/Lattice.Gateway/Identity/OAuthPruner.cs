using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using OpenIddict.Abstractions;
using OpenIddict.EntityFrameworkCore.Models;
using OpenIddict.Server;

namespace Lattice.Gateway.Identity;

/// <summary>What one pruning pass deleted.</summary>
public readonly record struct PruneResult(long Tokens, long Authorizations, int Grants, int DeviceCodes = 0);

/// <summary>
/// Keeps the OAuth tables from growing without end. Once an hour it deletes what can no longer be used: tokens that
/// expired, were redeemed or revoked, or whose grant was revoked; revoked grants; and authorization codes and device
/// codes that were never redeemed. Only entries created longer ago than a refresh token lives are deleted, so a spent
/// refresh token is remembered for as long as it could have been valid, and presenting it again still revokes its chain.
/// Grants in force are never deleted. Device codes and user codes are the exception to the age rule: they are deleted as
/// soon as they have expired (a device code is never presented again once expired, and a table of live-looking user
/// codes is what someone guessing one would want), so a flood of device requests is gone within an hour.
/// </summary>
public sealed class OAuthPruner(IServiceScopeFactory scopes, IOptions<OpenIddictServerOptions> server, TimeProvider time, ILogger<OAuthPruner> logger) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromHours(1);

    /// <summary>Entries created before this instant may be deleted when they can no longer be used.</summary>
    public DateTimeOffset Threshold => time.GetUtcNow() - (server.Value.RefreshTokenLifetime ?? TimeSpan.FromDays(14));

    public async Task<PruneResult> PruneAsync(DateTimeOffset threshold, CancellationToken cancellationToken = default)
    {
        await using var scope = scopes.CreateAsyncScope();
        var services = scope.ServiceProvider;
        var db = services.GetRequiredService<LatticeDbContext>();
        // Expired device and user codes, whatever their age or status.
        var now = time.GetUtcNow().UtcDateTime;
        var deviceCodes = await db.Set<OpenIddictEntityFrameworkCoreToken>()
            .Where(t => (t.Type == OpenIddictConstants.TokenTypeIdentifiers.Private.DeviceCode || t.Type == OpenIddictConstants.TokenTypeIdentifiers.Private.UserCode)
                && t.ExpirationDate != null && t.ExpirationDate < now)
            .ExecuteDeleteAsync(cancellationToken);

        // Tokens first: an authorization is only removable once no usable token points at it.
        var tokens = await services.GetRequiredService<IOpenIddictTokenManager>().PruneAsync(threshold, cancellationToken);
        var authorizations = await services.GetRequiredService<IOpenIddictAuthorizationManager>().PruneAsync(threshold, cancellationToken);

        // The workspace side of each grant goes with its authorization.
        var grants = await db.OAuthGrants
            .Where(g => !db.Set<OpenIddictEntityFrameworkCoreAuthorization>().Any(a => a.Id == g.Id))
            .ExecuteDeleteAsync(cancellationToken);
        return new PruneResult(tokens, authorizations, grants, deviceCodes);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, time);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            try
            {
                var result = await PruneAsync(Threshold, stoppingToken);
                if (result != default)
                {
                    logger.LogInformation("Pruned {Tokens} OAuth tokens, {DeviceCodes} expired device and user codes, {Authorizations} authorizations and {Grants} grants",
                        result.Tokens, result.DeviceCodes, result.Authorizations, result.Grants);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // The database may be restarting; the next pass tries again.
                logger.LogWarning("Pruning the OAuth tables failed: {Error}", e.Message);
            }
        }
    }
}
