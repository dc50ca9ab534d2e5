using System.Net;
using System.Net.Sockets;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace Lattice.Runtime.Telemetry;

/// <summary>
/// The daemon's Prometheus scrape endpoint, <c>http://address:port/metrics</c> (config <c>[daemon] metrics</c>, off by
/// default): OpenTelemetry's meter provider over <see cref="RuntimeMetrics"/> and .NET's <c>System.Runtime</c> meter,
/// served by OpenTelemetry's stand-alone HttpListener exporter. It has no authentication, which is why the config
/// takes a loopback address unless told otherwise.
/// </summary>
public static class MetricsEndpoint
{
    public const string Path = "/metrics";

    /// <summary>.NET's own meter (GC, thread pool, CPU).</summary>
    private const string DotNetMeter = "System.Runtime";

    /// <summary>Starts listening; disposing the result stops it. Throws <see cref="MetricsEndpointException"/> when the address cannot be taken.</summary>
    public static IDisposable Start(RuntimeMetrics metrics, IPEndPoint address)
    {
        var host = address.Address.Equals(IPAddress.Any) || address.Address.Equals(IPAddress.IPv6Any) ? "*"
            : address.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{address.Address}]"
            : address.Address.ToString();
        try
        {
            return Sdk.CreateMeterProviderBuilder()
                .ConfigureResource(resource => resource.AddService("lattice-runtime"))
                .AddMeter(metrics.Name, DotNetMeter)
                .AddPrometheusHttpListener(o =>
                {
                    o.Host = host;
                    o.Port = address.Port;
                    o.ScrapeEndpointPath = Path;
                    // Every scrape sees the counters as they are now (the exporter's default answers from a 300 ms cache).
                    o.ScrapeResponseCacheDurationMilliseconds = 0;
                    // One meter of the daemon's own: its name on every line would add nothing.
                    o.ScopeInfoEnabled = false;
                })
                .Build();
        }
        catch (Exception ex) when (ex is HttpListenerException || ex.InnerException is HttpListenerException)
        {
            // The exporter wraps the listener's failure ("PrometheusExporter HttpListener could not be started").
            var reason = (ex as HttpListenerException ?? (HttpListenerException)ex.InnerException!).Message;
            throw new MetricsEndpointException($"cannot serve metrics on {host}:{address.Port}: {reason}", ex);
        }
    }
}

/// <summary>The scrape endpoint could not start (the port is taken, the address is not this machine's).</summary>
public sealed class MetricsEndpointException(string message, Exception inner) : Exception(message, inner);
