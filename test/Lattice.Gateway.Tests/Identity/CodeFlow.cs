using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.WebUtilities;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>Drives the authorization code flow the way a browser and an app's back end would.</summary>
public static class CodeFlow
{
    /// <summary>Authorize (signing in and consenting), then exchange the code; returns the token response.</summary>
    public static async Task<JsonObject> RunAsync(OAuthGateway gateway, OAuthGateway.Tenant user, string clientId, string? clientSecret,
        string[] scopes, string[]? grant = null)
    {
        var (verifier, challenge) = OAuthGateway.Pkce();
        using var browser = gateway.NewBrowser();
        var code = await AuthorizeAsync(browser, user, clientId, scopes, challenge, grant ?? scopes);
        return await ExchangeAsync(gateway, clientId, clientSecret, code, verifier);
    }

    /// <summary>An authorization request; <paramref name="prompt"/> <c>consent</c> asks again even when a grant exists.</summary>
    public static string AuthorizeUrl(string clientId, string[] scopes, string challenge, string state = "xyz", string? prompt = "consent")
    {
        var query = new Dictionary<string, string>
        {
            ["response_type"] = "code",
            ["client_id"] = clientId,
            ["redirect_uri"] = OAuthGateway.RedirectUri,
            ["scope"] = string.Join(' ', scopes),
            ["state"] = state,
            ["code_challenge"] = challenge,
            ["code_challenge_method"] = "S256",
        };
        if (prompt is not null)
        {
            query["prompt"] = prompt;
        }
        return "connect/authorize" + QueryString(query);
    }

    public static string QueryString(Dictionary<string, string> values) =>
        Microsoft.AspNetCore.Http.QueryString.Create(values!).ToString();

    /// <summary>Returns the authorization code the redirect carried.</summary>
    public static async Task<string> AuthorizeAsync(OAuthGateway.Browser browser, OAuthGateway.Tenant user, string clientId, string[] scopes, string challenge, string[] grant)
    {
        var url = AuthorizeUrl(clientId, scopes, challenge);
        var first = await browser.GetAsync(url);
        Assert.Equal(HttpStatusCode.Redirect, first.StatusCode);
        var login = first.Headers.Location!.OriginalString;
        Assert.StartsWith("/account/login?returnUrl=", login);
        var returnUrl = QueryHelpers.ParseQuery(new Uri("http://x" + login).Query)["returnUrl"].ToString();

        var signedIn = await browser.SignInAsync(user.Email, OAuthGateway.Password, returnUrl);
        Assert.Equal(HttpStatusCode.Redirect, signedIn.StatusCode);
        var consent = await browser.GetAsync(signedIn.Headers.Location!.OriginalString.TrimStart('/'));
        var html = await consent.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, consent.StatusCode);
        var form = OAuthGateway.Browser.HiddenFields(html);
        form.AddRange(grant.Select(s => new KeyValuePair<string, string>("granted_scope", s)));
        form.Add(new("decision", "accept"));
        var decided = await browser.PostFormAsync("connect/authorize", form);
        Assert.True(decided.StatusCode == HttpStatusCode.Redirect, await decided.Content.ReadAsStringAsync());
        var redirect = decided.Headers.Location!;
        Assert.StartsWith(OAuthGateway.RedirectUri, redirect.OriginalString);
        var query = QueryHelpers.ParseQuery(redirect.Query);
        Assert.Equal("xyz", query["state"].ToString());
        return query["code"].ToString();
    }

    public static async Task<JsonObject> ExchangeAsync(OAuthGateway gateway, string clientId, string? clientSecret, string code, string verifier)
    {
        var form = new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code",
            ["code"] = code,
            ["redirect_uri"] = OAuthGateway.RedirectUri,
            ["client_id"] = clientId,
            ["code_verifier"] = verifier,
        };
        if (clientSecret is not null)
        {
            form["client_secret"] = clientSecret;
        }
        return await TokenAsync(gateway, form);
    }

    public static async Task<JsonObject> TokenAsync(OAuthGateway gateway, Dictionary<string, string> form, HttpStatusCode expected = HttpStatusCode.OK)
    {
        using var http = gateway.Client(null);
        using var response = await http.PostAsync("connect/token", new FormUrlEncodedContent(form));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"{(int)response.StatusCode}: {text}");
        return JsonNode.Parse(text)!.AsObject();
    }

    /// <summary>The JWT's payload, decoded (no signature check: the gateway does that).</summary>
    public static JsonObject Payload(string jwt) =>
        JsonNode.Parse(Encoding.UTF8.GetString(Base64UrlTextEncoder.Decode(jwt.Split('.')[1])))!.AsObject();
}
