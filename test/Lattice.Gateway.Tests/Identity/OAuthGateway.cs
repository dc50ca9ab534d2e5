using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.StandIn.OpenAi;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>
/// The gateway on a real loopback port with a stand-in upstream, two workspaces (A and B) each with a user, a
/// developer key and a registered OAuth app, for driving the whole OAuth flow with a real HTTP client.
/// </summary>
public sealed partial class OAuthGateway : IAsyncLifetime
{
    public const string AdminKey = "sk_admin_oauth_tests_0123456789abcdef";
    public const string UpstreamKey = "upstream-secret-key";
    public const string Password = "correct horse battery staple";
    public const string RedirectUri = "http://127.0.0.1:9/callback";

    public static readonly string[] AllLatticeScopes =
    [
        "lattice:compute:inference", "lattice:compute:catalog:read", "lattice:compute:personal_runtime:manage",
        "lattice:compute:usage:read", "lattice:compute:streaming", "lattice:compute:workspace_only", "lattice:compute:marketplace",
    ];

    private readonly string _dataDir = Path.Combine(Path.GetTempPath(), "lattice-oauth-" + Guid.NewGuid().ToString("N"));
    private readonly Dictionary<string, string?> _settings;
    private WebApplication? _standIn;
    private WebApplication? _app;

    public OAuthGateway() => _settings = [];

    /// <summary>A gateway with extra configuration, for tests that need their own instance.</summary>
    public static OAuthGateway With(Dictionary<string, string?> settings, LogLevel minimumLogLevel = LogLevel.Warning,
        Action<IServiceCollection>? configureServices = null)
    {
        var gateway = new OAuthGateway { MinimumLogLevel = minimumLogLevel, ConfigureServices = configureServices };
        foreach (var (k, v) in settings)
        {
            gateway._settings[k] = v;
        }
        return gateway;
    }

    public string DataDirectory => _dataDir;
    public string Origin { get; private set; } = "";
    public string StandInUrl { get; private set; } = "";
    public HttpClient Admin { get; private set; } = null!;
    public Tenant A { get; private set; } = null!;
    public Tenant B { get; private set; } = null!;
    public IServiceProvider Services => _app!.Services;

    public sealed record Tenant(string WorkspaceId, string Key, string UserId, string Email, string ClientId, string ClientSecret, string PublicClientId);

    public async Task InitializeAsync()
    {
        _standIn = StandInServer.Build(["--api-key", UpstreamKey, "--urls", "http://127.0.0.1:0"]);
        await _standIn.StartAsync();
        StandInUrl = _standIn.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');

        var builder = GatewayApp.CreateBuilder([]);
        var settings = new Dictionary<string, string?>
        {
            ["Lattice:DataDirectory"] = _dataDir,
            ["Lattice:AdminKey"] = AdminKey,
            ["Lattice:Credentials:standin"] = UpstreamKey,
        };
        foreach (var (k, v) in _settings)
        {
            settings[k] = v;
        }
        _effective = settings;
        (_app, Origin) = await StartNodeAsync();
        // Every node of a deployment shares one public URL (the issuer of its tokens): nodes started later are told the
        // first node's own address, which is what it derived for itself.
        _effective.TryAdd("Lattice:PublicUrl", Origin);
        Admin = Client(AdminKey);

        await PostAsync(Admin, "admin/v1/models", new JsonObject
        {
            ["id"] = "lovelace:chat",
            ["offers"] = new JsonArray(new JsonObject { ["base_url"] = StandInUrl + "/v1", ["upstream_model"] = "standin-chat", ["credential"] = "standin" }),
        });
        await PostAsync(Admin, "admin/v1/models", new JsonObject
        {
            ["id"] = "lovelace:market-only",
            ["offers"] = new JsonArray(new JsonObject { ["base_url"] = StandInUrl + "/v1", ["upstream_model"] = "standin-chat", ["credential"] = "standin", ["capacity"] = "marketplace" }),
        });
        await PostAsync(Admin, "admin/v1/models", new JsonObject
        {
            ["id"] = "lovelace:drip",
            ["offers"] = new JsonArray(new JsonObject { ["base_url"] = StandInUrl + "/v1", ["upstream_model"] = "standin-drip", ["credential"] = "standin" }),
        });
        A = await NewTenantAsync("a");
        B = await NewTenantAsync("b");
    }

    private Dictionary<string, string?> _effective = [];

    /// <summary>Everything the gateway logged at or above <see cref="MinimumLogLevel"/>, formatted, with exceptions.</summary>
    public System.Collections.Concurrent.ConcurrentQueue<string> Logs { get; } = new();

    public LogLevel MinimumLogLevel { get; init; } = LogLevel.Warning;

    /// <summary>Extra services for every node this fixture starts.</summary>
    public Action<IServiceCollection>? ConfigureServices { get; init; }

    private sealed class CapturingLoggerProvider(System.Collections.Concurrent.ConcurrentQueue<string> sink) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new Logger(categoryName, sink);

        public void Dispose()
        {
        }

        private sealed class Logger(string category, System.Collections.Concurrent.ConcurrentQueue<string> sink) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                sink.Enqueue($"{category} {logLevel} {formatter(state, exception)} {exception}");
        }
    }

    /// <summary>
    /// Starts a gateway node on the same database and keys — another node of the same deployment. The caller
    /// stops and disposes it.
    /// </summary>
    public async Task<(WebApplication App, string Origin)> StartNodeAsync()
    {
        var builder = GatewayApp.CreateBuilder([]);
        builder.Configuration.AddInMemoryCollection(_effective);
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.SetMinimumLevel(MinimumLogLevel);
        builder.Logging.AddProvider(new CapturingLoggerProvider(Logs));
        ConfigureServices?.Invoke(builder.Services);
        var app = GatewayApp.Build(builder);
        await app.StartAsync();
        return (app, app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/'));
    }

    public async Task<Tenant> NewTenantAsync(string name)
    {
        var ws = (await PostAsync(Admin, "admin/v1/workspaces", new JsonObject { ["name"] = name }))["id"]!.GetValue<string>();
        var key = (await PostAsync(Admin, $"admin/v1/workspaces/{ws}/keys", new JsonObject
        {
            ["name"] = name,
            ["scopes"] = new JsonArray("lattice:compute:inference", "lattice:compute:catalog:read", "lattice:compute:personal_runtime:manage", "lattice:compute:streaming", "lattice:workspace:admin"),
        }))["key"]!.GetValue<string>();
        var email = $"{name}-{Guid.NewGuid():N}@example.test";
        var user = (await PostAsync(Admin, "admin/v1/users", new JsonObject { ["email"] = email, ["name"] = name.ToUpperInvariant(), ["password"] = Password }))["id"]!.GetValue<string>();
        await PostAsync(Admin, $"admin/v1/workspaces/{ws}/members", new JsonObject { ["user_id"] = user });
        var workspaceAdmin = Client(key);
        var app = await PostAsync(workspaceAdmin, $"admin/v1/workspaces/{ws}/apps", new JsonObject
        {
            ["name"] = $"App of {name}",
            ["redirect_uris"] = new JsonArray(RedirectUri),
            ["scopes"] = new JsonArray([.. AllLatticeScopes.Select(s => (JsonNode)s), "offline_access", "openid"]),
            ["confidential"] = true,
        });
        var publicApp = await PostAsync(workspaceAdmin, $"admin/v1/workspaces/{ws}/apps", new JsonObject
        {
            ["name"] = $"Public app of {name}",
            ["redirect_uris"] = new JsonArray(RedirectUri),
            ["scopes"] = new JsonArray([.. AllLatticeScopes.Select(s => (JsonNode)s), "offline_access"]),
            ["device_flow"] = true,
        });
        return new Tenant(ws, key, user, email, app["client_id"]!.GetValue<string>(), app["client_secret"]!.GetValue<string>(), publicApp["client_id"]!.GetValue<string>());
    }

    public HttpClient Client(string? credential, string? origin = null)
    {
        var http = new HttpClient { BaseAddress = new Uri((origin ?? Origin) + "/"), Timeout = TimeSpan.FromSeconds(30) };
        if (credential is not null)
        {
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", credential);
        }
        return http;
    }

    /// <summary>A browser-like client: cookies kept, redirects not followed (so each hop can be checked).</summary>
    public Browser NewBrowser() => new(this);

    /// <summary>POSTs JSON and returns the JSON answer; any non-2xx fails the test with the body.</summary>
    public static Task<JsonObject> PostAsync(HttpClient http, string path, JsonNode body) =>
        Infrastructure.GatewayFixture.PostAsync(http, path, body);

    public async Task DisposeAsync()
    {
        await _app.ShutDownAsync();
        await _standIn.ShutDownAsync();
        Hosts.DeleteDataDirectory(_dataDir);
    }

    /// <summary>PKCE verifier and S256 challenge.</summary>
    public static (string Verifier, string Challenge) Pkce()
    {
        var verifier = Base64UrlTextEncoder.Encode(RandomNumberGenerator.GetBytes(32));
        var challenge = Base64UrlTextEncoder.Encode(SHA256.HashData(Encoding.ASCII.GetBytes(verifier)));
        return (verifier, challenge);
    }

    /// <summary>Cookies and no automatic redirects: a person's browser, one hop at a time.</summary>
    public sealed partial class Browser : IDisposable
    {
        private readonly HttpClient _http;

        public Browser(OAuthGateway gateway)
        {
            _http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false, CookieContainer = new CookieContainer(), UseCookies = true })
            {
                BaseAddress = new Uri(gateway.Origin + "/"),
            };
        }

        public Task<HttpResponseMessage> GetAsync(string url) => _http.GetAsync(url);

        public Task<HttpResponseMessage> PostFormAsync(string url, IEnumerable<KeyValuePair<string, string>> form) =>
            _http.PostAsync(url, new FormUrlEncodedContent(form));

        /// <summary>Signs in through the sign-in page; returns where the gateway redirected afterwards.</summary>
        public async Task<HttpResponseMessage> SignInAsync(string email, string password, string returnUrl = "/account/login")
        {
            var page = await (await _http.GetAsync("account/login?returnUrl=" + Uri.EscapeDataString(returnUrl))).Content.ReadAsStringAsync();
            var form = HiddenFields(page);
            form.Add(new("email", email));
            form.Add(new("password", password));
            return await PostFormAsync("account/login", form);
        }

        /// <summary>The hidden inputs of the (first) form on a page, antiforgery token included.</summary>
        public static List<KeyValuePair<string, string>> HiddenFields(string html) =>
            HiddenInput().Matches(html).Select(m => new KeyValuePair<string, string>(WebUtility.HtmlDecode(m.Groups[1].Value), WebUtility.HtmlDecode(m.Groups[2].Value))).ToList();

        [GeneratedRegex("<input type=\"hidden\" name=\"([^\"]*)\" value=\"([^\"]*)\">")]
        private static partial Regex HiddenInput();

        public void Dispose() => _http.Dispose();
    }
}
