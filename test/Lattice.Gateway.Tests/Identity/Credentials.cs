using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.WebUtilities;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>Credentials with exactly the scopes a test names: developer keys from the admin API, access tokens from the code flow.</summary>
public static class Credentials
{
    /// <summary>A developer key of <paramref name="workspaceId"/>, created by the operator, with exactly <paramref name="scopes"/>.</summary>
    public static async Task<string> KeyAsync(OAuthGateway gateway, string workspaceId, IEnumerable<string> scopes)
    {
        var created = await OAuthGateway.PostAsync(gateway.Admin, $"admin/v1/workspaces/{workspaceId}/keys", new JsonObject
        {
            ["name"] = "scoped",
            ["scopes"] = new JsonArray([.. scopes.Select(s => (JsonNode)s)]),
        });
        return created["key"]!.GetValue<string>();
    }

    /// <summary>
    /// An access token <paramref name="user"/> granted <paramref name="clientId"/> with exactly <paramref name="scopes"/>.
    /// Always asks for consent again (<c>prompt=consent</c>): otherwise an earlier, wider grant is silently reused
    /// and there would be no consent page to fill in.
    /// </summary>
    public static async Task<string> TokenAsync(OAuthGateway gateway, OAuthGateway.Tenant user, string clientId, string? clientSecret, IEnumerable<string> scopes)
    {
        var requested = scopes.ToArray();
        var (verifier, challenge) = OAuthGateway.Pkce();
        using var browser = gateway.NewBrowser();
        var first = await browser.GetAsync(CodeFlow.AuthorizeUrl(clientId, requested, challenge, prompt: "consent"));
        Assert.Equal(HttpStatusCode.Redirect, first.StatusCode);
        var login = first.Headers.Location!.OriginalString;
        var returnUrl = QueryHelpers.ParseQuery(new Uri("http://x" + login).Query)["returnUrl"].ToString();
        var signedIn = await browser.SignInAsync(user.Email, OAuthGateway.Password, returnUrl);
        Assert.Equal(HttpStatusCode.Redirect, signedIn.StatusCode);
        var consent = await browser.GetAsync(signedIn.Headers.Location!.OriginalString.TrimStart('/'));
        var html = await consent.Content.ReadAsStringAsync();
        Assert.True(consent.StatusCode == HttpStatusCode.OK, html);
        var form = OAuthGateway.Browser.HiddenFields(html);
        form.AddRange(requested.Select(s => new KeyValuePair<string, string>("granted_scope", s)));
        form.Add(new("decision", "accept"));
        var decided = await browser.PostFormAsync("connect/authorize", form);
        Assert.True(decided.StatusCode == HttpStatusCode.Redirect, await decided.Content.ReadAsStringAsync());
        var code = QueryHelpers.ParseQuery(decided.Headers.Location!.Query)["code"].ToString();
        var tokens = await CodeFlow.ExchangeAsync(gateway, clientId, clientSecret, code, verifier);
        return tokens["access_token"]!.GetValue<string>();
    }

    /// <summary>An access token of the tenant's own user for the tenant's confidential app.</summary>
    public static Task<string> TokenAsync(OAuthGateway gateway, OAuthGateway.Tenant tenant, IEnumerable<string> scopes) =>
        TokenAsync(gateway, tenant, tenant.ClientId, tenant.ClientSecret, scopes);

    /// <summary>Sends a request the way the matrix tests do: a JSON body <c>{}</c> unless one is given, for methods that carry one.</summary>
    public static async Task<(HttpStatusCode Status, string Body)> SendAsync(HttpClient http, string method, string path, JsonNode? body = null)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        if (body is not null || method is "POST" or "PUT" or "PATCH")
        {
            request.Content = JsonContent.Create(body ?? new JsonObject());
        }
        using var response = await http.SendAsync(request);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>The <c>error</c> object of an OpenAI error envelope.</summary>
    public static JsonObject Error(string body)
    {
        var error = JsonNode.Parse(body)?["error"] as JsonObject;
        Assert.True(error is not null, "Not an OpenAI error envelope: " + body);
        return error;
    }
}
