using System.Net;
using Microsoft.Extensions.Logging;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>The authorization server stays off the API's hot path: API requests never enter OpenIddict or the cookie handler.</summary>
public sealed class HotPathTests : IAsyncLifetime
{
    private readonly OAuthGateway _gateway = OAuthGateway.With([], LogLevel.Trace);

    public Task InitializeAsync() => _gateway.InitializeAsync();

    public Task DisposeAsync() => _gateway.DisposeAsync();

    [Fact]
    public async Task An_API_request_runs_no_authentication_handler()
    {
        using var api = _gateway.Client(_gateway.A.Key);
        while (_gateway.Logs.TryDequeue(out _))
        {
        }
        using (var response = await api.GetAsync("v1/models"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        var logged = _gateway.Logs.ToArray();
        Assert.DoesNotContain(logged, line => line.StartsWith("OpenIddict", StringComparison.Ordinal) || line.Contains("Authentication", StringComparison.Ordinal));

        // The discovery document does go through OpenIddict, so the check above can fail.
        using var anonymous = _gateway.Client(null);
        (await anonymous.GetAsync(".well-known/openid-configuration")).Dispose();
        Assert.Contains(_gateway.Logs, line => line.StartsWith("OpenIddict", StringComparison.Ordinal));
    }
}
