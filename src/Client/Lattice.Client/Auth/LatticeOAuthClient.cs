using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Lattice.Client.Json;

namespace Lattice.Client;

/// <summary>An access token and what came with it from Lattice's token endpoint.</summary>
/// <param name="AccessToken">The access token (<c>eyJ…</c>): send it as the credential.</param>
/// <param name="RefreshToken">The refresh token, when <c>offline_access</c> was granted; it rotates on every use.</param>
/// <param name="ExpiresAt">When the access token expires.</param>
/// <param name="Scope">The scopes granted, space-separated.</param>
/// <param name="IdToken">The OpenID Connect ID token, when <c>openid</c> was granted.</param>
public sealed record OAuthTokens(string AccessToken, string? RefreshToken, DateTimeOffset ExpiresAt, string? Scope, string? IdToken);

/// <summary>A started authorization-code request: send the user to <see cref="Url"/>, keep the rest for the callback.</summary>
/// <param name="Url">Where to send the user's browser.</param>
/// <param name="State">The value the callback must carry back (checked by <see cref="LatticeOAuthClient.ExchangeCallbackAsync"/>).</param>
/// <param name="CodeVerifier">The PKCE verifier: keep it secret, on the server side, until the exchange.</param>
/// <param name="RedirectUri">The redirect URI the request named (the exchange must name it again).</param>
public sealed record AuthorizationRequest(Uri Url, string State, string CodeVerifier, Uri RedirectUri);

/// <summary>A started device authorization: show the user <see cref="UserCode"/> and <see cref="VerificationUri"/>, then poll.</summary>
/// <param name="DeviceCode">The device's secret code, used to poll.</param>
/// <param name="UserCode">The code the user types on the verification page.</param>
/// <param name="VerificationUri">The page where the user enters the code.</param>
/// <param name="VerificationUriComplete">The page with the code filled in (for a QR code or a link), when given.</param>
/// <param name="ExpiresAt">When the codes expire.</param>
/// <param name="Interval">How long to wait between polls.</param>
public sealed record DeviceAuthorization(string DeviceCode, string UserCode, Uri VerificationUri, Uri? VerificationUriComplete, DateTimeOffset ExpiresAt, TimeSpan Interval);

/// <summary>
/// Lattice's OAuth 2.1 endpoints for one registered app: the authorization code flow with PKCE (web apps), the
/// device flow (command-line tools), refresh and revocation.
/// </summary>
public class LatticeOAuthClient : IDisposable
{
    private const string DeviceCodeGrant = "urn:ietf:params:oauth:grant-type:device_code";
    private static readonly TimeSpan SlowDownStep = TimeSpan.FromSeconds(5);
    private readonly HttpClient _http;
    private readonly Uri _issuer;
    private readonly string _clientId;
    private readonly string? _clientSecret;
    private readonly TimeProvider _time;

    /// <summary>An OAuth client for app <paramref name="clientId"/> of the gateway at <paramref name="issuer"/>.</summary>
    /// <param name="issuer">The gateway's public URL (its issuer), such as <c>https://lattice.example.com</c>.</param>
    /// <param name="clientId">The app's client id, <c>app_…</c> (<c>lattice-cli</c> for the CLI).</param>
    /// <param name="clientSecret">A confidential app's secret; null for public apps, which rely on PKCE alone.</param>
    /// <param name="transport">The HTTP handler to send through; null for a new <see cref="SocketsHttpHandler"/>.</param>
    /// <param name="timeProvider">The clock for token expiry and device-flow polling; null for the system's.</param>
    public LatticeOAuthClient(Uri issuer, string clientId, string? clientSecret = null, HttpMessageHandler? transport = null, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(issuer);
        ArgumentException.ThrowIfNullOrWhiteSpace(clientId);
        _issuer = new Uri(issuer.AbsoluteUri.TrimEnd('/') + "/");
        _clientId = clientId;
        _clientSecret = clientSecret;
        _time = timeProvider ?? TimeProvider.System;
        _http = new HttpClient(transport ?? new SocketsHttpHandler(), disposeHandler: transport is null) { BaseAddress = _issuer };
    }

    /// <summary>
    /// Starts an authorization-code request with PKCE (S256): a fresh verifier and state, and the URL to send the
    /// user to. <paramref name="prompt"/> <c>consent</c> asks again even when the user already granted these scopes.
    /// </summary>
    public virtual AuthorizationRequest CreateAuthorizationRequest(Uri redirectUri, IEnumerable<string> scopes, string? state = null, string? prompt = null)
    {
        ArgumentNullException.ThrowIfNull(redirectUri);
        var verifier = Base64Url(RandomNumberGenerator.GetBytes(32));
        var challenge = Base64Url(SHA256.HashData(Encoding.ASCII.GetBytes(verifier)));
        state ??= Base64Url(RandomNumberGenerator.GetBytes(16));
        var query = new StringBuilder("connect/authorize?response_type=code");
        Append(query, "client_id", _clientId);
        Append(query, "redirect_uri", redirectUri.OriginalString);
        Append(query, "scope", string.Join(' ', scopes));
        Append(query, "state", state);
        Append(query, "code_challenge", challenge);
        Append(query, "code_challenge_method", "S256");
        if (prompt is not null)
        {
            Append(query, "prompt", prompt);
        }
        return new AuthorizationRequest(new Uri(_issuer, query.ToString()), state, verifier, redirectUri);
    }

    /// <summary>Exchanges the <paramref name="code"/> the redirect carried for tokens.</summary>
    public virtual Task<OAuthTokens> ExchangeCodeAsync(AuthorizationRequest request, string code, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        return TokenAsync(
        [
            new("grant_type", "authorization_code"), new("code", code), new("redirect_uri", request.RedirectUri.OriginalString),
            new("code_verifier", request.CodeVerifier),
        ], cancellationToken);
    }

    /// <summary>
    /// Reads the callback URL the browser came back to: checks its <c>state</c>, surfaces <c>error=access_denied</c> as
    /// <see cref="AuthorizationDeniedException"/>, and exchanges the code.
    /// </summary>
    public virtual Task<OAuthTokens> ExchangeCallbackAsync(AuthorizationRequest request, Uri callback, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(callback);
        var query = ParseQuery(callback.Query);
        if (!query.TryGetValue("state", out var state) || state != request.State)
        {
            throw new InvalidOperationException("The callback's state does not match the authorization request's: refusing it (a forged or stale callback).");
        }
        if (query.TryGetValue("error", out var error))
        {
            throw LatticeException.FromError(new LatticeError(0, error, null, query.GetValueOrDefault("error_description") ?? error));
        }
        if (!query.TryGetValue("code", out var code))
        {
            throw new InvalidOperationException("The callback carries neither a code nor an error.");
        }
        return ExchangeCodeAsync(request, code, cancellationToken);
    }

    /// <summary>Exchanges a refresh token for new tokens (the refresh token rotates). A spent one, or a revoked grant's, is <see cref="InvalidGrantException"/>.</summary>
    public virtual Task<OAuthTokens> RefreshAsync(string refreshToken, CancellationToken cancellationToken = default) =>
        TokenAsync([new("grant_type", "refresh_token"), new("refresh_token", refreshToken)], cancellationToken);

    /// <summary>Starts the device flow: show the user the code and the page, then call <see cref="WaitForDeviceTokensAsync"/>.</summary>
    public virtual async Task<DeviceAuthorization> StartDeviceAuthorizationAsync(IEnumerable<string> scopes, CancellationToken cancellationToken = default)
    {
        using var response = await _http.PostAsync("connect/device", Form([new("scope", string.Join(' ', scopes))]), cancellationToken).ConfigureAwait(false);
        var body = await response.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw OAuthError(response, body);
        }
        var started = JsonSerializer.Deserialize(body, OpenAiJsonContext.Default.DeviceAuthorizationResponse)
            ?? throw new LatticeException(new LatticeError((int)response.StatusCode, null, null, "The device authorization endpoint answered no JSON object."));
        return new DeviceAuthorization(started.DeviceCode, started.UserCode, new Uri(started.VerificationUri),
            started.VerificationUriComplete is { } complete ? new Uri(complete) : null,
            _time.GetUtcNow().AddSeconds(started.ExpiresIn), TimeSpan.FromSeconds(started.Interval ?? 5));
    }

    /// <summary>
    /// Polls the token endpoint every <see cref="DeviceAuthorization.Interval"/> (longer after each <c>slow_down</c>)
    /// until the user approves (the tokens), declines (<see cref="AuthorizationDeniedException"/>) or the code expires
    /// (<see cref="DeviceCodeExpiredException"/>).
    /// </summary>
    public virtual async Task<OAuthTokens> WaitForDeviceTokensAsync(DeviceAuthorization authorization, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(authorization);
        var interval = authorization.Interval;
        while (true)
        {
            await Task.Delay(interval, _time, cancellationToken).ConfigureAwait(false);
            try
            {
                return await TokenAsync([new("grant_type", DeviceCodeGrant), new("device_code", authorization.DeviceCode)], cancellationToken).ConfigureAwait(false);
            }
            catch (LatticeException pending) when (pending.Code == "authorization_pending" && _time.GetUtcNow() < authorization.ExpiresAt)
            {
            }
            catch (LatticeException slow) when (slow.Code == "slow_down" && _time.GetUtcNow() < authorization.ExpiresAt)
            {
                interval += SlowDownStep;
            }
            catch (LatticeException late) when (late.Code == "authorization_pending")
            {
                throw new DeviceCodeExpiredException(late.Error with { Code = LatticeErrorCodes.ExpiredToken });
            }
        }
    }

    /// <summary>Revokes a refresh token (and with it the grant) or one access token (RFC 7009).</summary>
    public virtual async Task RevokeAsync(string token, CancellationToken cancellationToken = default)
    {
        using var response = await _http.PostAsync("connect/revoke", Form([new("token", token)]), cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw OAuthError(response, await response.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false));
        }
    }

    private async Task<OAuthTokens> TokenAsync(List<KeyValuePair<string, string>> fields, CancellationToken cancellationToken)
    {
        using var response = await _http.PostAsync("connect/token", Form(fields), cancellationToken).ConfigureAwait(false);
        var body = await response.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw OAuthError(response, body);
        }
        var tokens = JsonSerializer.Deserialize(body, OpenAiJsonContext.Default.OAuthTokenResponse);
        if (tokens?.AccessToken is not { } access)
        {
            throw new LatticeException(new LatticeError((int)response.StatusCode, null, null, "The token endpoint answered without an access token."));
        }
        return new OAuthTokens(access, tokens.RefreshToken, _time.GetUtcNow().AddSeconds(tokens.ExpiresIn ?? 3600), tokens.Scope, tokens.IdToken);
    }

    private FormUrlEncodedContent Form(List<KeyValuePair<string, string>> fields)
    {
        fields.Add(new("client_id", _clientId));
        if (_clientSecret is not null)
        {
            fields.Add(new("client_secret", _clientSecret));
        }
        return new FormUrlEncodedContent(fields);
    }

    private LatticeException OAuthError(HttpResponseMessage response, byte[] body)
    {
        OAuthErrorResponse? error = null;
        try
        {
            error = JsonSerializer.Deserialize(body, OpenAiJsonContext.Default.OAuthErrorResponse);
        }
        catch (JsonException)
        {
        }
        var retryAfter = response.Headers.RetryAfter?.Delta;
        var status = (int)response.StatusCode;
        var code = error?.Error;
        var message = error?.ErrorDescription ?? code ?? $"The OAuth endpoint answered {status}.";
        var parsed = new LatticeError(status, code, null, message, null, Pipeline.ErrorReader.RequestIdOf(response), retryAfter);
        // The device endpoint's own limit answers 429 slow_down: it is a rate limit, so it is raised as one.
        return response.StatusCode == HttpStatusCode.TooManyRequests
            ? new RateLimitExceededException(parsed)
            : LatticeException.FromError(parsed);
    }

    private static void Append(StringBuilder query, string name, string value) =>
        query.Append('&').Append(name).Append('=').Append(Uri.EscapeDataString(value));

    private static Dictionary<string, string> ParseQuery(string query)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            var name = Uri.UnescapeDataString((eq < 0 ? pair : pair[..eq]).Replace('+', ' '));
            var value = eq < 0 ? "" : Uri.UnescapeDataString(pair[(eq + 1)..].Replace('+', ' '));
            values.TryAdd(name, value);
        }
        return values;
    }

    private static string Base64Url(byte[] bytes) => System.Buffers.Text.Base64Url.EncodeToString(bytes);

    /// <summary>Frees the HTTP client.</summary>
    public void Dispose()
    {
        _http.Dispose();
        GC.SuppressFinalize(this);
    }
}
