using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>Refresh rotation, revocation (RFC 7009 and grants), introspection, device flow, consent choices.</summary>
public sealed class OAuthLifecycleTests(OAuthGateway gateway) : IClassFixture<OAuthGateway>
{
    private static readonly string[] InferenceOffline = ["lattice:compute:inference", "lattice:compute:streaming", "offline_access"];

    private OAuthGateway.Tenant A => gateway.A;

    private Task<JsonObject> TokensAsync(string[]? scopes = null, string[]? grant = null) =>
        CodeFlow.RunAsync(gateway, A, A.ClientId, A.ClientSecret, scopes ?? InferenceOffline, grant);

    private static JsonObject Chat(string model = "lovelace:chat", bool stream = false) => new()
    {
        ["model"] = model,
        ["stream"] = stream,
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hello" }),
    };

    private async Task<(HttpStatusCode Status, JsonNode? Body)> ChatAsync(string credential, string model = "lovelace:chat")
    {
        using var api = gateway.Client(credential);
        using var response = await api.PostAsJsonAsync("v1/chat/completions", Chat(model));
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync()));
    }

    private static void AssertError(JsonNode? body, string code, string? messagePart = null)
    {
        Assert.Equal(code, body!["error"]!["code"]!.GetValue<string>());
        if (messagePart is not null)
        {
            Assert.Contains(messagePart, body["error"]!["message"]!.GetValue<string>());
        }
    }

    private Dictionary<string, string> ClientForm(Dictionary<string, string> form)
    {
        form["client_id"] = A.ClientId;
        form["client_secret"] = A.ClientSecret;
        return form;
    }

    private async Task<HttpResponseMessage> PostFormAsync(string path, Dictionary<string, string> form)
    {
        using var http = gateway.Client(null);
        return await http.PostAsync(path, new FormUrlEncodedContent(form));
    }

    [Fact]
    public async Task Refresh_rotates_and_a_spent_refresh_token_is_refused()
    {
        var tokens = await TokensAsync();
        var refresh = tokens["refresh_token"]!.GetValue<string>();
        var next = await CodeFlow.TokenAsync(gateway, ClientForm(new() { ["grant_type"] = "refresh_token", ["refresh_token"] = refresh }));
        var rotated = next["refresh_token"]!.GetValue<string>();
        Assert.NotEqual(refresh, rotated);
        Assert.Equal(HttpStatusCode.OK, (await ChatAsync(next["access_token"]!.GetValue<string>())).Status);
        Assert.Equal(CodeFlow.Payload(tokens["access_token"]!.GetValue<string>())["oi_au_id"]!.GetValue<string>(),
            CodeFlow.Payload(next["access_token"]!.GetValue<string>())["oi_au_id"]!.GetValue<string>());

        var reused = await CodeFlow.TokenAsync(gateway, ClientForm(new() { ["grant_type"] = "refresh_token", ["refresh_token"] = refresh }), HttpStatusCode.BadRequest);
        Assert.Equal("invalid_grant", reused["error"]!.GetValue<string>());
    }

    [Fact]
    public async Task Revoking_an_access_token_bites_on_the_next_request_and_introspection_agrees()
    {
        var access = (await TokensAsync())["access_token"]!.GetValue<string>();
        Assert.Equal(HttpStatusCode.OK, (await ChatAsync(access)).Status);

        using (var introspected = await PostFormAsync("connect/introspect", ClientForm(new() { ["token"] = access })))
        {
            var body = JsonNode.Parse(await introspected.Content.ReadAsStringAsync())!;
            Assert.True(body["active"]!.GetValue<bool>(), body.ToJsonString());
            Assert.Equal(A.UserId, body["sub"]!.GetValue<string>());
            Assert.Equal(A.ClientId, body["client_id"]!.GetValue<string>());
            Assert.Equal("lattice", body["aud"]!.GetValue<string>());
        }

        using (var revoked = await PostFormAsync("connect/revoke", ClientForm(new() { ["token"] = access, ["token_type_hint"] = "access_token" })))
        {
            Assert.Equal(HttpStatusCode.OK, revoked.StatusCode);
        }
        var (status, error) = await ChatAsync(access);
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        AssertError(error, "revoked_grant");

        using var after = await PostFormAsync("connect/introspect", ClientForm(new() { ["token"] = access }));
        Assert.False(JsonNode.Parse(await after.Content.ReadAsStringAsync())!["active"]!.GetValue<bool>());
    }

    [Fact]
    public async Task Revoking_the_refresh_token_revokes_the_grant_and_its_access_tokens()
    {
        var tokens = await TokensAsync();
        var access = tokens["access_token"]!.GetValue<string>();
        using (var revoked = await PostFormAsync("connect/revoke", ClientForm(new() { ["token"] = tokens["refresh_token"]!.GetValue<string>() })))
        {
            Assert.Equal(HttpStatusCode.OK, revoked.StatusCode);
        }
        var (status, error) = await ChatAsync(access);
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        AssertError(error, "revoked_grant");
    }

    [Fact]
    public async Task Revoking_a_grant_mid_stream_lets_the_stream_finish_and_fails_the_next_request()
    {
        var access = (await TokensAsync())["access_token"]!.GetValue<string>();
        var grantId = CodeFlow.Payload(access)["oi_au_id"]!.GetValue<string>();
        using var api = gateway.Client(access);
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = JsonContent.Create(Chat("lovelace:drip", stream: true)) };
        using var response = await api.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var first = await reader.ReadLineAsync();
        Assert.StartsWith("data: ", first);

        await OAuthGateway.PostAsync(gateway.Client(A.Key), $"admin/v1/grants/{grantId}/revoke", new JsonObject());
        var rest = await reader.ReadToEndAsync();
        Assert.EndsWith("data: [DONE]\n\n", rest);

        var (status, error) = await ChatAsync(access);
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        AssertError(error, "revoked_grant", "revoked");
    }

    [Fact]
    public async Task Removing_a_member_revokes_what_they_granted_in_that_workspace()
    {
        var tenant = await gateway.NewTenantAsync("leaver");
        var tokens = await CodeFlow.RunAsync(gateway, tenant, tenant.ClientId, tenant.ClientSecret, InferenceOffline);
        var access = tokens["access_token"]!.GetValue<string>();
        Assert.Equal(HttpStatusCode.OK, (await ChatAsync(access)).Status);

        using var admin = gateway.Client(tenant.Key);
        using var removed = await admin.DeleteAsync($"admin/v1/workspaces/{tenant.WorkspaceId}/members/{tenant.UserId}");
        Assert.Equal(HttpStatusCode.NoContent, removed.StatusCode);

        var (status, error) = await ChatAsync(access);
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        AssertError(error, "revoked_grant");
        var refreshed = await CodeFlow.TokenAsync(gateway, new()
        {
            ["grant_type"] = "refresh_token",
            ["refresh_token"] = tokens["refresh_token"]!.GetValue<string>(),
            ["client_id"] = tenant.ClientId,
            ["client_secret"] = tenant.ClientSecret,
        }, HttpStatusCode.BadRequest);
        Assert.Equal("invalid_grant", refreshed["error"]!.GetValue<string>());
    }

    [Fact]
    public async Task Granting_fewer_scopes_yields_a_token_with_only_those()
    {
        string[] requested = ["lattice:compute:inference", "lattice:compute:catalog:read", "lattice:compute:streaming"];
        var tokens = await TokensAsync(requested, grant: ["lattice:compute:inference"]);
        Assert.Equal("lattice:compute:inference", tokens["scope"]!.GetValue<string>());
        var access = tokens["access_token"]!.GetValue<string>();
        Assert.Equal("lattice:compute:inference", CodeFlow.Payload(access)["scope"]!.GetValue<string>());

        // Inference alone streams over SSE (the streaming scope is for realtime links).
        using var api = gateway.Client(access);
        using var stream = await api.PostAsJsonAsync("v1/chat/completions", Chat(stream: true));
        var events = await stream.Content.ReadAsStringAsync();
        Assert.True(stream.StatusCode == HttpStatusCode.OK, events);
        Assert.EndsWith("data: [DONE]\n\n", events, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await ChatAsync(access)).Status);
    }

    [Fact]
    public async Task Denying_consent_redirects_with_access_denied()
    {
        var (_, challenge) = OAuthGateway.Pkce();
        using var browser = gateway.NewBrowser();
        var login = await browser.GetAsync(CodeFlow.AuthorizeUrl(A.PublicClientId, ["lattice:compute:inference"], challenge, "s1"));
        var returnUrl = Microsoft.AspNetCore.WebUtilities.QueryHelpers.ParseQuery(new Uri("http://x" + login.Headers.Location!.OriginalString).Query)["returnUrl"].ToString();
        var signedIn = await browser.SignInAsync(A.Email, OAuthGateway.Password, returnUrl);
        var consent = await (await browser.GetAsync(signedIn.Headers.Location!.OriginalString.TrimStart('/'))).Content.ReadAsStringAsync();
        Assert.Contains("Public app of a", consent);
        var form = OAuthGateway.Browser.HiddenFields(consent);
        form.Add(new("decision", "deny"));
        var denied = await browser.PostFormAsync("connect/authorize", form);
        Assert.Equal(HttpStatusCode.Redirect, denied.StatusCode);
        var query = Microsoft.AspNetCore.WebUtilities.QueryHelpers.ParseQuery(denied.Headers.Location!.Query);
        Assert.Equal("access_denied", query["error"].ToString());
        Assert.Equal("s1", query["state"].ToString());
        Assert.False(query.ContainsKey("code"));
    }

    [Fact]
    public async Task Plain_PKCE_and_missing_PKCE_are_refused()
    {
        using var browser = gateway.NewBrowser();
        var plain = await browser.GetAsync("connect/authorize" + CodeFlow.QueryString(new()
        {
            ["response_type"] = "code", ["client_id"] = A.PublicClientId, ["redirect_uri"] = OAuthGateway.RedirectUri,
            ["scope"] = "lattice:compute:inference", ["code_challenge"] = new string('a', 43), ["code_challenge_method"] = "plain", ["state"] = "p",
        }));
        // An unsupported method is refused on the spot (400), without a redirect.
        Assert.Equal(HttpStatusCode.BadRequest, plain.StatusCode);
        Assert.Contains("The specified 'code_challenge_method' is not supported.", await plain.Content.ReadAsStringAsync());

        var missing = await browser.GetAsync("connect/authorize" + CodeFlow.QueryString(new()
        {
            ["response_type"] = "code", ["client_id"] = A.PublicClientId, ["redirect_uri"] = OAuthGateway.RedirectUri,
            ["scope"] = "lattice:compute:inference", ["state"] = "p",
        }));
        var text = await missing.Content.ReadAsStringAsync();
        Assert.True(missing.StatusCode == HttpStatusCode.Redirect ? missing.Headers.Location!.Query.Contains("error=invalid_request") : text.Contains("code_challenge"),
            $"{missing.StatusCode} {missing.Headers.Location} {text}");
    }

    [Fact]
    public async Task Device_flow_signs_a_device_in_after_the_user_approves()
    {
        using var http = gateway.Client(null);
        using var device = await http.PostAsync("connect/device", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["client_id"] = A.PublicClientId,
            ["scope"] = "lattice:compute:inference offline_access",
        }));
        var started = JsonNode.Parse(await device.Content.ReadAsStringAsync())!;
        Assert.Equal(HttpStatusCode.OK, device.StatusCode);
        var deviceCode = started["device_code"]!.GetValue<string>();
        var userCode = started["user_code"]!.GetValue<string>();
        Assert.Equal(gateway.Origin + "/connect/verify", started["verification_uri"]!.GetValue<string>());

        var poll = new Dictionary<string, string>
        {
            ["grant_type"] = "urn:ietf:params:oauth:grant-type:device_code",
            ["device_code"] = deviceCode,
            ["client_id"] = A.PublicClientId,
        };
        var pending = await CodeFlow.TokenAsync(gateway, poll, HttpStatusCode.BadRequest);
        Assert.Equal("authorization_pending", pending["error"]!.GetValue<string>());

        using var browser = gateway.NewBrowser();
        await browser.SignInAsync(A.Email, OAuthGateway.Password);
        var page = await browser.GetAsync("connect/verify?user_code=" + Uri.EscapeDataString(userCode));
        var html = await page.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Contains("Public app of a", html);
        var form = OAuthGateway.Browser.HiddenFields(html);
        form.Add(new("granted_scope", "lattice:compute:inference"));
        form.Add(new("granted_scope", "offline_access"));
        form.Add(new("decision", "accept"));
        var approved = await browser.PostFormAsync("connect/verify", form);
        Assert.Equal(HttpStatusCode.Redirect, approved.StatusCode);
        Assert.Equal("/connect/verify/done?result=allowed", approved.Headers.Location!.OriginalString);

        var tokens = await CodeFlow.TokenAsync(gateway, poll);
        var access = tokens["access_token"]!.GetValue<string>();
        Assert.NotNull(tokens["refresh_token"]);
        Assert.Equal(HttpStatusCode.OK, (await ChatAsync(access)).Status);
    }

    [Fact]
    public async Task Wrong_user_code_shows_the_form_again_with_an_error()
    {
        using var browser = gateway.NewBrowser();
        await browser.SignInAsync(A.Email, OAuthGateway.Password);
        var page = await browser.GetAsync("connect/verify?user_code=NOPE-NOPE");
        Assert.Equal(HttpStatusCode.BadRequest, page.StatusCode);
        Assert.Contains("That code is not valid or has expired.", await page.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Wrong_password_shows_the_sign_in_page_with_an_error()
    {
        using var browser = gateway.NewBrowser();
        var response = await browser.SignInAsync(A.Email, "not the password at all");
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Contains("That e-mail and password don&#39;t match.", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Marketplace_capacity_needs_the_marketplace_scope_and_no_workspace_only()
    {
        var privateToken = (await TokensAsync(["lattice:compute:inference"]))["access_token"]!.GetValue<string>();
        var (status, error) = await ChatAsync(privateToken, "lovelace:market-only");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        AssertError(error, "no_capacity", "lattice:compute:marketplace");

        var walled = (await TokensAsync(["lattice:compute:inference", "lattice:compute:marketplace", "lattice:compute:workspace_only"]))["access_token"]!.GetValue<string>();
        (status, error) = await ChatAsync(walled, "lovelace:market-only");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        AssertError(error, "no_capacity", "lattice:compute:workspace_only");

        var open = (await TokensAsync(["lattice:compute:inference", "lattice:compute:marketplace"]))["access_token"]!.GetValue<string>();
        Assert.Equal(HttpStatusCode.OK, (await ChatAsync(open, "lovelace:market-only")).Status);
    }
}
