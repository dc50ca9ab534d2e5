using System.Security.Cryptography;
using System.Text;
using Lattice.Gateway.Auth;
using Lattice.Gateway.OpenAi;
using Microsoft.Extensions.Options;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Lattice.Gateway.Telemetry;

/// <summary>
/// Metrics and traces through OpenTelemetry: the gateway's meter (<see cref="GatewayMetrics"/>) and .NET's runtime meter
/// scraped at <c>/metrics</c> in Prometheus' format, and — when a collector is configured — pushed over OTLP together
/// with the request path's spans (<see cref="GatewayTracing"/>). Readiness (<c>/readyz</c>) lives here too.
/// </summary>
public static class TelemetryServices
{
    public const string MetricsPath = "/metrics";

    /// <summary>.NET's own meter (GC, thread pool, CPU): collected at no cost per request.</summary>
    private const string RuntimeMeter = "System.Runtime";

    public static IServiceCollection AddTelemetry(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<TelemetryOptions>().BindConfiguration(TelemetryOptions.Section);
        services.AddOptions<MetricsOptions>().BindConfiguration(MetricsOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<OtlpOptions>().BindConfiguration(OtlpOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<GatewayMetrics>();
        services.AddReadiness();

        // Whether there is a collector to push to decides what is registered, so it is read here, at composition, from
        // the environment or appsettings. Lattice:Telemetry:Enabled is read from the options once the host is built.
        var otlp = configuration.GetSection(OtlpOptions.Section).Get<OtlpOptions>() ?? new();
        var pushes = !string.IsNullOrWhiteSpace(otlp.Endpoint) || !string.IsNullOrWhiteSpace(configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        var telemetry = services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("lattice-gateway"))
            .WithMetrics(metrics =>
            {
                // Every scrape sees the counters as they are now (the exporter's default is to answer from a 300 ms cache).
                metrics.AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0);
                if (pushes)
                {
                    metrics.AddOtlpExporter(o => Configure(o, otlp, "v1/metrics"));
                }
            });
        if (pushes)
        {
            // Spans are only pushed: with no collector nothing listens, and the request path starts none.
            // "Microsoft.AspNetCore" is the server's own span per request, the parent of the gateway's.
            telemetry.WithTracing(tracing => tracing.AddOtlpExporter(o => Configure(o, otlp, "v1/traces")));
            services.ConfigureOpenTelemetryTracerProvider((provider, tracing) =>
            {
                if (Enabled(provider))
                {
                    tracing.AddSource(GatewayTracing.SourceName, "Microsoft.AspNetCore");
                }
            });
        }
        // Off, no meter is listened to: every instrument stays disabled and a request records nothing.
        services.ConfigureOpenTelemetryMeterProvider((provider, metrics) =>
        {
            if (Enabled(provider))
            {
                metrics.AddMeter(GatewayMetrics.MeterName, RuntimeMeter);
            }
        });
        return services;
    }

    private static bool Enabled(IServiceProvider services) => services.GetRequiredService<IOptions<TelemetryOptions>>().Value.Enabled;

    /// <summary><c>/metrics</c> (when telemetry is on) and <c>/readyz</c>.</summary>
    public static void MapTelemetry(this WebApplication app)
    {
        app.MapReadiness();
        if (app.Services.GetRequiredService<IOptions<TelemetryOptions>>().Value.Enabled)
        {
            app.MapPrometheusScrapingEndpoint(MetricsPath, meterProvider: null,
                configureBranchedPipeline: branch => branch.Use(static (context, next) => GuardAsync(context, next)), optionsName: null);
        }
    }

    private static void Configure(OtlpExporterOptions exporter, OtlpOptions otlp, string signalPath)
    {
        if (string.IsNullOrWhiteSpace(otlp.Endpoint))
        {
            // OTEL_EXPORTER_OTLP_* configure the exporter themselves.
            return;
        }
        var http = otlp.Protocol == "http/protobuf";
        exporter.Protocol = http ? OtlpExportProtocol.HttpProtobuf : OtlpExportProtocol.Grpc;
        // Set in code, an http/protobuf endpoint is the signal's full URL.
        exporter.Endpoint = new Uri(http ? otlp.Endpoint.TrimEnd('/') + "/" + signalPath : otlp.Endpoint);
    }

    /// <summary>
    /// Lets a scrape through with the configured bearer token, or from loopback when
    /// <see cref="MetricsOptions.AllowLoopback"/>; otherwise the OpenAI 401 every other route gives. A wrong token counts
    /// as a failed authentication from its address, like a wrong key.
    /// </summary>
    private static async Task GuardAsync(HttpContext context, Func<Task> next)
    {
        var options = context.RequestServices.GetRequiredService<IOptions<MetricsOptions>>().Value;
        var presented = Bearer(context.Request);
        if (options.Token is { } token && presented is not null && Same(token, presented))
        {
            await next();
            return;
        }
        if (options.AllowLoopback && context.Connection.RemoteIpAddress is { } address && System.Net.IPAddress.IsLoopback(address))
        {
            await next();
            return;
        }
        if (presented is not null)
        {
            try
            {
                if (!await context.RequestServices.GetRequiredService<IFailedAuthLimiter>().RecordFailureAsync(context))
                {
                    context.RequestServices.GetRequiredService<GatewayMetrics>().Rejected(GatewayMetrics.Limiters.FailedAuth);
                    await OpenAiErrors.WriteAsync(context, EndpointAuth.ErrorFor(AuthFailure.TooManyFailures));
                    return;
                }
            }
            catch (Persistence.SharedCountersUnavailableException)
            {
                await OpenAiErrors.WriteAsync(context, GatewayError.CountersUnavailable());
                return;
            }
        }
        await OpenAiErrors.WriteAsync(context, GatewayError.Unauthenticated(
            "Scraping /metrics needs 'Authorization: Bearer <Lattice:Metrics:Token>' (or, with Lattice:Metrics:AllowLoopback, a loopback address)."));
    }

    private static string? Bearer(HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        return header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header["Bearer ".Length..].Trim() : null;
    }

    private static bool Same(string expected, string presented) =>
        CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(expected)), SHA256.HashData(Encoding.UTF8.GetBytes(presented)));
}
