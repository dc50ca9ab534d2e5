using System.Net;
using Lattice.Gateway.Identity;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>
/// The sign-in page sends people back only to plain local paths: anything a browser would read as another site falls
/// back to the sign-in page itself.
/// </summary>
public sealed class ReturnUrlTests(OAuthGateway gateway) : IClassFixture<OAuthGateway>
{
    /// <summary>Inputs a browser resolves against another host, or that hide one behind characters it drops or rewrites.</summary>
    public static TheoryData<string> Hostile => new()
    {
        "//evil.example",
        "//evil.example/path",
        "/\\evil.example",
        "\\\\evil.example",
        "\\/evil.example",
        "/\t/evil.example",   // browsers drop tab: //evil.example
        "/\r/evil.example",   // and CR
        "/\n/evil.example",   // and LF
        "/\t\\evil.example",
        "/foo\\..\\..\\/evil.example",
        "/ok\u0000",
        "/ok\u007f",
        "/ok path",
        "/\u3000/evil.example",
        "https://evil.example",
        "http:evil.example",
        "javascript:alert(1)",
        "evil.example",
        " /connect/authorize",
        "",
    };

    [Theory]
    [MemberData(nameof(Hostile))]
    public void Off_site_or_obscured_return_urls_fall_back_to_the_sign_in_page(string input) =>
        Assert.Equal("/account/login", IdentityEndpoints.SafeReturnUrl(input));

    [Theory]
    [InlineData("/")]
    [InlineData("/connect/authorize?client_id=app_1&scope=openid%20email&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback")]
    [InlineData("/account/invitations/inv_abc")]
    [InlineData("/connect/verify?user_code=ABCD-EFGH")]
    public void Plain_local_paths_are_kept(string input) => Assert.Equal(input, IdentityEndpoints.SafeReturnUrl(input));

    [Fact]
    public void Null_falls_back_to_the_sign_in_page() => Assert.Equal("/account/login", IdentityEndpoints.SafeReturnUrl(null));

    [Theory]
    [InlineData("/\t/evil.example")]
    [InlineData("/\\evil.example")]
    [InlineData("//evil.example")]
    public async Task Signing_in_with_a_hostile_return_url_redirects_to_the_gateway(string returnUrl)
    {
        using var browser = gateway.NewBrowser();
        using var signedIn = await browser.SignInAsync(gateway.A.Email, OAuthGateway.Password, returnUrl);
        Assert.Equal(HttpStatusCode.Redirect, signedIn.StatusCode);
        Assert.Equal("/account/login", signedIn.Headers.Location!.OriginalString);
    }
}
