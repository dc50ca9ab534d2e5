using System.Net;
using System.Text.Json.Nodes;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Identity;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using OpenIddict.EntityFrameworkCore.Models;
using OpenIddict.Server;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>
/// Device authorization requests are limited per source address, and the device and user codes nobody used are
/// deleted once they expire — not kept for as long as a refresh token lives.
/// </summary>
public sealed class DeviceAuthorizationLimitTests : IAsyncLifetime
{
    // The limiter and the pruner run on a fake clock (OpenIddict on the real one): a window's end and a code's expiry
    // are steps of the test, not waits. It starts a day back so it can be moved to any instant after the codes are made.
    private readonly FakeTimeProvider _clock = new(DateTimeOffset.UtcNow.AddDays(-1));
    private readonly OAuthGateway _gateway;

    public DeviceAuthorizationLimitTests() =>
        _gateway = OAuthGateway.With(new() { ["Lattice:DeviceAuthorizationsPerMinute"] = "2" }, configureServices: services =>
        {
            services.AddSingleton(sp => new DeviceAuthorizationLimiter(sp.GetRequiredService<IOptions<GatewayOptions>>(), _clock));
            services.AddSingleton(sp => new OAuthPruner(sp.GetRequiredService<IServiceScopeFactory>(),
                sp.GetRequiredService<IOptions<OpenIddictServerOptions>>(), _clock, NullLogger<OAuthPruner>.Instance));
        });

    public Task InitializeAsync() => _gateway.InitializeAsync();

    public Task DisposeAsync() => _gateway.DisposeAsync();

    private async Task<(HttpStatusCode Status, JsonNode Body, HttpResponseMessage Response)> StartAsync()
    {
        using var http = _gateway.Client(null);
        var response = await http.PostAsync("connect/device", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["client_id"] = _gateway.A.PublicClientId,
            ["scope"] = "lattice:compute:inference",
        }));
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!, response);
    }

    private async Task<List<OpenIddictEntityFrameworkCoreToken>> CodesAsync()
    {
        await using var scope = _gateway.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        return await db.Set<OpenIddictEntityFrameworkCoreToken>().AsNoTracking()
            .Where(t => t.Type == TokenTypeIdentifiers.Private.DeviceCode || t.Type == TokenTypeIdentifiers.Private.UserCode)
            .ToListAsync();
    }

    [Fact]
    public async Task Past_the_limit_a_source_gets_429_slow_down_until_the_window_ends()
    {
        for (var i = 0; i < 2; i++)
        {
            var (status, body, response) = await StartAsync();
            response.Dispose();
            Assert.True(status == HttpStatusCode.OK, body.ToJsonString());
        }
        var (refused, error, refusal) = await StartAsync();
        using (refusal)
        {
            Assert.Equal((HttpStatusCode)429, refused);
            Assert.Equal("slow_down", error["error"]!.GetValue<string>());
            Assert.Equal("Too many device authorization requests from this address. Try again in a minute.", error["error_description"]!.GetValue<string>());
            Assert.Null(error["device_code"]);
            Assert.Equal("60", string.Join(',', refusal.Headers.GetValues("Retry-After")));
        }

        _clock.Advance(TimeSpan.FromMinutes(1));
        var (again, body2, response2) = await StartAsync();
        response2.Dispose();
        Assert.True(again == HttpStatusCode.OK, body2.ToJsonString());
    }

    [Fact]
    public async Task Unused_device_and_user_codes_are_deleted_once_expired()
    {
        var (status, body, response) = await StartAsync();
        response.Dispose();
        Assert.True(status == HttpStatusCode.OK, body.ToJsonString());
        var codes = await CodesAsync();
        Assert.Equal([TokenTypeIdentifiers.Private.DeviceCode, TokenTypeIdentifiers.Private.UserCode], codes.Select(c => c.Type).Order());
        static DateTimeOffset Utc(DateTime value) => new(DateTime.SpecifyKind(value, DateTimeKind.Utc));
        var first = Utc(codes.Min(c => c.ExpirationDate!.Value));
        var last = Utc(codes.Max(c => c.ExpirationDate!.Value));
        var pruner = _gateway.Services.GetRequiredService<OAuthPruner>();

        // A second before they expire, they stay: the device may still be approved.
        _clock.SetUtcNow(first.AddSeconds(-1));
        Assert.Equal(0, (await pruner.PruneAsync(pruner.Threshold)).DeviceCodes);
        Assert.Equal(2, (await CodesAsync()).Count);

        // Expired: gone at the next pass, not a refresh token's lifetime later.
        _clock.SetUtcNow(last.AddSeconds(1));
        Assert.Equal(2, (await pruner.PruneAsync(pruner.Threshold)).DeviceCodes);
        Assert.Empty(await CodesAsync());
    }
}
