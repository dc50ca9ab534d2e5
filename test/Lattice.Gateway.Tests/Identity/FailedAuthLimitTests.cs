using System.Net;
using System.Text.Json.Nodes;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>
/// Failed authentication attempts are limited per source address — keys, tokens, bootstrap tokens and passwords alike —
/// but only failing attempts: a valid credential from the same address still works.
/// </summary>
public sealed class FailedAuthLimitTests : IAsyncLifetime
{
    private readonly OAuthGateway _gateway = OAuthGateway.With(new() { ["Lattice:FailedAuthPerMinute"] = "5" });

    public Task InitializeAsync() => _gateway.InitializeAsync();

    public Task DisposeAsync() => _gateway.DisposeAsync();

    [Fact]
    public async Task Past_the_limit_failing_attempts_get_429_and_valid_credentials_still_work()
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
        using (var wrongPassword = await browser.SignInAsync(_gateway.B.Email, "wrong password, again"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, wrongPassword.StatusCode);
        }

        // The sixth failure, of any kind, is refused as too many.
        using (var response = await bad.GetAsync("v1/models"))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
            var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
            Assert.Equal("rate_limit_exceeded", error["code"]!.GetValue<string>());
        }
        using (var runtime = _gateway.Client("lrt_whatever"))
        using (var response = await runtime.GetAsync("v1/runtimes/me"))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
        }
        using (var browser = _gateway.NewBrowser())
        using (var wrongPassword = await browser.SignInAsync(_gateway.A.Email, "another wrong one"))
        {
            Assert.Equal((HttpStatusCode)429, wrongPassword.StatusCode);
            Assert.Contains("Too many failed attempts. Try again in a minute.", await wrongPassword.Content.ReadAsStringAsync());
        }

        // The right key and the right password from the same address are not refused for others' failures.
        using var good = _gateway.Client(_gateway.A.Key);
        using (var response = await good.GetAsync("v1/models"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        using (var browser = _gateway.NewBrowser())
        using (var rightPassword = await browser.SignInAsync(_gateway.A.Email, OAuthGateway.Password))
        {
            Assert.Equal(HttpStatusCode.Redirect, rightPassword.StatusCode);
        }
    }

    [Fact]
    public async Task Wrong_passwords_for_one_account_make_that_account_wait()
    {
        // The limiter alone runs on a fake clock, so the backoff's end is a step of the test, not a wait.
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var gateway = OAuthGateway.With(new() { ["Lattice:FailedAuthPerMinute"] = "100" }, configureServices: services =>
            services.AddSingleton(sp => new FailedAuthLimiter(sp.GetRequiredService<IOptions<GatewayOptions>>(), clock)));
        await gateway.InitializeAsync();
        try
        {
            for (var i = 0; i < FailedAuthLimiter.FreeAccountFailures; i++)
            {
                using var browser = gateway.NewBrowser();
                using var wrong = await browser.SignInAsync(gateway.A.Email, $"guess {i}");
                Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
            }
            using (var browser = gateway.NewBrowser())
            using (var right = await browser.SignInAsync(gateway.A.Email, OAuthGateway.Password))
            {
                Assert.Equal((HttpStatusCode)429, right.StatusCode);
                Assert.Contains("Too many failed attempts for this account. Try again in 1 second.", await right.Content.ReadAsStringAsync());
            }
            clock.Advance(TimeSpan.FromSeconds(1));
            using (var browser = gateway.NewBrowser())
            using (var right = await browser.SignInAsync(gateway.A.Email, OAuthGateway.Password))
            {
                Assert.Equal(HttpStatusCode.Redirect, right.StatusCode);
            }
            // Another account from the same address is not held back.
            using (var browser = gateway.NewBrowser())
            using (var other = await browser.SignInAsync(gateway.B.Email, OAuthGateway.Password))
            {
                Assert.Equal(HttpStatusCode.Redirect, other.StatusCode);
            }
        }
        finally
        {
            await gateway.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_credential_far_longer_than_any_issued_is_a_401_not_a_500()
    {
        // Five malformed credentials: each a plain failure (the sixth would be over this gateway's limit).
        var longRuntime = "lrt_" + new string('a', 600);
        using (var runtime = _gateway.Client(longRuntime))
        using (var response = await runtime.GetAsync("v1/runtimes/me"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.Equal("invalid_api_key", JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
        }
        // Raw UTF-8 in the header too, as a hostile client can send it.
        using var utf8 = new HttpClient(new SocketsHttpHandler { RequestHeaderEncodingSelector = (_, _) => System.Text.Encoding.UTF8 })
        {
            BaseAddress = new Uri(_gateway.Origin + "/"),
        };
        foreach (var (credential, path) in ((string, string)[])[
            ("sk_" + new string('b', 5000), "v1/models"),
            ("lrt_" + new string('é', 300), "v1/runtimes/me"),
            (new string('x', 4000) + "." + new string('y', 4000) + ".z", "v1/models")])
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, path);
            request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + credential);
            using var response = await utf8.SendAsync(request);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        }
        using (var pairing = _gateway.Client(null))
        using (var response = await pairing.PostAsync("v1/runtimes/pair",
            new StringContent($$"""{"bootstrapToken":"lbt_{{new string('c', 5000)}}"}""", System.Text.Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        }
    }
}

/// <summary>Several clients behind one reverse proxy are told apart only when the proxy is configured as trusted.</summary>
public sealed class TrustedProxyTests
{
    private static async Task<HttpStatusCode> TryAsync(OAuthGateway gateway, string forwardedFor, string? key = null)
    {
        using var client = gateway.Client(key ?? "sk_not_a_key_at_all_0000000000000000000000");
        using var request = new HttpRequestMessage(HttpMethod.Get, "v1/models");
        request.Headers.Add("X-Forwarded-For", forwardedFor);
        using var response = await client.SendAsync(request);
        return response.StatusCode;
    }

    [Fact]
    public async Task Behind_a_trusted_proxy_each_forwarded_client_has_its_own_count()
    {
        var gateway = OAuthGateway.With(new()
        {
            ["Lattice:FailedAuthPerMinute"] = "3",
            ["Lattice:TrustedProxies:0"] = "127.0.0.1",
        });
        await gateway.InitializeAsync();
        try
        {
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(HttpStatusCode.Unauthorized, await TryAsync(gateway, "203.0.113.7"));
        }
        Assert.Equal(HttpStatusCode.TooManyRequests, await TryAsync(gateway, "203.0.113.7"));
        // Another client behind the same proxy has failures of its own left…
        Assert.Equal(HttpStatusCode.Unauthorized, await TryAsync(gateway, "198.51.100.20"));
        // …and IPv6 clients are counted by their /64: two addresses of one subscriber share a count.
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(HttpStatusCode.Unauthorized, await TryAsync(gateway, $"2001:db8:1:2::{i + 1}"));
        }
        Assert.Equal(HttpStatusCode.TooManyRequests, await TryAsync(gateway, "2001:db8:1:2:ffff::9"));
        Assert.Equal(HttpStatusCode.Unauthorized, await TryAsync(gateway, "2001:db8:1:3::1"));
        }
        finally
        {
            await gateway.DisposeAsync();
        }
    }

    [Fact]
    public async Task Without_trusted_proxies_a_forwarded_address_is_ignored()
    {
        var gateway = OAuthGateway.With(new() { ["Lattice:FailedAuthPerMinute"] = "3" });
        await gateway.InitializeAsync();
        try
        {
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(HttpStatusCode.Unauthorized, await TryAsync(gateway, $"203.0.113.{i + 1}"));
        }
        // Claiming yet another address does not reset the count: the socket's address is what counts.
        Assert.Equal(HttpStatusCode.TooManyRequests, await TryAsync(gateway, "203.0.113.99"));
        // A valid key is still served.
        Assert.Equal(HttpStatusCode.OK, await TryAsync(gateway, "203.0.113.99", gateway.A.Key));
        }
        finally
        {
            await gateway.DisposeAsync();
        }
    }
}
