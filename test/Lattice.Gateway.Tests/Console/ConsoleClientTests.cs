using System.Net;
using System.Text.Json.Nodes;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Console;
using Lattice.Gateway.Tests.Identity;
using Lattice.Gateway.Tests.Metering;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Console;

/// <summary>
/// The console's OAuth client and what its token may do: the page signs in like any app (code + PKCE at
/// <c>/connect/authorize</c>), asks no consent of a person with one workspace, gets <c>lattice:workspace:admin</c> only in
/// a workspace the person owns, and with it sees and manages that workspace — never another.
/// </summary>
[Trait("Category", "Console")]
public sealed class ConsoleClientTests(OAuthGateway gateway) : IClassFixture<OAuthGateway>
{
    private sealed record Person(string WorkspaceId, string UserId, string Email);

    /// <summary>A new workspace with one person in it, owner or member, and the workspace's own developer key.</summary>
    private async Task<(Person Person, string Key)> NewWorkspaceAsync(string role)
    {
        var ws = (await OAuthGateway.PostAsync(gateway.Admin, "admin/v1/workspaces", new JsonObject { ["name"] = "console " + role }))["id"]!.GetValue<string>();
        var email = $"console-{role}-{Guid.NewGuid():N}@example.test";
        var user = (await OAuthGateway.PostAsync(gateway.Admin, "admin/v1/users", new JsonObject { ["email"] = email, ["name"] = role, ["password"] = OAuthGateway.Password }))["id"]!.GetValue<string>();
        await OAuthGateway.PostAsync(gateway.Admin, $"admin/v1/workspaces/{ws}/members", new JsonObject { ["user_id"] = user, ["role"] = role });
        var key = await Credentials.KeyAsync(gateway, ws, Scopes.DeveloperDefault);
        return (new Person(ws, user, email), key);
    }

    private string CallbackUri => gateway.Origin + ConsoleClient.CallbackPath;

    private string AuthorizeUrl(string challenge, string redirectUri, IEnumerable<string>? scopes = null, string clientId = ConsoleClient.ClientId) =>
        "connect/authorize" + CodeFlow.QueryString(new Dictionary<string, string>
        {
            ["response_type"] = "code",
            ["client_id"] = clientId,
            ["redirect_uri"] = redirectUri,
            ["scope"] = string.Join(' ', scopes ?? ConsoleClient.Scopes),
            ["state"] = "console-state",
            ["code_challenge"] = challenge,
            ["code_challenge_method"] = "S256",
        });

    /// <summary>The console's sign-in as the page does it: authorize, sign in, straight back to the callback (no consent page), exchange.</summary>
    private async Task<JsonObject> SignInAsync(Person person)
    {
        var (verifier, challenge) = OAuthGateway.Pkce();
        using var browser = gateway.NewBrowser();
        var first = await browser.GetAsync(AuthorizeUrl(challenge, CallbackUri));
        Assert.Equal(HttpStatusCode.Redirect, first.StatusCode);
        var returnUrl = QueryHelpers.ParseQuery(new Uri("http://x" + first.Headers.Location!.OriginalString).Query)["returnUrl"].ToString();
        var signedIn = await browser.SignInAsync(person.Email, OAuthGateway.Password, returnUrl);
        Assert.Equal(HttpStatusCode.Redirect, signedIn.StatusCode);

        var back = await browser.GetAsync(signedIn.Headers.Location!.OriginalString.TrimStart('/'));
        Assert.True(back.StatusCode == HttpStatusCode.Redirect, $"no consent page for the console: {(int)back.StatusCode} {await back.Content.ReadAsStringAsync()}");
        var redirect = back.Headers.Location!;
        Assert.StartsWith(CallbackUri + "?", redirect.AbsoluteUri);
        var query = QueryHelpers.ParseQuery(redirect.Query);
        Assert.Equal("console-state", query["state"].ToString());

        return await CodeFlow.TokenAsync(gateway, new Dictionary<string, string>
        {
            ["grant_type"] = "authorization_code",
            ["code"] = query["code"].ToString(),
            ["redirect_uri"] = CallbackUri,
            ["client_id"] = ConsoleClient.ClientId,
            ["code_verifier"] = verifier,
        });
    }

    private static string[] ScopesOf(JsonObject tokens) => tokens["scope"]!.GetValue<string>().Split(' ').Order(StringComparer.Ordinal).ToArray();

    [Fact]
    public async Task An_owner_signs_in_without_consent_and_manages_their_workspace_and_no_other()
    {
        var (owner, _) = await NewWorkspaceAsync("owner");
        var tokens = await SignInAsync(owner);
        // Everything the console asks for but operating the gateway, which is for the operator workspace's owners.
        Assert.Equal(ConsoleClient.Scopes.Where(s => s != Scopes.Admin).Order(StringComparer.Ordinal), ScopesOf(tokens));
        Assert.Null(tokens["refresh_token"]);
        var payload = CodeFlow.Payload(tokens["access_token"]!.GetValue<string>());
        Assert.Equal(owner.WorkspaceId, payload[Lattice.Gateway.Identity.AccessTokenValidator.WorkspaceClaim]!.GetValue<string>());
        using var console = gateway.Client(tokens["access_token"]!.GetValue<string>());

        // A key created through the console works, once revoked stops, and the list shows it revoked.
        var created = await OAuthGateway.PostAsync(console, $"admin/v1/workspaces/{owner.WorkspaceId}/keys", new JsonObject { ["name"] = "from the console" });
        Assert.StartsWith("sk_", created["key"]!.GetValue<string>());
        using (var withKey = gateway.Client(created["key"]!.GetValue<string>()))
        {
            Assert.Equal(HttpStatusCode.OK, (await withKey.GetAsync("v1/models")).StatusCode);
            await OAuthGateway.PostAsync(console, $"admin/v1/keys/{created["id"]}/revoke", new JsonObject());
            Assert.Equal(HttpStatusCode.Unauthorized, (await withKey.GetAsync("v1/models")).StatusCode);
        }
        var listed = JsonNode.Parse(await console.GetStringAsync($"admin/v1/workspaces/{owner.WorkspaceId}/keys"))!["data"]!.AsArray();
        Assert.NotNull(Assert.Single(listed, k => k!["id"]!.GetValue<string>() == created["id"]!.GetValue<string>())!["revoked_at"]);

        // Another workspace's keys, members and key revocation are as if they did not exist.
        foreach (var (method, path) in new[]
        {
            ("GET", $"admin/v1/workspaces/{gateway.B.WorkspaceId}/keys"),
            ("POST", $"admin/v1/workspaces/{gateway.B.WorkspaceId}/keys"),
            ("GET", $"admin/v1/workspaces/{gateway.B.WorkspaceId}/members"),
        })
        {
            var (status, body) = await Credentials.SendAsync(console, method, path);
            Assert.True(status == HttpStatusCode.NotFound, $"{method} {path}: {(int)status} {body}");
        }
        var bKeys = JsonNode.Parse(await gateway.Admin.GetStringAsync($"admin/v1/workspaces/{gateway.B.WorkspaceId}/keys"))!["data"]!.AsArray();
        var bKey = bKeys[0]!["id"]!.GetValue<string>();
        var (revokeStatus, _) = await Credentials.SendAsync(console, "POST", $"admin/v1/keys/{bKey}/revoke");
        Assert.Equal(HttpStatusCode.NotFound, revokeStatus);
        // Operator routes stay the operator's.
        var (workspaces, workspacesBody) = await Credentials.SendAsync(console, "GET", "admin/v1/workspaces");
        Assert.Equal(HttpStatusCode.Forbidden, workspaces);
        Assert.Equal("insufficient_scopes", Credentials.Error(workspacesBody)["code"]!.GetValue<string>());
    }

    [Fact]
    public async Task An_owners_console_sees_the_whole_workspaces_usage_and_a_members_only_its_own()
    {
        var (owner, ownerKey) = await NewWorkspaceAsync("owner");
        string requestId;
        using (var withKey = gateway.Client(ownerKey))
        {
            using var response = await withKey.PostAsync("v1/chat/completions", System.Net.Http.Json.JsonContent.Create(new JsonObject
            {
                ["model"] = "lovelace:chat",
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
            }));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            requestId = response.Headers.GetValues("x-request-id").Single();
        }
        await Ledger.RecordAsync(gateway.Services, requestId);
        // A member of the same workspace, through the console, and the owner.
        var member = await AddPersonAsync(owner.WorkspaceId, "member");
        var memberTokens = await SignInAsync(member);
        Assert.DoesNotContain(Scopes.WorkspaceAdmin, ScopesOf(memberTokens));
        var ownerTokens = await SignInAsync(owner);

        using var ownerConsole = gateway.Client(ownerTokens["access_token"]!.GetValue<string>());
        var seen = JsonNode.Parse(await ownerConsole.GetStringAsync("v1/usage/requests?limit=100"))!["data"]!.AsArray();
        Assert.Contains(seen, r => r!["request_id"]!.GetValue<string>() == requestId);
        var start = DateTimeOffset.UtcNow.ToUnixTimeSeconds() / 86400 * 86400;
        var byStatus = JsonNode.Parse(await ownerConsole.GetStringAsync($"v1/usage?start_time={start}&group_by=status&limit=1"))!["data"]![0]!["results"]!.AsArray();
        Assert.Equal(1, Assert.Single(byStatus, r => r!["status"]!.GetValue<string>() == "ok")!["num_model_requests"]!.GetValue<long>());

        using var memberConsole = gateway.Client(memberTokens["access_token"]!.GetValue<string>());
        var memberSees = JsonNode.Parse(await memberConsole.GetStringAsync("v1/usage/requests?limit=100"))!["data"]!.AsArray();
        Assert.Empty(memberSees);
        var memberTotals = JsonNode.Parse(await memberConsole.GetStringAsync($"v1/usage?start_time={start}&limit=1"))!["data"]![0]!["results"]!.AsArray();
        Assert.Empty(memberTotals);
        var (keysStatus, keysBody) = await Credentials.SendAsync(memberConsole, "GET", $"admin/v1/workspaces/{owner.WorkspaceId}/keys");
        Assert.Equal(HttpStatusCode.Forbidden, keysStatus);
        Assert.Equal("insufficient_scopes", Credentials.Error(keysBody)["code"]!.GetValue<string>());
    }

    [Fact]
    public async Task Only_an_owner_of_the_operator_workspace_gets_the_operators_admin_api_and_loses_it_when_demoted()
    {
        const string operatorWorkspace = Lattice.Gateway.Persistence.DatabaseInitializer.OperatorWorkspaceId;
        var member = await AddPersonAsync(operatorWorkspace, "member");
        var memberTokens = await SignInAsync(member);
        Assert.DoesNotContain(Scopes.Admin, ScopesOf(memberTokens));
        Assert.DoesNotContain(Scopes.WorkspaceAdmin, ScopesOf(memberTokens));
        using (var memberConsole = gateway.Client(memberTokens["access_token"]!.GetValue<string>()))
        {
            var (status, body) = await Credentials.SendAsync(memberConsole, "GET", "admin/v1/models");
            Assert.Equal(HttpStatusCode.Forbidden, status);
            Assert.Equal("insufficient_scopes", Credentials.Error(body)["code"]!.GetValue<string>());
        }

        var owner = await AddPersonAsync(operatorWorkspace, "owner");
        var tokens = await SignInAsync(owner);
        Assert.Equal(ConsoleClient.Scopes.Order(StringComparer.Ordinal), ScopesOf(tokens));
        using var console = gateway.Client(tokens["access_token"]!.GetValue<string>());
        var models = JsonNode.Parse(await console.GetStringAsync("admin/v1/models"))!["data"]!.AsArray();
        Assert.Contains(models, m => m!["id"]!.GetValue<string>() == "lovelace:chat");
        var taskClasses = JsonNode.Parse(await console.GetStringAsync("admin/v1/task-classes"))!["data"]!.AsArray();
        Assert.Contains(taskClasses, t => t!["name"]!.GetValue<string>() == "chat.completions");

        // Made a member, the person's next token no longer operates anything, whatever the grant says.
        using (var demote = new HttpRequestMessage(HttpMethod.Delete, $"admin/v1/workspaces/{operatorWorkspace}/members/{owner.UserId}"))
        {
            Assert.Equal(HttpStatusCode.NoContent, (await gateway.Admin.SendAsync(demote)).StatusCode);
        }
        await OAuthGateway.PostAsync(gateway.Admin, $"admin/v1/workspaces/{operatorWorkspace}/members", new JsonObject { ["user_id"] = owner.UserId, ["role"] = "member" });
        var again = await SignInAsync(owner);
        Assert.DoesNotContain(Scopes.Admin, ScopesOf(again));
    }

    [Fact]
    public async Task An_owner_of_another_workspace_never_operates_the_gateway()
    {
        var (owner, _) = await NewWorkspaceAsync("owner");
        var tokens = await SignInAsync(owner);
        Assert.DoesNotContain(Scopes.Admin, ScopesOf(tokens));
        using var console = gateway.Client(tokens["access_token"]!.GetValue<string>());
        foreach (var (method, path) in new[] { ("GET", "admin/v1/models"), ("POST", "admin/v1/models"), ("GET", "admin/v1/task-classes"), ("POST", "admin/v1/task-classes") })
        {
            var (status, body) = await Credentials.SendAsync(console, method, path);
            Assert.True(status == HttpStatusCode.Forbidden, $"{method} {path}: {(int)status} {body}");
            Assert.Equal("insufficient_scopes", Credentials.Error(body)["code"]!.GetValue<string>());
        }
    }

    [Fact]
    public async Task An_owners_console_reads_the_workspaces_invoices_and_a_members_is_refused()
    {
        var (owner, ownerKey) = await NewWorkspaceAsync("owner");
        using var withKey = gateway.Client(ownerKey);
        var byKey = JsonNode.Parse(await withKey.GetStringAsync("v1/invoices"))!["data"]!.AsArray();
        var current = byKey[0]!["id"]!.GetValue<string>();

        var ownerTokens = await SignInAsync(owner);
        using var ownerConsole = gateway.Client(ownerTokens["access_token"]!.GetValue<string>());
        Assert.Equal(byKey.ToJsonString(), JsonNode.Parse(await ownerConsole.GetStringAsync("v1/invoices"))!["data"]!.ToJsonString());
        Assert.Equal(await withKey.GetStringAsync($"v1/invoices/{current}"), await ownerConsole.GetStringAsync($"v1/invoices/{current}"));
        using (var csv = await ownerConsole.GetAsync($"v1/invoices/{current}/lines.csv"))
        {
            Assert.Equal(HttpStatusCode.OK, csv.StatusCode);
            Assert.StartsWith("model,task,requests,", await csv.Content.ReadAsStringAsync());
        }
        var (otherStatus, _) = await Credentials.SendAsync(ownerConsole, "GET", "v1/invoices/" + current[..^12] + "000000000000");
        Assert.Equal(HttpStatusCode.NotFound, otherStatus);

        var member = await AddPersonAsync(owner.WorkspaceId, "member");
        using var memberConsole = gateway.Client((await SignInAsync(member))["access_token"]!.GetValue<string>());
        foreach (var path in new[] { "v1/invoices", $"v1/invoices/{current}", $"v1/invoices/{current}/lines.csv" })
        {
            var (status, body) = await Credentials.SendAsync(memberConsole, "GET", path);
            Assert.True(status == HttpStatusCode.Forbidden, $"{path}: {(int)status} {body}");
            Assert.Equal("insufficient_scopes", Credentials.Error(body)["code"]!.GetValue<string>());
        }
    }

    private async Task<Person> AddPersonAsync(string workspaceId, string role)
    {
        var email = $"console-{role}-{Guid.NewGuid():N}@example.test";
        var user = (await OAuthGateway.PostAsync(gateway.Admin, "admin/v1/users", new JsonObject { ["email"] = email, ["name"] = role, ["password"] = OAuthGateway.Password }))["id"]!.GetValue<string>();
        await OAuthGateway.PostAsync(gateway.Admin, $"admin/v1/workspaces/{workspaceId}/members", new JsonObject { ["user_id"] = user, ["role"] = role });
        return new Person(workspaceId, user, email);
    }

    [Fact]
    public async Task A_sign_in_link_starts_a_session_once_and_the_console_then_signs_in_without_a_form()
    {
        var (owner, _) = await NewWorkspaceAsync("owner");
        var link = gateway.Services.GetRequiredService<Lattice.Gateway.Identity.SignInLinks>().Issue(owner.UserId);
        Assert.StartsWith("/account/login/link/lsl_", link);
        using var browser = gateway.NewBrowser();
        var opened = await browser.GetAsync(link.TrimStart('/'));
        Assert.Equal(HttpStatusCode.Redirect, opened.StatusCode);
        Assert.Equal(ConsoleClient.BasePath, opened.Headers.Location!.OriginalString);
        Assert.Equal("no-store", opened.Headers.CacheControl!.ToString());

        // Signed in: the console's authorization request comes straight back with a code.
        var (_, challenge) = OAuthGateway.Pkce();
        var authorized = await browser.GetAsync(AuthorizeUrl(challenge, CallbackUri));
        Assert.Equal(HttpStatusCode.Redirect, authorized.StatusCode);
        Assert.StartsWith(CallbackUri + "?code=", authorized.Headers.Location!.AbsoluteUri);

        // Used once; in another browser it signs nobody in.
        using var other = gateway.NewBrowser();
        var again = await other.GetAsync(link.TrimStart('/'));
        Assert.Equal(HttpStatusCode.NotFound, again.StatusCode);
        Assert.Contains("used already", await again.Content.ReadAsStringAsync());
        var stillAnonymous = await other.GetAsync(AuthorizeUrl(challenge, CallbackUri));
        Assert.StartsWith("/account/login?", stillAnonymous.Headers.Location!.OriginalString);
    }

    [Fact]
    public async Task The_console_client_takes_only_the_gateways_own_callback()
    {
        var (owner, _) = await NewWorkspaceAsync("owner");
        using var browser = gateway.NewBrowser();
        await browser.SignInAsync(owner.Email, OAuthGateway.Password);
        foreach (var elsewhere in new[] { OAuthGateway.RedirectUri, "https://evil.example/console/callback", gateway.Origin + "/console/callback/../x" })
        {
            var answer = await browser.GetAsync(AuthorizeUrl(OAuthGateway.Pkce().Challenge, elsewhere));
            Assert.True(answer.StatusCode == HttpStatusCode.BadRequest, $"{elsewhere}: {(int)answer.StatusCode} {answer.Headers.Location}");
        }
    }

    [Fact]
    public async Task No_other_app_can_ask_for_workspace_admin()
    {
        // Not at registration…
        using var workspaceAdmin = gateway.Client(gateway.A.Key);
        var (status, body) = await Credentials.SendAsync(workspaceAdmin, "POST", $"admin/v1/workspaces/{gateway.A.WorkspaceId}/apps", new JsonObject
        {
            ["name"] = "wants admin",
            ["redirect_uris"] = new JsonArray(OAuthGateway.RedirectUri),
            ["scopes"] = new JsonArray(Scopes.WorkspaceAdmin),
        });
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("scopes", Credentials.Error(body)["param"]!.GetValue<string>());

        // …nor when asking for a token: OpenIddict refuses the request outright, no code is issued.
        using var browser = gateway.NewBrowser();
        await browser.SignInAsync(gateway.A.Email, OAuthGateway.Password);
        var answer = await browser.GetAsync(AuthorizeUrl(OAuthGateway.Pkce().Challenge, OAuthGateway.RedirectUri,
            [Scopes.Inference, Scopes.WorkspaceAdmin], gateway.A.PublicClientId));
        var text = await answer.Content.ReadAsStringAsync();
        Assert.True(answer.StatusCode == HttpStatusCode.BadRequest, $"{(int)answer.StatusCode} {answer.Headers.Location} {text}");
        Assert.Contains("scope", text, StringComparison.OrdinalIgnoreCase);
        Assert.Null(answer.Headers.Location);
    }

    [Fact]
    public async Task The_page_is_served_from_the_gateway_with_a_policy_that_runs_only_its_own_script()
    {
        using var anonymous = gateway.Client(null);
        foreach (var path in new[] { "console", "console/keys", "console/callback?code=x&state=y" })
        {
            using var response = await anonymous.GetAsync(path);
            var html = await response.Content.ReadAsStringAsync();
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("text/html; charset=utf-8", response.Content.Headers.ContentType!.ToString());
            Assert.Contains("<script src=\"/console/console-workspace.js\" defer></script>\n  <script src=\"/console/console-operator.js\" defer></script>\n  <script src=\"/console/console.js\" defer></script>", html);
            var policy = response.Headers.GetValues("Content-Security-Policy").Single();
            Assert.Contains("script-src 'self';", policy);
            Assert.Contains("connect-src 'self';", policy);
            Assert.Contains("frame-ancestors 'none'", policy);
            Assert.Equal("no-referrer", response.Headers.GetValues("Referrer-Policy").Single());
        }
        using (var script = await anonymous.GetAsync("console/console.js"))
        {
            Assert.Equal("text/javascript; charset=utf-8", script.Content.Headers.ContentType!.ToString());
            var js = await script.Content.ReadAsStringAsync();
            Assert.Contains($"const CLIENT_ID = '{ConsoleClient.ClientId}';", js);
            // The page asks for exactly what its client may have.
            Assert.All(ConsoleClient.Scopes, scope => Assert.Contains($"'{scope}'", js));
        }
        using (var operatorScript = await anonymous.GetAsync("console/console-operator.js"))
        {
            Assert.Equal("text/javascript; charset=utf-8", operatorScript.Content.Headers.ContentType!.ToString());
            Assert.Contains("function catalog()", await operatorScript.Content.ReadAsStringAsync());
        }
        using (var script = await anonymous.GetAsync("console/console-workspace.js"))
        {
            Assert.Equal(HttpStatusCode.OK, script.StatusCode);
            Assert.Equal("text/javascript; charset=utf-8", script.Content.Headers.ContentType!.ToString());
            Assert.Contains("async function workspaceMembers()", await script.Content.ReadAsStringAsync());
        }
        using (var missing = await anonymous.GetAsync("console/other.js"))
        {
            Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        }
    }
}
