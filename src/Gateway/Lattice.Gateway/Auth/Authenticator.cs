using Lattice.Protocol;
using Microsoft.Extensions.Primitives;

namespace Lattice.Gateway.Auth;

/// <summary>Who is calling, once the credential checked out.</summary>
public sealed record Caller(string WorkspaceId, string KeyId, ApiKeyRecord Key)
{
    public bool HasScope(string scope) => Key.HasScope(scope);
}

/// <summary>Why authentication failed; mapped to a response in one place per surface.</summary>
public enum AuthFailure
{
    None,
    Missing,
    Malformed,
    Unknown,
    Expired,
}

/// <summary>Reads the credential from <c>Authorization: Bearer</c> or <c>x-api-key</c> and checks it against the key store.</summary>
public sealed class Authenticator(ApiKeyStore keys, TimeProvider time)
{
    public AuthFailure TryAuthenticate(HttpRequest request, out Caller? caller)
    {
        caller = null;
        ReadOnlySpan<char> secret;
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

        if (secret.IsEmpty)
        {
            return AuthFailure.Missing;
        }

        var record = keys.Find(secret);
        if (record is null)
        {
            return AuthFailure.Unknown;
        }
        if (record.ExpiresAt is { } expires && expires <= time.GetUtcNow())
        {
            return AuthFailure.Expired;
        }

        caller = new Caller(record.WorkspaceId, record.Id, record);
        return AuthFailure.None;
    }

    public static string Describe(AuthFailure failure) => failure switch
    {
        AuthFailure.Missing => "You didn't provide an API key. Provide it as 'Authorization: Bearer sk_...' or in the 'x-api-key' header.",
        AuthFailure.Malformed => "The Authorization header must have the form 'Bearer <key>'.",
        AuthFailure.Expired => "The API key provided has expired.",
        _ => "Incorrect API key provided.",
    };
}
