using System.Collections.Concurrent;
using System.Net;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>The authorization server stays off the API's hot path: API requests never enter OpenIddict or the cookie handler.</summary>
public sealed class HotPathTests : IAsyncLifetime
{
    private readonly ConcurrentQueue<string> _seen = new();
    private readonly OAuthGateway _gateway;

    public HotPathTests()
    {
        _gateway = new OAuthGateway
        {
            MinimumLogLevel = LogLevel.Trace,
            // A request handler beside OpenIddict's: the authentication middleware offers every request it sees to
            // every such handler, so this one records exactly which paths went through authentication.
            ConfigureServices = services => services.AddSingleton(_seen).AddAuthentication()
                .AddScheme<AuthenticationSchemeOptions, RecordingHandler>(RecordingHandler.SchemeName, null),
        };
    }

    public Task InitializeAsync() => _gateway.InitializeAsync();

    public Task DisposeAsync() => _gateway.DisposeAsync();

    [Fact]
    public async Task An_API_request_runs_no_authentication_handler()
    {
        using var api = _gateway.Client(_gateway.A.Key);
        while (_gateway.Logs.TryDequeue(out _))
        {
        }
        _seen.Clear();
        using (var response = await api.GetAsync("v1/models"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        using (var response = await api.PostAsync("v1/chat/completions", new StringContent("""{"model":"lovelace:chat","messages":[{"role":"user","content":"hi"}]}""", System.Text.Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        Assert.Empty(_seen);
        var logged = _gateway.Logs.ToArray();
        Assert.DoesNotContain(logged, line => line.StartsWith("OpenIddict", StringComparison.Ordinal) || line.Contains("Authentication", StringComparison.Ordinal));

        // The sign-in page and the discovery document do go through authentication (the discovery document is
        // answered by OpenIddict, which comes first), so the checks above can fail.
        using var anonymous = _gateway.Client(null);
        (await anonymous.GetAsync("account/login")).Dispose();
        Assert.Equal(["/account/login"], _seen);
        (await anonymous.GetAsync(".well-known/openid-configuration")).Dispose();
        Assert.Contains(_gateway.Logs, line => line.StartsWith("OpenIddict", StringComparison.Ordinal));
    }

    [Fact]
    public void The_hosting_layer_logs_nothing_per_request_so_it_starts_no_activity()
    {
        // While the gateway's own loggers are on, ASP.NET Core's per-request logger is off; while it is on, the hosting
        // layer creates an Activity (and an execution-context copy) for every request.
        var loggers = _gateway.Services.GetRequiredService<ILoggerFactory>();
        Assert.True(loggers.CreateLogger("Lattice.Gateway").IsEnabled(LogLevel.Information));
        Assert.False(loggers.CreateLogger(Lattice.Gateway.Hosting.GatewayApp.HostingDiagnosticsCategory).IsEnabled(LogLevel.Critical));
    }

    private sealed class RecordingHandler(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder, ConcurrentQueue<string> seen)
        : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder), IAuthenticationRequestHandler
    {
        public const string SchemeName = "recording";

        public Task<bool> HandleRequestAsync()
        {
            seen.Enqueue(Request.Path.Value ?? "");
            return Task.FromResult(false);
        }

        protected override Task<AuthenticateResult> HandleAuthenticateAsync() => Task.FromResult(AuthenticateResult.NoResult());
    }
}
