using System.Net;
using Lattice.Gateway.Identity;
using Lattice.Gateway.Tests.Infrastructure;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>The keys that protect sign-in sessions live in the data directory, owner-only, and every node on it uses them.</summary>
public sealed class SessionKeysTests(OAuthGateway gateway) : IClassFixture<OAuthGateway>
{
    [Fact]
    public async Task A_session_is_protected_with_keys_in_the_data_directory_and_accepted_by_another_node_on_it()
    {
        using var browser = new OAuthGateway.Browser(gateway);
        var signedIn = await browser.SignInAsync(gateway.A.Email, OAuthGateway.Password);
        Assert.Equal(HttpStatusCode.Redirect, signedIn.StatusCode);
        var authorize = CodeFlow.AuthorizeUrl(gateway.A.ClientId, ["lattice:compute:inference"], "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        using (var consent = await browser.GetAsync(authorize))
        {
            Assert.Equal(HttpStatusCode.OK, consent.StatusCode); // the consent page, not a redirect to sign in
        }

        var keys = Directory.GetFiles(IdentityServices.DataProtectionDirectory(gateway.DataDirectory), "key-*.xml");
        Assert.NotEmpty(keys);
        foreach (var key in keys)
        {
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(key));
            }
        }
        Assert.DoesNotContain(gateway.Logs, line => line.Contains("XML encryptor", StringComparison.Ordinal));

        var (node2, origin2) = await gateway.StartNodeAsync();
        try
        {
            // Cookies are not scoped by port, so the browser presents the same session to the second node.
            using var consent = await browser.GetAsync(origin2 + "/" + authorize);
            Assert.Equal(HttpStatusCode.OK, consent.StatusCode);
        }
        finally
        {
            await node2.ShutDownAsync();
        }
    }
}
