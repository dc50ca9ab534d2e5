using System.Net;
using System.Text.Json.Nodes;
using Lattice.Client.Tests.Infrastructure;
using Lattice.Gateway.Tests.Identity;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.AI;

namespace Lattice.Client.Tests.Auth;

/// <summary>
/// The token providers against the gateway's real OAuth endpoints (a real loopback port): authorization code + PKCE,
/// the device flow with its polling, refresh before expiry, and a revoked grant surfaced as "reauthorize".
/// </summary>
public sealed class OAuthTests(OAuthGateway gateway) : IClassFixture<OAuthGateway>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private static readonly string[] Scopes = ["lattice:compute:inference", "lattice:compute:usage:read", "offline_access"];

    private LatticeOAuthClient OAuth(string clientId, string? secret = null, TimeProvider? clock = null) =>
        new(new Uri(gateway.Origin), clientId, secret, timeProvider: clock);

    private LatticeClient Lattice(LatticeTokenProvider tokens, TimeProvider? clock = null) => new(new LatticeClientOptions
    {
        Endpoint = new Uri(gateway.Origin),
        TokenProvider = tokens,
        TimeProvider = clock ?? TimeProvider.System,
        Retry = new LatticeRetryOptions { MaxRetries = 0 },
    });

    /// <summary>Signs tenant A's user in and consents in a browser, following the SDK's authorize URL; returns the callback URL.</summary>
    private async Task<Uri> ConsentAsync(AuthorizationRequest request, string[] scopes)
    {
        using var browser = gateway.NewBrowser();
        var first = await browser.GetAsync(request.Url.PathAndQuery.TrimStart('/'));
        Assert.Equal(HttpStatusCode.Redirect, first.StatusCode);
        var returnUrl = QueryHelpers.ParseQuery(new Uri("http://x" + first.Headers.Location!.OriginalString).Query)["returnUrl"].ToString();
        var signedIn = await browser.SignInAsync(gateway.A.Email, OAuthGateway.Password, returnUrl);
        var consent = await browser.GetAsync(signedIn.Headers.Location!.OriginalString.TrimStart('/'));
        var form = OAuthGateway.Browser.HiddenFields(await consent.Content.ReadAsStringAsync());
        form.AddRange(scopes.Select(s => new KeyValuePair<string, string>("granted_scope", s)));
        form.Add(new("decision", "accept"));
        var decided = await browser.PostFormAsync("connect/authorize", form);
        Assert.Equal(HttpStatusCode.Redirect, decided.StatusCode);
        return decided.Headers.Location!;
    }

    private async Task<(OAuthTokens Tokens, LatticeOAuthClient OAuth)> SignInAsync(TimeProvider? clock = null)
    {
        var oauth = OAuth(gateway.A.ClientId, gateway.A.ClientSecret, clock);
        var request = oauth.CreateAuthorizationRequest(new Uri(OAuthGateway.RedirectUri), Scopes, prompt: "consent");
        var callback = await ConsentAsync(request, Scopes);
        return (await oauth.ExchangeCallbackAsync(request, callback), oauth);
    }

    [Fact]
    public async Task Authorization_code_with_pkce_signs_the_user_in_and_the_token_chats()
    {
        var (tokens, oauth) = await SignInAsync();
        using (oauth)
        {
            Assert.StartsWith("eyJ", tokens.AccessToken);
            Assert.NotNull(tokens.RefreshToken);
            var request = oauth.CreateAuthorizationRequest(new Uri(OAuthGateway.RedirectUri), Scopes);
            var query = QueryHelpers.ParseQuery(request.Url.Query);
            Assert.Equal("S256", query["code_challenge_method"].ToString());
            Assert.Equal(gateway.A.ClientId, query["client_id"].ToString());
            Assert.Equal(request.State, query["state"].ToString());
            Assert.Equal(System.Buffers.Text.Base64Url.EncodeToString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.ASCII.GetBytes(request.CodeVerifier))),
                query["code_challenge"].ToString());
            await Assert.ThrowsAsync<InvalidOperationException>(() => oauth.ExchangeCallbackAsync(request, new Uri(OAuthGateway.RedirectUri + "?code=x&state=forged")));
            await Assert.ThrowsAsync<AuthorizationDeniedException>(() => oauth.ExchangeCallbackAsync(request,
                new Uri(OAuthGateway.RedirectUri + "?error=access_denied&state=" + Uri.EscapeDataString(request.State))));

            using var lattice = Lattice(new OAuthTokenProvider(oauth, tokens));
            Assert.Equal("You said: hello", (await lattice.GetChatClient("lovelace:chat").GetResponseAsync("hello")).Text);
        }
    }

    [Fact]
    public async Task The_device_flow_polls_at_its_interval_until_the_user_approves()
    {
        var clock = new WatchedClock();
        using var oauth = OAuth(gateway.A.PublicClientId, clock: clock);
        var device = await oauth.StartDeviceAuthorizationAsync(["lattice:compute:inference", "offline_access"]);
        Assert.Equal(new Uri(gateway.Origin + "/connect/verify"), device.VerificationUri);
        var polling = oauth.WaitForDeviceTokensAsync(device);

        // The first poll comes one interval later, and the user has not decided yet.
        Assert.Equal(device.Interval, await clock.ElapseNextWaitAsync());
        Assert.Equal(device.Interval, await clock.NextWaitAsync()); // authorization_pending: wait again

        using (var browser = gateway.NewBrowser())
        {
            await browser.SignInAsync(gateway.A.Email, OAuthGateway.Password);
            var page = await browser.GetAsync("connect/verify?user_code=" + Uri.EscapeDataString(device.UserCode));
            var form = OAuthGateway.Browser.HiddenFields(await page.Content.ReadAsStringAsync());
            form.Add(new("granted_scope", "lattice:compute:inference"));
            form.Add(new("granted_scope", "offline_access"));
            form.Add(new("decision", "accept"));
            Assert.Equal(HttpStatusCode.Redirect, (await browser.PostFormAsync("connect/verify", form)).StatusCode);
        }
        clock.Advance(device.Interval);
        var tokens = await polling.WaitAsync(Timeout);
        Assert.NotNull(tokens.RefreshToken);

        using var lattice = Lattice(new OAuthTokenProvider(oauth, tokens, clock), clock);
        Assert.Equal("You said: from a CLI", (await lattice.GetChatClient("lovelace:chat").GetResponseAsync("from a CLI")).Text);
    }

    [Fact]
    public async Task A_device_code_the_user_declines_is_a_reauthorize_signal()
    {
        var clock = new WatchedClock();
        using var oauth = OAuth(gateway.A.PublicClientId, clock: clock);
        var device = await oauth.StartDeviceAuthorizationAsync(["lattice:compute:inference"]);
        using (var browser = gateway.NewBrowser())
        {
            await browser.SignInAsync(gateway.A.Email, OAuthGateway.Password);
            var page = await browser.GetAsync("connect/verify?user_code=" + Uri.EscapeDataString(device.UserCode));
            var form = OAuthGateway.Browser.HiddenFields(await page.Content.ReadAsStringAsync());
            form.Add(new("decision", "deny"));
            await browser.PostFormAsync("connect/verify", form);
        }
        var polling = oauth.WaitForDeviceTokensAsync(device);
        await clock.ElapseNextWaitAsync();
        var denied = await Assert.ThrowsAsync<AuthorizationDeniedException>(() => polling.WaitAsync(Timeout));
        Assert.IsAssignableFrom<ReauthorizeException>(denied);
    }

    [Fact]
    public async Task An_access_token_near_its_expiry_is_refreshed_before_the_call_and_the_new_tokens_are_handed_out()
    {
        var clock = new WatchedClock();
        var (tokens, oauth) = await SignInAsync(clock);
        using (oauth)
        {
            var provider = new OAuthTokenProvider(oauth, tokens, clock);
            OAuthTokens? handedOut = null;
            provider.Refreshed += t => handedOut = t;
            using var lattice = Lattice(provider, clock);
            var chat = lattice.GetChatClient("lovelace:chat");
            Assert.Equal("You said: before", (await chat.GetResponseAsync("before")).Text);
            Assert.Null(handedOut);

            clock.Advance(tokens.ExpiresAt - clock.GetUtcNow() - TimeSpan.FromSeconds(30)); // inside the one-minute margin
            Assert.Equal("You said: after", (await chat.GetResponseAsync("after")).Text);
            Assert.NotNull(handedOut);
            Assert.NotEqual(tokens.AccessToken, handedOut.AccessToken);
            Assert.NotEqual(tokens.RefreshToken, handedOut.RefreshToken);
            Assert.Equal(handedOut, provider.Tokens);
        }
    }

    [Fact]
    public async Task A_revoked_grant_surfaces_as_a_reauthorize_exception_with_the_request_id()
    {
        var (tokens, oauth) = await SignInAsync();
        using (oauth)
        {
            var provider = new OAuthTokenProvider(oauth, tokens);
            using var lattice = Lattice(provider);
            var chat = lattice.GetChatClient("lovelace:chat");
            Assert.Equal("You said: granted", (await chat.GetResponseAsync("granted")).Text);

            var grant = CodeFlow.Payload(tokens.AccessToken)["oi_au_id"]!.GetValue<string>();
            await OAuthGateway.PostAsync(gateway.Client(gateway.A.Key), $"admin/v1/grants/{grant}/revoke", new JsonObject());

            // The gateway says revoked_grant; the provider tries its refresh token once, which is refused too.
            var revoked = await Assert.ThrowsAsync<RevokedGrantException>(() => chat.GetResponseAsync("revoked"));
            Assert.IsAssignableFrom<ReauthorizeException>(revoked);
            Assert.Equal(HttpStatusCode.Unauthorized, revoked.StatusCode);
            Assert.StartsWith("req_", revoked.RequestId);
            Assert.IsType<InvalidGrantException>(revoked.InnerException);

            // Without a refresh token the gateway's answer arrives as it is.
            using var bare = Lattice(new OAuthTokenProvider(oauth, tokens with { RefreshToken = null }));
            await Assert.ThrowsAsync<RevokedGrantException>(() => bare.GetChatClient("lovelace:chat").GetResponseAsync("revoked"));
            await Assert.ThrowsAsync<InvalidGrantException>(() => oauth.RefreshAsync(tokens.RefreshToken!));
        }
    }
}
