using System.Net;
using System.Text.Json.Nodes;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>
/// Whether a user's e-mail address is known to be theirs: false for an account made from an invitation link until the
/// operator verifies it, as the operator chose for accounts they make; tokens carry it as <c>email_verified</c>.
/// </summary>
public sealed class EmailVerifiedTests(OAuthGateway gateway) : IClassFixture<OAuthGateway>
{
    private static readonly string[] Scopes = ["openid", "email", "lattice:compute:inference"];

    /// <summary>A confidential app of workspace A allowed the OpenID scopes.</summary>
    private async Task<(string ClientId, string Secret)> AppAsync()
    {
        var app = await OAuthGateway.PostAsync(gateway.Client(gateway.A.Key), $"admin/v1/workspaces/{gateway.A.WorkspaceId}/apps", new JsonObject
        {
            ["name"] = "Reads e-mail",
            ["redirect_uris"] = new JsonArray(OAuthGateway.RedirectUri),
            ["scopes"] = new JsonArray([.. Scopes.Select(s => (JsonNode)s)]),
            ["confidential"] = true,
        });
        return (app["client_id"]!.GetValue<string>(), app["client_secret"]!.GetValue<string>());
    }

    private async Task<JsonObject> UserAsync(string userId)
    {
        var users = JsonNode.Parse(await gateway.Admin.GetStringAsync("admin/v1/users"))!["data"]!.AsArray();
        return users.Single(u => u!["id"]!.GetValue<string>() == userId)!.AsObject();
    }

    /// <summary>The <c>email_verified</c> claim of the access token and of the ID token of one sign-in.</summary>
    private async Task<(bool Access, bool Id)> ClaimsAsync(OAuthGateway.Tenant user, string clientId, string secret)
    {
        var tokens = await CodeFlow.RunAsync(gateway, user, clientId, secret, Scopes);
        var access = CodeFlow.Payload(tokens["access_token"]!.GetValue<string>());
        var id = CodeFlow.Payload(tokens["id_token"]!.GetValue<string>());
        Assert.Equal(user.Email, id["email"]!.GetValue<string>());
        return (access["email_verified"]!.GetValue<bool>(), id["email_verified"]!.GetValue<bool>());
    }

    [Fact]
    public async Task An_invited_account_is_unverified_in_its_tokens_until_the_operator_verifies_it()
    {
        var (clientId, secret) = await AppAsync();
        var email = $"invited-{Guid.NewGuid():N}@example.test";
        var invitation = await OAuthGateway.PostAsync(gateway.Client(gateway.A.Key), $"admin/v1/workspaces/{gateway.A.WorkspaceId}/invitations", new JsonObject { ["email"] = email });
        var path = new Uri(invitation["accept_url"]!.GetValue<string>()).AbsolutePath.TrimStart('/');
        using (var browser = gateway.NewBrowser())
        {
            var form = OAuthGateway.Browser.HiddenFields(await (await browser.GetAsync(path)).Content.ReadAsStringAsync());
            form.Add(new("name", "Invited"));
            form.Add(new("password", OAuthGateway.Password));
            using var joined = await browser.PostFormAsync(path, form);
            Assert.Equal(HttpStatusCode.OK, joined.StatusCode);
        }
        var users = JsonNode.Parse(await gateway.Admin.GetStringAsync("admin/v1/users"))!["data"]!.AsArray();
        var userId = users.Single(u => u!["email"]!.GetValue<string>() == email)!["id"]!.GetValue<string>();
        Assert.False((await UserAsync(userId))["email_verified"]!.GetValue<bool>());
        var invited = gateway.A with { UserId = userId, Email = email };
        Assert.Equal((false, false), await ClaimsAsync(invited, clientId, secret));

        // The person cannot vouch for themselves: not with a token of theirs, nor does a workspace admin's key do.
        var own = await Credentials.TokenAsync(gateway, invited, clientId, secret, Scopes);
        foreach (var credential in new[] { own, gateway.A.Key })
        {
            using var http = gateway.Client(credential);
            var (status, body) = await Credentials.SendAsync(http, "POST", $"admin/v1/users/{userId}/verify-email");
            Assert.True(status == HttpStatusCode.Forbidden, $"{(int)status} {body}");
            Assert.Equal("insufficient_scopes", Credentials.Error(body)["code"]!.GetValue<string>());
        }
        Assert.False((await UserAsync(userId))["email_verified"]!.GetValue<bool>());

        // The operator verifies it; the next tokens say so.
        var verified = await OAuthGateway.PostAsync(gateway.Admin, $"admin/v1/users/{userId}/verify-email", new JsonObject());
        Assert.Equal(userId, verified["id"]!.GetValue<string>());
        Assert.True(verified["email_verified"]!.GetValue<bool>());
        Assert.Equal((true, true), await ClaimsAsync(invited, clientId, secret));
    }

    [Fact]
    public async Task The_operator_creates_users_unverified_unless_they_say_verified()
    {
        var plain = await OAuthGateway.PostAsync(gateway.Admin, "admin/v1/users", new JsonObject
        {
            ["email"] = $"plain-{Guid.NewGuid():N}@example.test", ["password"] = OAuthGateway.Password,
        });
        Assert.False(plain["email_verified"]!.GetValue<bool>());
        var vouched = await OAuthGateway.PostAsync(gateway.Admin, "admin/v1/users", new JsonObject
        {
            ["email"] = $"vouched-{Guid.NewGuid():N}@example.test", ["password"] = OAuthGateway.Password, ["email_verified"] = true,
        });
        Assert.True(vouched["email_verified"]!.GetValue<bool>());
        Assert.True((await UserAsync(vouched["id"]!.GetValue<string>()))["email_verified"]!.GetValue<bool>());
    }

    [Fact]
    public async Task Verifying_an_unknown_user_is_a_404()
    {
        var (status, body) = await Credentials.SendAsync(gateway.Admin, "POST", "admin/v1/users/usr_nobody/verify-email");
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Equal("The user 'usr_nobody' does not exist.", Credentials.Error(body)["message"]!.GetValue<string>());
    }
}
