namespace Lattice.Client;

/// <summary>Where the client gets the credential it sends as <c>Authorization: Bearer …</c>.</summary>
public abstract class LatticeTokenProvider
{
    /// <summary>The credential for the next request.</summary>
    public abstract ValueTask<string> GetTokenAsync(CancellationToken cancellationToken);

    /// <summary>
    /// The gateway refused <paramref name="rejectedToken"/> (<paramref name="refusal"/>: expired or revoked). Return true
    /// when <see cref="GetTokenAsync"/> now has a new one worth sending; throw a <see cref="ReauthorizeException"/> when
    /// only signing in again can help. The default cannot renew anything.
    /// </summary>
    public virtual ValueTask<bool> TryRenewAsync(string rejectedToken, LatticeException refusal, CancellationToken cancellationToken) =>
        ValueTask.FromResult(false);
}

/// <summary>A developer key (<c>sk_…</c>): the workspace's own credential, for servers and scripts.</summary>
public sealed class DeveloperKeyTokenProvider : LatticeTokenProvider
{
    private readonly string _key;

    /// <summary>Sends <paramref name="key"/> on every request.</summary>
    public DeveloperKeyTokenProvider(string key)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(key);
        _key = key;
    }

    /// <inheritdoc/>
    public override ValueTask<string> GetTokenAsync(CancellationToken cancellationToken) => ValueTask.FromResult(_key);
}

/// <summary>
/// A signed-in user's OAuth tokens: sends the access token, refreshes it shortly before it expires or when the gateway
/// refuses it, and keeps the rotated refresh token. A grant that was revoked (or a refresh token that was spent)
/// surfaces as a <see cref="ReauthorizeException"/>: send the user through sign-in again.
/// </summary>
public sealed class OAuthTokenProvider : LatticeTokenProvider
{
    private readonly LatticeOAuthClient _oauth;
    private readonly TimeProvider _time;
    private readonly SemaphoreSlim _refreshing = new(1, 1);
    private volatile OAuthTokens _tokens;

    /// <summary>Uses <paramref name="tokens"/> (from a code exchange, the device flow or storage) and refreshes them through <paramref name="oauth"/>.</summary>
    public OAuthTokenProvider(LatticeOAuthClient oauth, OAuthTokens tokens, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(oauth);
        ArgumentNullException.ThrowIfNull(tokens);
        _oauth = oauth;
        _tokens = tokens;
        _time = timeProvider ?? TimeProvider.System;
    }

    /// <summary>How long before its expiry an access token is refreshed. Default one minute.</summary>
    public TimeSpan RefreshBeforeExpiry { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>The tokens in use now.</summary>
    public OAuthTokens Tokens => _tokens;

    /// <summary>Raised after each refresh with the new tokens (the refresh token rotates: store the new one).</summary>
    public event Action<OAuthTokens>? Refreshed;

    /// <inheritdoc/>
    public override async ValueTask<string> GetTokenAsync(CancellationToken cancellationToken)
    {
        var tokens = _tokens;
        if (tokens.RefreshToken is null || tokens.ExpiresAt - RefreshBeforeExpiry > _time.GetUtcNow())
        {
            return tokens.AccessToken;
        }
        return (await RefreshAsync(tokens.AccessToken, cancellationToken).ConfigureAwait(false)).AccessToken;
    }

    /// <inheritdoc/>
    public override async ValueTask<bool> TryRenewAsync(string rejectedToken, LatticeException refusal, CancellationToken cancellationToken)
    {
        if (_tokens.RefreshToken is null)
        {
            return false;
        }
        await RefreshAsync(rejectedToken, cancellationToken).ConfigureAwait(false);
        return true;
    }

    /// <summary>Refreshes once for all callers that saw <paramref name="stale"/>; later callers get the new tokens.</summary>
    private async Task<OAuthTokens> RefreshAsync(string stale, CancellationToken cancellationToken)
    {
        await _refreshing.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var current = _tokens;
            if (current.AccessToken != stale || current.RefreshToken is null)
            {
                return current;
            }
            var fresh = await _oauth.RefreshAsync(current.RefreshToken, cancellationToken).ConfigureAwait(false);
            _tokens = fresh;
            Refreshed?.Invoke(fresh);
            return fresh;
        }
        finally
        {
            _refreshing.Release();
        }
    }
}
