using Lattice.Gateway.Hosting;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Tests.Tasks;

/// <summary>
/// The minimum rate a request body must arrive at (slow-loris uploads). Kestrel measures it on its own heartbeat clock,
/// which no test can drive, so these prove the configured rate is the one a real request on loopback carries; the 408
/// it leads to is mapped by <c>RequestBodyTests.Slots_are_given_back_when_a_read_fails_and_the_table_forgets_idle_callers</c>.
/// </summary>
public sealed class MinDataRateTests
{
    [Fact]
    public async Task A_request_on_Kestrel_carries_the_configured_minimum_body_data_rate()
    {
        var dataDir = Path.Combine(Path.GetTempPath(), "lattice-tests-" + Guid.NewGuid().ToString("N"));
        var builder = GatewayApp.CreateBuilder([]);
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Lattice:DataDirectory"] = dataDir,
            ["Lattice:MinRequestBodyBytesPerSecond"] = "1000",
            ["Lattice:MinRequestBodyGracePeriod"] = "00:00:07",
        });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        var app = GatewayApp.Build(builder);
        app.MapPost("/_probe/min-body-rate", (HttpContext context) =>
        {
            var rate = context.Features.GetRequiredFeature<IHttpMinRequestBodyDataRateFeature>().MinDataRate;
            return rate is null ? "none" : FormattableString.Invariant($"{rate.BytesPerSecond} {rate.GracePeriod}");
        });
        try
        {
            await app.StartAsync();
            var origin = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            using var http = new HttpClient { BaseAddress = new Uri(origin), Timeout = TimeSpan.FromSeconds(30) };

            using var response = await http.PostAsync("/_probe/min-body-rate", new StringContent("{}"));

            Assert.Equal("1000 00:00:07", await response.Content.ReadAsStringAsync());
        }
        finally
        {
            await app.ShutDownAsync();
            Hosts.DeleteDataDirectory(dataDir);
        }
    }

    [Theory]
    [InlineData(null, null, 240d, 5)]
    [InlineData("0", null, null, 0)]
    [InlineData("50", "00:00:02", 50d, 2)]
    public void The_minimum_body_data_rate_comes_from_Lattice_settings(string? rate, string? grace, double? bytesPerSecond, int graceSeconds)
    {
        var settings = new Dictionary<string, string?>();
        if (rate is not null)
        {
            settings["Lattice:MinRequestBodyBytesPerSecond"] = rate;
        }
        if (grace is not null)
        {
            settings["Lattice:MinRequestBodyGracePeriod"] = grace;
        }
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        using var services = new ServiceCollection().AddGateway(configuration).BuildServiceProvider();

        var configured = services.GetRequiredService<IOptions<KestrelServerOptions>>().Value.Limits.MinRequestBodyDataRate;

        Assert.Equal(bytesPerSecond, configured?.BytesPerSecond);
        if (configured is not null)
        {
            Assert.Equal(TimeSpan.FromSeconds(graceSeconds), configured.GracePeriod);
        }
    }
}
