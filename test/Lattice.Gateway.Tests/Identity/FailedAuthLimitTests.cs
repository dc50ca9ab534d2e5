using System.Net;
using System.Text.Json.Nodes;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>Failed authentication attempts are limited per source address: keys, tokens and passwords alike.</summary>
public sealed class FailedAuthLimitTests : IAsyncLifetime
{
    private readonly OAuthGateway _gateway = OAuthGateway.With(new() { ["Lattice:FailedAuthPerMinute"] = "5" });

    public Task InitializeAsync() => _gateway.InitializeAsync();

    public Task DisposeAsync() => _gateway.DisposeAsync();

    [Fact]
    public async Task Past_the_limit_every_attempt_from_the_address_gets_429_until_the_window_ends()
    {
        // Five failures of four kinds: two unknown keys, a forged token, a guessed bootstrap token, a wrong password.
        using var bad = _gateway.Client("sk_not_a_key_at_all_0000000000000000000000");
        for (var i = 0; i < 2; i++)
        {
            using var response = await bad.GetAsync("v1/models");
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        }
        using (var forged = _gateway.Client("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"))
        using (var response = await forged.GetAsync("v1/models"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.Equal("invalid_api_key", JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
        }
        using (var pairing = _gateway.Client(null))
        using (var response = await pairing.PostAsync("v1/runtimes/pair", new StringContent("""{"bootstrapToken":"lbt_guess"}""", System.Text.Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        }
        using (var browser = _gateway.NewBrowser())
        using (var wrongPassword = await browser.SignInAsync(_gateway.A.Email, "wrong password, again"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, wrongPassword.StatusCode);
        }

        using (var response = await bad.GetAsync("v1/models"))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
            var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
            Assert.Equal("rate_limit_exceeded", error["code"]!.GetValue<string>());
        }
        // Even the right credential is not checked from this address until the window ends, nor a runtime's.
        using (var runtime = _gateway.Client("lrt_whatever"))
        using (var response = await runtime.GetAsync("v1/runtimes/me"))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
        }
        using var good = _gateway.Client(_gateway.A.Key);
        using (var response = await good.GetAsync("v1/models"))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
        }
        using (var browser = _gateway.NewBrowser())
        using (var rightPassword = await browser.SignInAsync(_gateway.A.Email, OAuthGateway.Password))
        {
            Assert.Equal((HttpStatusCode)429, rightPassword.StatusCode);
            Assert.Contains("Too many failed attempts. Try again in a minute.", await rightPassword.Content.ReadAsStringAsync());
        }
    }
}
