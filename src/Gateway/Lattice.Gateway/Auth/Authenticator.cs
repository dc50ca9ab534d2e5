using Lattice.Gateway.Identity;
using Microsoft.Extensions.Primitives;

namespace Lattice.Gateway.Auth;

/// <summary>What kind of credential authenticated a request.</summary>
public enum CredentialKind
{
    /// <summary>A developer key (<c>sk_…</c>): its workspace pays and its workspace's capacity serves.</summary>
    ApiKey,

    /// <summary>An OAuth access token a user granted an app: the user's compute serves and their workspace pays.</summary>
    AccessToken,
}

/// <summary>Who is calling, once the credential checked out.</summary>
/// <param name="CredentialId">The key id, or the grant (authorization) id of an access token.</param>
/// <param name="UserId">For access tokens: the user who granted it.</param>
/// <param name="ClientId">For access tokens: the app it was granted to.</param>
public sealed record Caller(CredentialKind Kind, string WorkspaceId, string CredentialId, string[] Scopes, string? UserId = null, string? ClientId = null)
{
    public bool HasScope(string scope) => Array.IndexOf(Scopes, scope) >= 0;

    /// <summary>True when the request may never reach marketplace capacity.</summary>
    public bool PrivateOnly => HasScope(Auth.Scopes.WorkspaceOnly) || !HasScope(Auth.Scopes.Marketplace);
}

/// <summary>Why authentication failed; mapped to a response in one place per surface.</summary>
public enum AuthFailure
{
    None,
    Missing,
    Malformed,
    Unknown,
    Expired,
    InvalidToken,
    Revoked,
    TooManyFailures,
}

/// <summary>What authentication found: no failure and the caller, or the failure.</summary>
public readonly record struct AuthResult(AuthFailure Failure, Caller? Caller);

/// <summary>
/// Reads the credential from <c>Authorization: Bearer</c> or <c>x-api-key</c> and checks it: developer keys against
/// the in-memory key snapshot (and, for a key the snapshot lacks, the database — see <see cref="ApiKeyStore.FindMissAsync"/>),
/// access tokens (<c>eyJ…</c>) by signature and the in-memory revocation set.
/// </summary>
public sealed class Authenticator(ApiKeyStore keys, AccessTokenValidator tokens, TimeProvider time)
{
    /// <summary>Completes synchronously unless a developer key is missing from this node's snapshot.</summary>
    public ValueTask<AuthResult> AuthenticateAsync(HttpRequest request)
    {
        var failure = ReadSecret(request, out var secret);
        if (failure != AuthFailure.None)
        {
            return new(new AuthResult(failure, null));
        }
        if (AccessTokenValidator.LooksLikeJwt(secret))
        {
            failure = tokens.Validate(secret, out var caller);
            return new(new AuthResult(failure, caller));
        }

        Span<char> hash = stackalloc char[64];
        if (!ApiKeySecrets.HashInto(secret, hash))
        {
            return new(new AuthResult(AuthFailure.Unknown, null));
        }
        if (keys.FindByHash(hash) is { } record)
        {
            return new(Check(record));
        }
        return MissAsync(new string(hash));
    }

    private async ValueTask<AuthResult> MissAsync(string hash) =>
        await keys.FindMissAsync(hash) is { } record ? Check(record) : new AuthResult(AuthFailure.Unknown, null);

    private AuthResult Check(ApiKeyRecord record) =>
        record.ExpiresAt is { } expires && expires <= time.GetUtcNow()
            ? new AuthResult(AuthFailure.Expired, null)
            : new AuthResult(AuthFailure.None, record.Caller);

    private static AuthFailure ReadSecret(HttpRequest request, out ReadOnlySpan<char> secret)
    {
        secret = default;
        var authorization = request.Headers.Authorization;
        if (!StringValues.IsNullOrEmpty(authorization))
        {
            var value = authorization.ToString().AsSpan().Trim();
            if (!value.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            {
                return AuthFailure.Malformed;
            }
            secret = value[7..].Trim();
        }
        else if (request.Headers.TryGetValue("x-api-key", out var apiKey) && !StringValues.IsNullOrEmpty(apiKey))
        {
            secret = apiKey.ToString().AsSpan().Trim();
        }
        else
        {
            return AuthFailure.Missing;
        }
        return secret.IsEmpty ? AuthFailure.Missing : AuthFailure.None;
    }

    public static string Describe(AuthFailure failure) => failure switch
    {
        AuthFailure.Missing => "You didn't provide an API key. Provide it as 'Authorization: Bearer sk_...' or in the 'x-api-key' header.",
        AuthFailure.Malformed => "The Authorization header must have the form 'Bearer <key>'.",
        AuthFailure.Expired => "The API key provided has expired.",
        AuthFailure.InvalidToken => "The access token is invalid or has expired.",
        AuthFailure.Revoked => "The grant behind this access token has been revoked.",
        AuthFailure.TooManyFailures => "Too many failed authentication attempts from this address; try again later.",
        _ => "Incorrect API key provided.",
    };
}
