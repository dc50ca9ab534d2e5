using System.Net;
using System.Text.Json.Nodes;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Identity;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>
/// The device authorization limit with its counts in Redis, on two gateway nodes: requests from one address count
/// together wherever they land, and the refusal is the same <c>slow_down</c> 429 as on one node.
/// </summary>
[Trait("Category", "ScaleOut")]
public sealed class RedisDeviceAuthorizationLimitTests : IAsyncLifetime
{
    // On the minute, so the window (aligned to the clock's minutes in Redis) ends a whole minute from now.
    private readonly FakeTimeProvider _clock = new(DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.AddDays(-1).ToUnixTimeSeconds() / 60 * 60));
    private OAuthGateway _gateway = null!;
    private Microsoft.AspNetCore.Builder.WebApplication? _secondNode;
    private string _second = "";

    public async Task InitializeAsync()
    {
        var redis = await RedisServer.Shared();
        _gateway = OAuthGateway.With(new()
        {
            ["Lattice:DeviceAuthorizationsPerMinute"] = "2",
            ["Lattice:Redis"] = redis.Configuration,
            ["Lattice:RedisKeyPrefix"] = "d" + Guid.NewGuid().ToString("N") + ":",
        }, configureServices: services =>
            // The limiter's clock is the test's; its counts are in the shared Redis.
            services.AddSingleton(sp => new DeviceAuthorizationLimiter(sp.GetRequiredService<IOptions<GatewayOptions>>(),
                new RedisSourceWindow(sp.GetRequiredService<RedisStore>(), _clock, "device:src"))));
        await _gateway.InitializeAsync();
        (_secondNode, _second) = await _gateway.StartNodeAsync();
    }

    public async Task DisposeAsync()
    {
        await _secondNode.ShutDownAsync();
        await _gateway.DisposeAsync();
    }

    private async Task<(HttpStatusCode Status, JsonNode Body, HttpResponseMessage Response)> StartAsync(string? origin)
    {
        using var http = _gateway.Client(null, origin);
        var response = await http.PostAsync("connect/device", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["client_id"] = _gateway.A.PublicClientId,
            ["scope"] = "lattice:compute:inference",
        }));
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!, response);
    }

    [Fact]
    public async Task Requests_on_two_nodes_share_one_limit_and_the_next_window_starts_empty()
    {
        foreach (var origin in new string?[] { null, _second })
        {
            var (status, body, response) = await StartAsync(origin);
            response.Dispose();
            Assert.True(status == HttpStatusCode.OK, body.ToJsonString());
        }
        foreach (var origin in new string?[] { null, _second })
        {
            var (refused, error, refusal) = await StartAsync(origin);
            using (refusal)
            {
                Assert.Equal((HttpStatusCode)429, refused);
                Assert.Equal("slow_down", error["error"]!.GetValue<string>());
                Assert.Null(error["device_code"]);
                Assert.Equal("60", string.Join(',', refusal.Headers.GetValues("Retry-After")));
            }
        }

        _clock.Advance(TimeSpan.FromMinutes(1));
        var (again, body2, response2) = await StartAsync(_second);
        response2.Dispose();
        Assert.True(again == HttpStatusCode.OK, body2.ToJsonString());
    }
}
