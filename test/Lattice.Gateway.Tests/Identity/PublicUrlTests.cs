using System.Net;
using System.Text.Json.Nodes;
using Lattice.Gateway.Identity;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>
/// The issuer, the discovery document and invitation links come from the gateway's public URL (configured, else its own
/// listening address), never from the Host header a caller sends; an https public URL makes cookies Secure and turns HSTS on.
/// </summary>
public sealed class PublicUrlTests(OAuthGateway gateway) : IClassFixture<OAuthGateway>
{
    private const string PublicUrl = "https://lattice.example.test";
    private const string Forged = "evil.example";

    private static async Task<JsonNode> DiscoveryAsync(HttpClient http)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, ".well-known/openid-configuration");
        request.Headers.Host = Forged;
        using var response = await http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        return JsonNode.Parse(text)!;
    }

    private static async Task<string> InvitationUrlAsync(OAuthGateway server)
    {
        using var http = server.Client(server.A.Key);
        using var request = new HttpRequestMessage(HttpMethod.Post, $"admin/v1/workspaces/{server.A.WorkspaceId}/invitations")
        {
            Content = System.Net.Http.Json.JsonContent.Create(new JsonObject { ["email"] = $"forged-{Guid.NewGuid():N}@example.test" }),
        };
        request.Headers.Host = Forged;
        using var response = await http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Created, text);
        return JsonNode.Parse(text)!["accept_url"]!.GetValue<string>();
    }

    private static void AssertEndpointsUnder(JsonNode doc, string root)
    {
        Assert.Equal(root + "/", doc["issuer"]!.GetValue<string>());
        foreach (var (name, path) in new[]
        {
            ("authorization_endpoint", "/connect/authorize"), ("token_endpoint", "/connect/token"), ("device_authorization_endpoint", "/connect/device"),
            ("revocation_endpoint", "/connect/revoke"), ("introspection_endpoint", "/connect/introspect"), ("jwks_uri", "/.well-known/jwks"),
        })
        {
            Assert.Equal(root + path, doc[name]!.GetValue<string>());
        }
    }

    [Fact]
    public async Task Without_a_configured_public_url_a_forged_Host_gets_the_listening_address()
    {
        using var http = gateway.Client(null);
        AssertEndpointsUnder(await DiscoveryAsync(http), gateway.Origin);
        Assert.StartsWith(gateway.Origin + "/account/invitations/inv_", await InvitationUrlAsync(gateway));

        // Plain http: no HSTS, and cookies are not limited to https.
        using var login = await http.GetAsync("account/login");
        Assert.False(login.Headers.Contains("Strict-Transport-Security"));
        Assert.DoesNotContain("secure", string.Join('\n', login.Headers.GetValues("Set-Cookie")), StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task A_token_signed_by_the_gateway_key_for_another_issuer_is_refused()
    {
        var payload = CodeFlow.Payload(await Credentials.TokenAsync(gateway, gateway.A, ["lattice:compute:catalog:read"]));
        Assert.Equal(gateway.Origin + "/", payload["iss"]!.GetValue<string>());

        // The same claims, signed with the gateway's own key, but issued "by" the host a caller made up.
        var forged = new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = $"http://{Forged}/",
            Audience = "lattice",
            TokenType = "at+jwt",
            Expires = DateTime.UtcNow.AddMinutes(30),
            Claims = new Dictionary<string, object>
            {
                ["sub"] = payload["sub"]!.GetValue<string>(),
                ["lattice_ws"] = payload["lattice_ws"]!.GetValue<string>(),
                ["oi_au_id"] = payload["oi_au_id"]!.GetValue<string>(),
                ["client_id"] = payload["client_id"]!.GetValue<string>(),
                ["scope"] = "lattice:compute:catalog:read",
            },
            SigningCredentials = new SigningCredentials(gateway.Services.GetRequiredService<SigningKeys>().Signing, SecurityAlgorithms.RsaSha256),
        });
        using var api = gateway.Client(forged);
        using var response = await api.GetAsync("v1/models");
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("invalid_api_key", Credentials.Error(await response.Content.ReadAsStringAsync())["code"]!.GetValue<string>());
    }

    [Fact]
    public async Task With_an_https_public_url_every_url_is_under_it_cookies_are_secure_and_HSTS_is_sent()
    {
        var server = OAuthGateway.With(new() { ["Lattice:PublicUrl"] = PublicUrl + "/" });
        await server.InitializeAsync();
        try
        {
            using var http = server.Client(null);
            AssertEndpointsUnder(await DiscoveryAsync(http), PublicUrl);
            Assert.StartsWith(PublicUrl + "/account/invitations/inv_", await InvitationUrlAsync(server));

            // The device flow tells the person where to go: the public URL, not the Host the device used.
            using (var device = new HttpRequestMessage(HttpMethod.Post, "connect/device")
            {
                Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["client_id"] = server.A.PublicClientId, ["scope"] = "lattice:compute:inference" }),
            })
            {
                device.Headers.Host = Forged;
                using var started = await http.SendAsync(device);
                var text = await started.Content.ReadAsStringAsync();
                Assert.True(started.StatusCode == HttpStatusCode.OK, text);
                Assert.Equal(PublicUrl + "/connect/verify", JsonNode.Parse(text)!["verification_uri"]!.GetValue<string>());
            }

            using (var health = await http.GetAsync("healthz"))
            {
                Assert.Equal("max-age=31536000", string.Join(',', health.Headers.GetValues("Strict-Transport-Security")));
            }

            // Sign in by hand (a cookie jar would not send Secure cookies over the loopback's plain http).
            using var raw = new HttpClient(new HttpClientHandler { UseCookies = false, AllowAutoRedirect = false }) { BaseAddress = new Uri(server.Origin + "/") };
            using var page = await raw.GetAsync("account/login");
            Assert.True(page.Headers.TryGetValues("Strict-Transport-Security", out var hsts), $"{(int)page.StatusCode} {page.Headers}");
            Assert.Equal("max-age=31536000", string.Join(',', hsts));
            var antiforgery = Assert.Single(page.Headers.GetValues("Set-Cookie"), c => c.StartsWith("lattice_af=", StringComparison.Ordinal));
            Assert.Contains("; secure", antiforgery, StringComparison.OrdinalIgnoreCase);
            var form = OAuthGateway.Browser.HiddenFields(await page.Content.ReadAsStringAsync());
            form.Add(new("email", server.A.Email));
            form.Add(new("password", OAuthGateway.Password));
            using var post = new HttpRequestMessage(HttpMethod.Post, "account/login") { Content = new FormUrlEncodedContent(form) };
            post.Headers.Add("Cookie", antiforgery.Split(';')[0]);
            using var signedIn = await raw.SendAsync(post);
            Assert.True(signedIn.StatusCode == HttpStatusCode.Redirect, await signedIn.Content.ReadAsStringAsync());
            var session = Assert.Single(signedIn.Headers.GetValues("Set-Cookie"), c => c.StartsWith("lattice_session=", StringComparison.Ordinal));
            Assert.Contains("; secure", session, StringComparison.OrdinalIgnoreCase);
            Assert.Contains("; httponly", session, StringComparison.OrdinalIgnoreCase);
        }
        finally
        {
            await server.DisposeAsync();
        }
    }
}
