using System.Net;
using Lattice.Client.Tests.Infrastructure;

namespace Lattice.Client.Tests.Auth;

/// <summary>The device flow's polling rules (RFC 8628), on a scripted token endpoint and a fake clock.</summary>
public sealed class DevicePollingTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private static HttpResponseMessage OAuthError(string error) =>
        ScriptedTransport.Json(HttpStatusCode.BadRequest, $$"""{"error":"{{error}}","error_description":"scripted"}""");

    [Fact]
    public async Task Pending_waits_the_interval_and_slow_down_adds_five_seconds_to_it()
    {
        var clock = new WatchedClock();
        var transport = new ScriptedTransport(
            _ => ScriptedTransport.Json(HttpStatusCode.OK,
                """{"device_code":"dc","user_code":"ABCD-EFGH","verification_uri":"http://lattice.test/connect/verify","expires_in":600,"interval":3}"""),
            _ => OAuthError("authorization_pending"),
            _ => OAuthError("slow_down"),
            _ => OAuthError("authorization_pending"),
            _ => ScriptedTransport.Json(HttpStatusCode.OK, """{"access_token":"eyJ.a.b","token_type":"Bearer","expires_in":3600,"refresh_token":"rt"}"""));
        using var oauth = new LatticeOAuthClient(new Uri("http://lattice.test"), "lattice-cli", transport: transport, timeProvider: clock);

        var device = await oauth.StartDeviceAuthorizationAsync(["lattice:compute:inference"]);
        Assert.Equal(TimeSpan.FromSeconds(3), device.Interval);
        var polling = oauth.WaitForDeviceTokensAsync(device);
        var waits = new List<TimeSpan>();
        for (var i = 0; i < 4; i++)
        {
            waits.Add(await clock.ElapseNextWaitAsync());
        }
        var tokens = await polling.WaitAsync(Timeout);

        Assert.Equal([3, 3, 8, 8], waits.Select(w => w.TotalSeconds));
        Assert.Equal("eyJ.a.b", tokens.AccessToken);
        Assert.Equal(clock.GetUtcNow().AddHours(1), tokens.ExpiresAt);
        var polls = transport.Sent.Skip(1).ToList();
        Assert.All(polls, p => Assert.Equal("/connect/token", p.Path));
        Assert.All(polls, p => Assert.Contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=dc&client_id=lattice-cli", p.Body));
    }

    [Fact]
    public async Task A_code_still_pending_when_it_expires_is_device_code_expired()
    {
        var clock = new WatchedClock();
        var transport = new ScriptedTransport(
            _ => ScriptedTransport.Json(HttpStatusCode.OK,
                """{"device_code":"dc","user_code":"ABCD-EFGH","verification_uri":"http://lattice.test/connect/verify","expires_in":10,"interval":5}"""),
            _ => OAuthError("authorization_pending"));
        using var oauth = new LatticeOAuthClient(new Uri("http://lattice.test"), "lattice-cli", transport: transport, timeProvider: clock);
        var device = await oauth.StartDeviceAuthorizationAsync(["lattice:compute:inference"]);
        var polling = oauth.WaitForDeviceTokensAsync(device);
        await clock.ElapseNextWaitAsync();
        await clock.ElapseNextWaitAsync();
        var expired = await Assert.ThrowsAsync<DeviceCodeExpiredException>(() => polling.WaitAsync(Timeout));
        Assert.IsAssignableFrom<ReauthorizeException>(expired);
    }

    [Fact]
    public async Task The_device_endpoints_own_limit_is_a_rate_limit_with_its_retry_after()
    {
        var transport = new ScriptedTransport(_ => ScriptedTransport.Json(HttpStatusCode.TooManyRequests,
            """{"error":"slow_down","error_description":"Too many device authorization requests from this address. Try again in a minute."}""",
            retryAfter: TimeSpan.FromSeconds(42)));
        using var oauth = new LatticeOAuthClient(new Uri("http://lattice.test"), "lattice-cli", transport: transport);
        var limited = await Assert.ThrowsAsync<RateLimitExceededException>(() => oauth.StartDeviceAuthorizationAsync(["lattice:compute:inference"]));
        Assert.Equal(TimeSpan.FromSeconds(42), limited.RetryAfter);
        Assert.Equal("slow_down", limited.Code);
    }
}
