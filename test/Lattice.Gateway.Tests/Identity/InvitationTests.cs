using System.Net;
using System.Text.Json.Nodes;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>A workspace admin invites an e-mail address; the person joins with that address — new or existing account.</summary>
public sealed class InvitationTests(OAuthGateway gateway) : IClassFixture<OAuthGateway>
{
    private async Task<JsonObject> InviteAsync(OAuthGateway.Tenant tenant, string email, string? role = null)
    {
        var body = new JsonObject { ["email"] = email };
        if (role is not null)
        {
            body["role"] = role;
        }
        return await OAuthGateway.PostAsync(gateway.Client(tenant.Key), $"admin/v1/workspaces/{tenant.WorkspaceId}/invitations", body);
    }

    private static string PathOf(JsonObject invitation) => new Uri(invitation["accept_url"]!.GetValue<string>()).AbsolutePath.TrimStart('/');

    private async Task<List<string>> MemberEmailsAsync(OAuthGateway.Tenant tenant)
    {
        using var admin = gateway.Client(tenant.Key);
        var list = JsonNode.Parse(await admin.GetStringAsync($"admin/v1/workspaces/{tenant.WorkspaceId}/members"))!["data"]!.AsArray();
        return list.Select(m => m!["email"]!.GetValue<string>()).ToList();
    }

    [Fact]
    public async Task A_new_person_creates_their_account_from_the_link_and_can_then_grant_apps()
    {
        var email = $"new-{Guid.NewGuid():N}@example.test";
        var invitation = await InviteAsync(gateway.A, email);
        Assert.StartsWith(gateway.Origin + "/account/invitations/inv_", invitation["accept_url"]!.GetValue<string>());
        Assert.Equal("member", invitation["role"]!.GetValue<string>());

        using var browser = gateway.NewBrowser();
        var page = await browser.GetAsync(PathOf(invitation));
        var html = await page.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Contains("Create your Lattice account for <strong>" + email + "</strong>", html);
        var form = OAuthGateway.Browser.HiddenFields(html);
        form.Add(new("name", "New Person"));
        form.Add(new("password", OAuthGateway.Password));
        var joined = await browser.PostFormAsync(PathOf(invitation), form);
        Assert.Equal(HttpStatusCode.OK, joined.StatusCode);
        Assert.Contains("You are now a member of a.", await joined.Content.ReadAsStringAsync());
        Assert.Contains(email, await MemberEmailsAsync(gateway.A));

        // The link works once.
        var again = await browser.GetAsync(PathOf(invitation));
        Assert.Equal(HttpStatusCode.Gone, again.StatusCode);

        // The new member can grant an app access to their compute in workspace A.
        var users = JsonNode.Parse(await gateway.Admin.GetStringAsync("admin/v1/users"))!["data"]!.AsArray();
        var userId = users.Single(u => u!["email"]!.GetValue<string>() == email)!["id"]!.GetValue<string>();
        var tokens = await CodeFlow.RunAsync(gateway, gateway.A with { UserId = userId, Email = email }, gateway.A.ClientId, gateway.A.ClientSecret, ["lattice:compute:inference"]);
        Assert.Equal(gateway.A.WorkspaceId, CodeFlow.Payload(tokens["access_token"]!.GetValue<string>())["lattice_ws"]!.GetValue<string>());
    }

    [Fact]
    public async Task An_existing_user_signs_in_and_joins_and_no_one_else_can_use_their_link()
    {
        var invitation = await InviteAsync(gateway.A, gateway.B.Email, "owner");
        using (var stranger = gateway.NewBrowser())
        {
            await stranger.SignInAsync(gateway.A.Email, OAuthGateway.Password);
            var refused = await stranger.GetAsync(PathOf(invitation));
            Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
            Assert.Contains("This invitation is for another e-mail address.", await refused.Content.ReadAsStringAsync());
        }

        using var browser = gateway.NewBrowser();
        var toLogin = await browser.GetAsync(PathOf(invitation));
        Assert.Equal(HttpStatusCode.Redirect, toLogin.StatusCode);
        Assert.StartsWith("/account/login?returnUrl=", toLogin.Headers.Location!.OriginalString);
        var signedIn = await browser.SignInAsync(gateway.B.Email, OAuthGateway.Password, "/" + PathOf(invitation));
        var page = await browser.GetAsync(signedIn.Headers.Location!.OriginalString.TrimStart('/'));
        var html = await page.Content.ReadAsStringAsync();
        Assert.Contains("as owner, signed in as " + gateway.B.Email, html);
        var joined = await browser.PostFormAsync(PathOf(invitation), OAuthGateway.Browser.HiddenFields(html));
        Assert.Equal(HttpStatusCode.OK, joined.StatusCode);
        Assert.Contains(gateway.B.Email, await MemberEmailsAsync(gateway.A));
    }

    [Fact]
    public async Task A_withdrawn_invitation_is_gone_and_another_workspace_cannot_see_or_withdraw_it()
    {
        var invitation = await InviteAsync(gateway.A, $"late-{Guid.NewGuid():N}@example.test");
        var id = invitation["id"]!.GetValue<string>();

        using var asB = gateway.Client(gateway.B.Key);
        using (var list = await asB.GetAsync($"admin/v1/workspaces/{gateway.A.WorkspaceId}/invitations"))
        {
            Assert.Equal(HttpStatusCode.NotFound, list.StatusCode);
        }
        using (var revoke = await asB.PostAsync($"admin/v1/invitations/{id}/revoke", null))
        {
            Assert.Equal(HttpStatusCode.NotFound, revoke.StatusCode);
        }

        var listed = JsonNode.Parse(await gateway.Client(gateway.A.Key).GetStringAsync($"admin/v1/workspaces/{gateway.A.WorkspaceId}/invitations"))!["data"]!.AsArray();
        var row = listed.Single(i => i!["id"]!.GetValue<string>() == id)!;
        Assert.Null(row["accept_url"]);
        Assert.DoesNotContain("inv_", listed.ToJsonString());

        await OAuthGateway.PostAsync(gateway.Client(gateway.A.Key), $"admin/v1/invitations/{id}/revoke", new JsonObject());
        using var browser = gateway.NewBrowser();
        var gone = await browser.GetAsync(PathOf(invitation));
        Assert.Equal(HttpStatusCode.Gone, gone.StatusCode);
        Assert.Contains("This invitation link is not valid", await gone.Content.ReadAsStringAsync());
    }
}
