using System.Collections.Concurrent;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Hosting;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Lattice.Gateway.Identity;

/// <summary>
/// Checks OAuth access tokens without a database round trip: the RS256 signature against the server's own key,
/// issuer, audience, type and lifetime once per token, then per request only a cache lookup, the expiry and the in-memory
/// <see cref="RevocationSet"/>.
/// </summary>
public sealed class AccessTokenValidator
{
    public const string Audience = "lattice";
    public const string WorkspaceClaim = "lattice_ws";
    private const int MaxCached = 50_000;

    private readonly JsonWebTokenHandler _handler = new() { MapInboundClaims = false };
    private readonly Lazy<TokenValidationParameters> _parameters;
    private readonly RevocationSet _revoked;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, Entry> _cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Entry>.AlternateLookup<ReadOnlySpan<char>> _lookup;

    public AccessTokenValidator(SigningKeys keys, RevocationSet revoked, TimeProvider time, PublicUrl publicUrl)
    {
        _revoked = revoked;
        _time = time;
        _lookup = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        // Built on first use: with no configured public URL the issuer is the listening address, known once the server is.
        _parameters = new(() => new TokenValidationParameters
        {
            IssuerSigningKey = keys.Signing,
            ValidateIssuerSigningKey = true,
            // The issuer OpenIddict signs in is the public URL, whatever Host the token was asked for with.
            ValidateIssuer = true,
            ValidIssuer = publicUrl.Issuer,
            ValidAudience = Audience,
            ValidTypes = ["at+jwt"],
            ValidAlgorithms = [SecurityAlgorithms.RsaSha256],
            ClockSkew = TimeSpan.FromSeconds(5),
            RequireExpirationTime = true,
        });
    }

    public static bool LooksLikeJwt(ReadOnlySpan<char> credential) =>
        credential.StartsWith("eyJ", StringComparison.Ordinal) && credential.Count('.') == 2;

    public AuthFailure Validate(ReadOnlySpan<char> token, out Caller? caller)
    {
        caller = null;
        if (!_lookup.TryGetValue(token, out var entry))
        {
            entry = ValidateSignature(token.ToString());
            if (entry is null)
            {
                return AuthFailure.InvalidToken;
            }
        }
        if (entry.ExpiresAt <= _time.GetUtcNow())
        {
            _lookup.TryRemove(token, out _);
            return AuthFailure.InvalidToken;
        }
        if (_revoked.IsGrantRevoked(entry.Caller.CredentialId) || _revoked.IsTokenRevoked(entry.TokenId))
        {
            return AuthFailure.Revoked;
        }
        caller = entry.Caller;
        return AuthFailure.None;
    }

    private Entry? ValidateSignature(string token)
    {
        // With a local key and no configuration manager the handler completes synchronously.
        var result = _handler.ValidateTokenAsync(token, _parameters.Value).GetAwaiter().GetResult();
        if (!result.IsValid || result.SecurityToken is not JsonWebToken jwt)
        {
            return null;
        }
        if (!jwt.TryGetPayloadValue<string>("sub", out var subject) ||
            !jwt.TryGetPayloadValue<string>(WorkspaceClaim, out var workspace) ||
            !jwt.TryGetPayloadValue<string>("oi_au_id", out var grant))
        {
            return null;
        }
        jwt.TryGetPayloadValue<string>("client_id", out var client);
        jwt.TryGetPayloadValue<string>("oi_tkn_id", out var tokenId);
        string[] scopes = jwt.TryGetPayloadValue<string>("scope", out var scope)
            ? scope.Split(' ', StringSplitOptions.RemoveEmptyEntries)
            : jwt.TryGetPayloadValue<string[]>("scope", out var array) ? array : [];

        var entry = new Entry(new Caller(CredentialKind.AccessToken, workspace, grant, scopes, subject, client), tokenId, jwt.ValidTo == DateTime.MinValue ? DateTimeOffset.MinValue : new DateTimeOffset(jwt.ValidTo, TimeSpan.Zero));
        if (_cache.Count >= MaxCached)
        {
            _cache.Clear();
        }
        _cache[token] = entry;
        return entry;
    }

    private sealed record Entry(Caller Caller, string? TokenId, DateTimeOffset ExpiresAt);
}
