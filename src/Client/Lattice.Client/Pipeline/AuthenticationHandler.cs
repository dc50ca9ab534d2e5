using System.Net.Http.Headers;

namespace Lattice.Client.Pipeline;

/// <summary>
/// Puts the provider's token on every attempt; when the gateway refuses it (expired, or revoked), asks the provider
/// to renew it once (an OAuth refresh) and sends again. A grant that cannot be renewed surfaces as a
/// <see cref="ReauthorizeException"/>.
/// </summary>
internal sealed class AuthenticationHandler(LatticeTokenProvider tokens) : DelegatingHandler
{
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var token = await tokens.GetTokenAsync(cancellationToken).ConfigureAwait(false);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        try
        {
            return await base.SendAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (LatticeException refused) when (refused is InvalidApiKeyException or RevokedGrantException)
        {
            bool renewed;
            try
            {
                renewed = await tokens.TryRenewAsync(token, refused, cancellationToken).ConfigureAwait(false);
            }
            catch (ReauthorizeException cannotRenew)
            {
                // The gateway's own answer (with its request id) when it already said "revoked"; else the refresh's.
                throw refused is ReauthorizeException ? LatticeException.FromError(refused.Error, cannotRenew) : cannotRenew;
            }
            if (!renewed)
            {
                throw;
            }
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", await tokens.GetTokenAsync(cancellationToken).ConfigureAwait(false));
            return await base.SendAsync(request, cancellationToken).ConfigureAwait(false);
        }
    }
}
