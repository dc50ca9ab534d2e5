using Lattice.Gateway.Changes;
using System.Net;
using Lattice.Gateway.Admin;
using Lattice.Gateway.ApiReference;
using Lattice.Gateway.Anthropic;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Billing;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Cluster;
using Lattice.Gateway.Console;
using Lattice.Gateway.Identity;
using Lattice.Gateway.Metering;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Responses;
using Lattice.Gateway.Runtimes;
using Lattice.Gateway.Tasks;
using Lattice.Gateway.Telemetry;
using Lattice.Gateway.Upstreams;
using Lattice.Protocol;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.HttpOverrides;
using KestrelServerOptions = Microsoft.AspNetCore.Server.Kestrel.Core.KestrelServerOptions;
using MinDataRate = Microsoft.AspNetCore.Server.Kestrel.Core.MinDataRate;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Http.Resilience;
using Microsoft.Extensions.Options;
using Polly;

namespace Lattice.Gateway.Hosting;

/// <summary>Composes the gateway. The gateway's own Program and the <c>lattice up</c> command both build it here.</summary>
public static class GatewayApp
{
    /// <summary>The logger ASP.NET Core's hosting layer writes per-request lines to.</summary>
    public const string HostingDiagnosticsCategory = "Microsoft.AspNetCore.Hosting.Diagnostics";

    private const string DataProtectionKeyManagerCategory = "Microsoft.AspNetCore.DataProtection.KeyManagement.XmlKeyManager";

    public static WebApplicationBuilder CreateBuilder(string[] args)
    {
        var builder = WebApplication.CreateSlimBuilder(args);
        // ASP.NET Core starts an Activity for every request while its hosting logger is enabled at any level. The
        // gateway writes no per-request log lines (prompts and answers are never logged), so that logger is off and
        // requests carry no Activity unless a tracing listener asks for one.
        builder.Logging.AddFilter(HostingDiagnosticsCategory, LogLevel.None);
        // The data-protection key ring is written without an XML encryptor on purpose: like the OAuth keys it is
        // protected by owner-only files in the data directory, so the warning about that on every first start is noise.
        builder.Logging.AddFilter(DataProtectionKeyManagerCategory, LogLevel.Error);
        builder.Services.AddGateway(builder.Configuration);
        builder.WebHost.ConfigureKestrel((context, kestrel) =>
        {
            var max = context.Configuration.GetValue<long?>($"{GatewayOptions.Section}:{nameof(GatewayOptions.MaxRequestBodyBytes)}") ?? new GatewayOptions().MaxRequestBodyBytes;
            kestrel.Limits.MaxRequestBodySize = max + 1;
            kestrel.AddServerHeader = false;
        });
        return builder;
    }

    public static IServiceCollection AddGateway(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<GatewayOptions>().Bind(configuration.GetSection(GatewayOptions.Section)).ValidateDataAnnotations()
            .Validate(o => o.PublicUrl is null || o.ParsePublicUrl() is not null,
                "Lattice:PublicUrl must be an absolute http or https URL without query, fragment or user info, such as https://lattice.example.com.")
            .Validate(o => o.BodyLimits.Values.All(v => v >= 1), "Lattice:BodyLimits: every task's limit must be a positive number of bytes.")
            .Validate(o => o.MinRequestBodyGracePeriod >= TimeSpan.FromSeconds(1), "Lattice:MinRequestBodyGracePeriod must be at least 1 second (00:00:01).")
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<GatewayOptions>, Auth.AdminKeyPolicy.Validation>();
        services.AddSingleton<IValidateOptions<GatewayOptions>, GatewayOptions.DatabaseValidation>();
        services.AddOptions<UpstreamCredentialsOptions>().Bind(configuration.GetSection(GatewayOptions.Section));
        // Kestrel's own limits from the validated options: a slow-loris upload is cut by its minimum data rate.
        services.AddOptions<KestrelServerOptions>().Configure<IOptions<GatewayOptions>>((kestrel, gateway) =>
        {
            var rate = gateway.Value.MinRequestBodyBytesPerSecond;
            kestrel.Limits.MinRequestBodyDataRate = rate > 0 ? new MinDataRate(rate, gateway.Value.MinRequestBodyGracePeriod) : null;
        });
        services.TryAddSingletonTimeProvider();
        services.AddProblemDetails();
        services.ConfigureHttpJsonOptions(o =>
        {
            o.SerializerOptions.PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.SnakeCaseLower;
            o.SerializerOptions.TypeInfoResolverChain.Insert(0, AdminJsonContext.Default);
        });

        services.AddPersistence();
        services.AddChangeFeed();
        services.AddAuth();
        services.AddCatalog();
        services.AddMetering();
        services.AddSingleton<NativeHeapTrimmer>();
        services.AddHostedService(sp => sp.GetRequiredService<NativeHeapTrimmer>());
        services.AddBilling();
        services.AddTasks();
        services.AddUpstreams();
        services.AddRuntimes();
        services.AddCluster();
        services.AddIdentityServer();
        services.AddResponses();
        services.AddTelemetry(configuration);
        services.AddApiReference();
        // Last: with Lattice:Redis set, the shared counters take the in-process ones' place.
        services.AddSharedCounters();
        return services;
    }

    /// <summary>
    /// The forwarded client address and scheme, believed only from <see cref="GatewayOptions.TrustedProxies"/> (none by
    /// default, not even loopback): everything that counts per client — the failed-authentication limiter first — then
    /// sees the real client behind a proxy, and nobody else can choose the address they are counted as.
    /// </summary>
    private static void UseTrustedProxies(WebApplication app)
    {
        var proxies = app.Services.GetRequiredService<IOptions<GatewayOptions>>().Value.TrustedProxies;
        if (proxies.Length == 0)
        {
            return;
        }
        var forwarded = new ForwardedHeadersOptions { ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto };
        forwarded.KnownProxies.Clear();
        forwarded.KnownIPNetworks.Clear();
        foreach (var proxy in proxies)
        {
            if (System.Net.IPNetwork.TryParse(proxy, out var network))
            {
                forwarded.KnownIPNetworks.Add(network);
            }
            else if (System.Net.IPAddress.TryParse(proxy, out var address))
            {
                forwarded.KnownProxies.Add(address);
            }
            else
            {
                throw new OptionsValidationException(GatewayOptions.Section, typeof(GatewayOptions),
                    [$"Lattice:TrustedProxies: '{proxy}' is neither an IP address nor a network such as 10.0.0.0/8."]);
            }
        }
        app.UseForwardedHeaders(forwarded);
    }

    public static WebApplication Build(WebApplicationBuilder builder)
    {
        var app = builder.Build();
        UseTrustedProxies(app);
        app.UseMiddleware<RequestIdMiddleware>();
        app.UseExceptionHandler(new ExceptionHandlerOptions { ExceptionHandler = WriteUnhandledAsync, StatusCodeSelector = StatusFor });
        app.UseStatusCodePages(new StatusCodePagesOptions { HandleAsync = WriteStatusAsync });

        // Cookies and OpenIddict's protocol endpoints only where a person or an OAuth client talks to the gateway;
        // the API routes authenticate through EndpointAuth and pay nothing for this.
        app.UseWhen(IsIdentityPath, identity => identity.UseAuthentication());
        // WebApplication adds UseAuthentication at the head of the pipeline unless this flag is set on the app itself
        // (UseWhen sets it on the branch's copy only); without it OpenIddict inspects every API request's URL.
        ((IApplicationBuilder)app).Properties[AuthenticationMiddlewareSetKey] = true;
        app.UseScopeGate();
        app.UseBilling();

        app.MapGet("/healthz", () => TypedResults.Text("ok"));
        app.MapTelemetry();
        app.MapApiReference();
        app.UseWebSockets();
        app.MapOpenAi();
        app.MapAnthropic();
        app.MapResponses();
        app.MapRuntimes();
        app.MapCluster();
        app.MapAdmin();
        app.MapUsage();
        app.MapBilling();
        app.MapIdentity();
        app.MapDeviceDone();
        app.MapSignInLinks();
        app.MapInvitations();
        app.MapConsole();
        app.MapFallback(context => OpenAiErrors.WriteAsync(context, GatewayError.NotFound($"Invalid URL ({context.Request.Method} {context.Request.Path}).")));
        return app;
    }

    /// <summary>The key WebApplication checks before adding the authentication middleware on its own.</summary>
    private const string AuthenticationMiddlewareSetKey = "__AuthenticationMiddlewareSet";

    private static bool IsIdentityPath(HttpContext context)
    {
        var path = context.Request.Path;
        return path.StartsWithSegments("/connect") || path.StartsWithSegments("/account") || path.StartsWithSegments("/.well-known");
    }

    private static void TryAddSingletonTimeProvider(this IServiceCollection services)
    {
        if (!services.Any(s => s.ServiceType == typeof(TimeProvider)))
        {
            services.AddSingleton(TimeProvider.System);
        }
    }

    private static IServiceCollection AddPersistence(this IServiceCollection services)
    {
        // Pooled: a context (its options, services and connection object) is reused rather than built per scope, which
        // matters for the revocation log and change feed read four times a second on every node. Both providers' pools are registered and
        // the configured one is chosen when a scope first asks: services take a LatticeDbContext either way, and on
        // PostgreSQL it is the subclass whose type selects PostgreSQL's migrations.
        services.AddSingleton(sp => sp.GetRequiredService<IOptions<GatewayOptions>>().Value.ResolveDatabase());
        services.AddPooledDbContextFactory<LatticeDbContext>((sp, db) => db.UseSqlite(sp.GetRequiredService<DatabaseLocation>().ConnectionString)
            .AddInterceptors(SqliteBusyTimeout.Instance));
        services.AddPooledDbContextFactory<PostgresLatticeDbContext>((sp, db) => db.UseNpgsql(sp.GetRequiredService<DatabaseLocation>().ConnectionString));
        services.AddScoped<LatticeDbContext>(sp => sp.GetRequiredService<DatabaseLocation>().Provider == DatabaseProvider.Postgres
            ? sp.GetRequiredService<IDbContextFactory<PostgresLatticeDbContext>>().CreateDbContext()
            : sp.GetRequiredService<IDbContextFactory<LatticeDbContext>>().CreateDbContext());
        services.AddScoped<DatabaseInitializer>();
        services.AddHostedService<DatabaseInitializerService>();
        return services;
    }

    private static IServiceCollection AddAuth(this IServiceCollection services)
    {
        services.AddSingleton<ApiKeyStore>();
        services.AddChangeHandler<ApiKeyStore>();
        services.AddSingleton<Authenticator>();
        services.AddSingleton<FailedAuthLimiter>();
        services.AddSingleton<IFailedAuthLimiter>(sp => sp.GetRequiredService<FailedAuthLimiter>());
        services.AddSingleton<PublicUrl>();
        return services;
    }

    private static IServiceCollection AddCatalog(this IServiceCollection services)
    {
        services.AddSingleton<CatalogStore>();
        services.AddChangeHandler<CatalogStore>();
        return services;
    }

    private static IServiceCollection AddUpstreams(this IServiceCollection services)
    {
        services.AddSingleton<UpstreamTarget>();
        services.AddHttpClient(UpstreamTarget.ClientName)
            .ConfigureHttpClient(c => c.Timeout = Timeout.InfiniteTimeSpan)
            .ConfigurePrimaryHttpMessageHandler(sp => new SocketsHttpHandler
            {
                // Never to a link-local (metadata) address, however the host name resolves.
                ConnectCallback = UpstreamAddressPolicy.Connect(sp.GetRequiredService<IOptions<UpstreamCredentialsOptions>>().Value.AllowLinkLocalUpstreams),
                UseProxy = false,
                UseCookies = false,
                AllowAutoRedirect = false,
                AutomaticDecompression = DecompressionMethods.None,
                PooledConnectionLifetime = TimeSpan.FromMinutes(5),
                ConnectTimeout = TimeSpan.FromSeconds(10),
                EnableMultipleHttp2Connections = true,
                // No trace headers to third parties, and no per-request Activity work on the hot path.
                ActivityHeadersPropagator = null,
            })
            .SetHandlerLifetime(Timeout.InfiniteTimeSpan)
            .RemoveAllLoggers()
            .AddResilienceHandler("upstream", pipeline => pipeline.AddCircuitBreaker(new HttpCircuitBreakerStrategyOptions
            {
                // Only transport failures open the circuit: a 5xx for one model must not cut off the endpoint's other models.
                ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is HttpRequestException),
                FailureRatio = 0.8,
                MinimumThroughput = 20,
                SamplingDuration = TimeSpan.FromSeconds(30),
                BreakDuration = TimeSpan.FromSeconds(5),
            }))
            .SelectPipelineByAuthority();
        return services;
    }

    private static int StatusFor(Exception exception) => exception switch
    {
        BadHttpRequestException bad => bad.StatusCode,
        Persistence.SharedCountersUnavailableException => StatusCodes.Status503ServiceUnavailable,
        _ => StatusCodes.Status500InternalServerError,
    };

    private static Task WriteUnhandledAsync(HttpContext context)
    {
        // The exception handler cleared the response headers; the request keeps its id.
        context.Response.Headers["x-request-id"] = context.TraceIdentifier;
        var exception = context.Features.Get<IExceptionHandlerFeature>()?.Error;
        var error = exception switch
        {
            BadHttpRequestException { InnerException: System.Text.Json.JsonException } bad =>
                new GatewayError(bad.StatusCode, ErrorTypes.InvalidRequest, ErrorCodes.InvalidJson, "The request body is not the JSON this endpoint expects: " + bad.InnerException!.Message),
            BadHttpRequestException bad => GatewayError.BodyUnreadable(bad, context.RequestServices.GetRequiredService<IOptions<GatewayOptions>>().Value.MaxRequestBodyBytes),
            // Where no stage answered it in its own shape (an admin read of a budget, a sign-in page): still a 503.
            Persistence.SharedCountersUnavailableException => GatewayError.CountersUnavailable(),
            _ => new GatewayError(StatusCodes.Status500InternalServerError, ErrorTypes.Server, "internal_error", "The gateway failed to handle the request."),
        };
        return OpenAiErrors.WriteAsync(context, error);
    }

    private static Task WriteStatusAsync(StatusCodeContext status)
    {
        var context = status.HttpContext;
        var code = context.Response.StatusCode;
        var error = code switch
        {
            StatusCodes.Status400BadRequest => GatewayError.InvalidRequest("The request body could not be read as the JSON this endpoint expects.", null, ErrorCodes.InvalidJson),
            StatusCodes.Status404NotFound => GatewayError.NotFound($"Invalid URL ({context.Request.Method} {context.Request.Path})."),
            StatusCodes.Status405MethodNotAllowed => new GatewayError(code, ErrorTypes.InvalidRequest, ErrorCodes.MethodNotAllowed, $"Method {context.Request.Method} is not allowed on {context.Request.Path}."),
            StatusCodes.Status413PayloadTooLarge => GatewayError.TooLarge(context.RequestServices.GetRequiredService<IOptions<GatewayOptions>>().Value.MaxRequestBodyBytes),
            StatusCodes.Status415UnsupportedMediaType => GatewayError.UnsupportedMediaType("application/json"),
            _ => new GatewayError(code, code >= 500 ? ErrorTypes.Server : ErrorTypes.InvalidRequest, null, $"The request failed with status {code}."),
        };
        return OpenAiErrors.WriteAsync(context, error);
    }
}
