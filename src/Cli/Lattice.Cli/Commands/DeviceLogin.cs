using System.Text.Json;
using System.Text.Json.Nodes;

namespace Lattice.Cli.Commands;

/// <summary>Where a device sign-in stopped; one message per stage in <see cref="DeviceLogin.Describe"/>.</summary>
internal enum DeviceLoginFailure
{
    None,
    /// <summary>No HTTP answer from the gateway (or not JSON).</summary>
    Unreachable,
    /// <summary>The discovery document lacks an endpoint we need.</summary>
    NoDiscovery,
    /// <summary>The device authorization endpoint refused the request (unknown client, scope not allowed…).</summary>
    RequestRefused,
    /// <summary>The person denied the request on the verification page.</summary>
    Denied,
    /// <summary>Nobody approved before the device code expired.</summary>
    Expired,
    /// <summary>The token endpoint answered with an error we can't wait out.</summary>
    TokenRefused,
}

/// <summary>The endpoints <c>lattice login</c>/<c>logout</c> use, from <c>/.well-known/openid-configuration</c>.</summary>
internal sealed record OAuthEndpoints(Uri DeviceAuthorization, Uri Token, Uri? Revocation);

/// <summary>What the device authorization endpoint handed out (RFC 8628 §3.2).</summary>
internal sealed record DeviceCode(string Code, string UserCode, string VerificationUri, string? VerificationUriComplete, TimeSpan ExpiresIn, TimeSpan Interval);

/// <summary>A successful token response.</summary>
internal sealed record TokenResponse(string AccessToken, string? RefreshToken, string TokenType, long? ExpiresIn, string? Scope);

/// <summary>
/// The OAuth 2.0 device authorization grant (RFC 8628) as a public client: discovery, the device request, and
/// polling the token endpoint at the interval the server asks for. Protocol errors come back as values.
/// </summary>
internal sealed class DeviceLogin(HttpClient http, string clientId)
{
    private const string DeviceCodeGrantType = "urn:ietf:params:oauth:grant-type:device_code";
    private static readonly TimeSpan SlowDownStep = TimeSpan.FromSeconds(5);

    public async Task<(OAuthEndpoints? Endpoints, DeviceLoginFailure Failure, string? Detail)> DiscoverAsync(Uri origin, CancellationToken cancellationToken)
    {
        var (status, json, error) = await SendAsync(HttpMethod.Get, new Uri(origin, "/.well-known/openid-configuration"), null, cancellationToken);
        if (json is null || status != 200)
        {
            return (null, DeviceLoginFailure.Unreachable, error ?? $"the discovery document answered {status}");
        }
        var device = UriOf(json, "device_authorization_endpoint");
        var token = UriOf(json, "token_endpoint");
        if (device is null || token is null)
        {
            return (null, DeviceLoginFailure.NoDiscovery, "the gateway does not offer the device authorization grant");
        }
        return (new OAuthEndpoints(device, token, UriOf(json, "revocation_endpoint")), DeviceLoginFailure.None, null);
    }

    public async Task<(DeviceCode? Code, DeviceLoginFailure Failure, string? Detail)> RequestCodeAsync(OAuthEndpoints endpoints, IEnumerable<string> scopes, CancellationToken cancellationToken)
    {
        var (status, json, error) = await SendAsync(HttpMethod.Post, endpoints.DeviceAuthorization,
            [new("client_id", clientId), new("scope", string.Join(' ', scopes))], cancellationToken);
        if (json is null)
        {
            return (null, DeviceLoginFailure.Unreachable, error);
        }
        if (status != 200 || Str(json, "device_code") is not { } code || Str(json, "user_code") is not { } userCode || Str(json, "verification_uri") is not { } verify)
        {
            return (null, DeviceLoginFailure.RequestRefused, OAuthError(json) ?? $"HTTP {status}");
        }
        var expiresIn = TimeSpan.FromSeconds(Num(json, "expires_in") ?? 600);
        var interval = TimeSpan.FromSeconds(Math.Max(1, Num(json, "interval") ?? 5));
        return (new DeviceCode(code, userCode, verify, Str(json, "verification_uri_complete"), expiresIn, interval), DeviceLoginFailure.None, null);
    }

    /// <summary>
    /// Polls until the person approves or denies, or the code expires: waits <c>interval</c> before each poll,
    /// five seconds longer after each <c>slow_down</c> (RFC 8628 §3.5).
    /// </summary>
    public async Task<(TokenResponse? Token, DeviceLoginFailure Failure, string? Detail)> PollAsync(OAuthEndpoints endpoints, DeviceCode device, TimeProvider time, CancellationToken cancellationToken)
    {
        var deadline = time.GetUtcNow() + device.ExpiresIn;
        var interval = device.Interval;
        while (true)
        {
            await Task.Delay(interval, time, cancellationToken);
            if (time.GetUtcNow() >= deadline)
            {
                return (null, DeviceLoginFailure.Expired, null);
            }
            var (status, json, error) = await SendAsync(HttpMethod.Post, endpoints.Token,
                [new("grant_type", DeviceCodeGrantType), new("device_code", device.Code), new("client_id", clientId)], cancellationToken);
            if (json is null)
            {
                // A dropped connection while waiting is not fatal; the code is still good until it expires.
                continue;
            }
            if (status == 200 && Str(json, "access_token") is { } accessToken)
            {
                return (new TokenResponse(accessToken, Str(json, "refresh_token"), Str(json, "token_type") ?? "Bearer", Num(json, "expires_in"), Str(json, "scope")), DeviceLoginFailure.None, null);
            }
            switch (Str(json, "error"))
            {
                case "authorization_pending":
                    continue;
                case "slow_down":
                    interval += SlowDownStep;
                    continue;
                case "access_denied":
                    return (null, DeviceLoginFailure.Denied, null);
                case "expired_token":
                    return (null, DeviceLoginFailure.Expired, null);
                default:
                    return (null, DeviceLoginFailure.TokenRefused, OAuthError(json) ?? error ?? $"HTTP {status}");
            }
        }
    }

    /// <summary>Revokes a token at the revocation endpoint (RFC 7009); true when the server accepted the request.</summary>
    public async Task<(bool Revoked, string? Detail)> RevokeAsync(Uri revocation, string token, string hint, CancellationToken cancellationToken)
    {
        var (status, json, error) = await SendAsync(HttpMethod.Post, revocation,
            [new("token", token), new("token_type_hint", hint), new("client_id", clientId)], cancellationToken);
        return status == 200 ? (true, null) : (false, (json is null ? null : OAuthError(json)) ?? error ?? $"HTTP {status}");
    }

    public static string Describe(DeviceLoginFailure failure, string? detail) => failure switch
    {
        DeviceLoginFailure.Unreachable => $"Could not reach the gateway: {detail}",
        DeviceLoginFailure.NoDiscovery => $"Can't sign in to this gateway: {detail}.",
        DeviceLoginFailure.RequestRefused => $"The gateway refused the sign-in request: {detail}",
        DeviceLoginFailure.Denied => "Sign-in was denied: the request was not approved on the verification page.",
        DeviceLoginFailure.Expired => "Sign-in timed out: the code expired before it was approved. Run `lattice login` again.",
        DeviceLoginFailure.TokenRefused => $"The gateway refused to issue a token: {detail}",
        _ => "Signed in.",
    };

    private async Task<(int Status, JsonObject? Json, string? Error)> SendAsync(HttpMethod method, Uri uri, KeyValuePair<string, string>[]? form, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, uri);
        if (form is not null)
        {
            request.Content = new FormUrlEncodedContent(form);
        }
        try
        {
            using var response = await http.SendAsync(request, cancellationToken);
            var text = await response.Content.ReadAsStringAsync(cancellationToken);
            if (text.Length == 0)
            {
                return ((int)response.StatusCode, new JsonObject(), null);
            }
            return ((int)response.StatusCode, JsonNode.Parse(text) as JsonObject, null);
        }
        catch (Exception ex) when (ex is HttpRequestException or JsonException || (ex is TaskCanceledException && !cancellationToken.IsCancellationRequested))
        {
            return (0, null, $"{uri.GetLeftPart(UriPartial.Authority)}: {ex.Message}");
        }
    }

    private static string? OAuthError(JsonObject json) => Str(json, "error") is { } error
        ? Str(json, "error_description") is { } description ? $"{error}: {description}" : error
        : null;

    private static string? Str(JsonObject json, string name) =>
        json[name] is JsonValue value && value.TryGetValue<string>(out var s) && s.Length > 0 ? s : null;

    private static long? Num(JsonObject json, string name) =>
        json[name] is JsonValue value && value.TryGetValue<long>(out var n) ? n : null;

    private static Uri? UriOf(JsonObject json, string name) =>
        Str(json, name) is { } s && Uri.TryCreate(s, UriKind.Absolute, out var uri) ? uri : null;
}
