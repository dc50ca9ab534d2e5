using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Tests.Auth;

/// <summary>The configured admin key (<c>Lattice:AdminKey</c>): strong enough to be stored, and retired when it changes.</summary>
public sealed class AdminKeyTests
{
    private const string First = "sk_admin_first_Qm7xV2pL9rT4wZ8nK3cB6";
    private const string Second = "sk_admin_second_Hj5sD1fG8kL2mN6bV4cX";

    [Theory]
    [InlineData("sk_admin_short", "it has 14 characters; at least 32 are required")]
    [InlineData("abcdefghijklmnopqrstuvwxyzabcdefgh", "it uses only one kind of character; mix at least two of lower case, upper case, digits and symbols")]
    [InlineData("sk_admin_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "it repeats too few characters; at least 12 different ones are required")]
    [InlineData("sk_admin_ChangeMe_please_0123456789", "it contains the placeholder 'changeme'")]
    public void A_weak_key_is_named_for_what_makes_it_weak(string key, string weakness) =>
        Assert.Equal(weakness, AdminKeyPolicy.Weakness(key));

    [Fact]
    public void Keys_lattice_up_makes_and_the_test_fixtures_use_are_strong_enough()
    {
        // `lattice up` stores the admin key DatabaseInitializer.BootstrapDevAsync makes this way.
        for (var i = 0; i < 100; i++)
        {
            Assert.Null(AdminKeyPolicy.Weakness(ApiKeySecrets.NewSecret("sk_admin_")));
        }
        Assert.Null(AdminKeyPolicy.Weakness(GatewayFixture.AdminKey));
        Assert.Null(AdminKeyPolicy.Weakness(Runtimes.LiveGateway.AdminKey));
        Assert.Null(AdminKeyPolicy.Weakness(Identity.OAuthGateway.AdminKey));
        Assert.Null(AdminKeyPolicy.Weakness(Billing.BillingHost.AdminKey));
        Assert.Null(AdminKeyPolicy.Weakness(null));
    }

    private static async Task<(WebApplication App, string Origin)> StartAsync(string dataDirectory, string? adminKey)
    {
        var builder = GatewayApp.CreateBuilder([]);
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Lattice:DataDirectory"] = dataDirectory,
            ["Lattice:AdminKey"] = adminKey,
        });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.SetMinimumLevel(LogLevel.Critical);
        var app = GatewayApp.Build(builder);
        try
        {
            await app.StartAsync();
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }
        return (app, app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/'));
    }

    private static async Task<HttpStatusCode> ListWorkspacesAsync(string origin, string key)
    {
        using var http = new HttpClient { BaseAddress = new Uri(origin + "/"), Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var response = await http.GetAsync("admin/v1/workspaces");
        return response.StatusCode;
    }

    [Fact]
    public async Task A_weak_configured_key_stops_start_up_naming_the_setting()
    {
        var dataDirectory = Path.Combine(Path.GetTempPath(), "lattice-adminkey-" + Guid.NewGuid().ToString("N"));
        try
        {
            var error = await Assert.ThrowsAsync<OptionsValidationException>(() => StartAsync(dataDirectory, "hunter2"));
            Assert.Equal("Lattice:AdminKey is too weak: it has 7 characters; at least 32 are required. Generate one, e.g. with `openssl rand -base64 48`.", error.Message);
        }
        finally
        {
            Hosts.DeleteDataDirectory(dataDirectory);
        }
    }

    [Fact]
    public async Task Changing_the_configured_key_retires_the_old_one_which_cannot_come_back()
    {
        var dataDirectory = Path.Combine(Path.GetTempPath(), "lattice-adminkey-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (app, origin) = await StartAsync(dataDirectory, First);
            try
            {
                Assert.Equal(HttpStatusCode.OK, await ListWorkspacesAsync(origin, First));
            }
            finally
            {
                await app.ShutDownAsync();
            }

            (app, origin) = await StartAsync(dataDirectory, Second);
            try
            {
                Assert.Equal(HttpStatusCode.OK, await ListWorkspacesAsync(origin, Second));
                Assert.Equal(HttpStatusCode.Unauthorized, await ListWorkspacesAsync(origin, First));
            }
            finally
            {
                await app.ShutDownAsync();
            }

            var error = await Assert.ThrowsAsync<OptionsValidationException>(() => StartAsync(dataDirectory, First));
            Assert.Equal("Lattice:AdminKey is a key that has been revoked or retired; configure a new one.", error.Message);

            // Unset: no configured key is in force.
            (app, origin) = await StartAsync(dataDirectory, null);
            try
            {
                Assert.Equal(HttpStatusCode.Unauthorized, await ListWorkspacesAsync(origin, Second));
            }
            finally
            {
                await app.ShutDownAsync();
            }
        }
        finally
        {
            Hosts.DeleteDataDirectory(dataDirectory);
        }
    }
}
