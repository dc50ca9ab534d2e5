using System.Net;
using System.Net.Sockets;
using Lattice.Runtime.Telemetry;

namespace Lattice.Runtime.Tests.Telemetry;

/// <summary>
/// A daemon's metrics with their scrape endpoint on a free loopback port. Each has a meter of its own name, so tests
/// running side by side do not see each other's dispatches.
/// </summary>
public sealed class ScrapedDaemon : IDisposable
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(60) };
    private readonly IDisposable _endpoint;

    public ScrapedDaemon()
    {
        Metrics = new RuntimeMetrics("Lattice.Runtime.Test." + Guid.NewGuid().ToString("N"));
        Address = FreeLoopbackPort();
        _endpoint = MetricsEndpoint.Start(Metrics, Address);
    }

    public RuntimeMetrics Metrics { get; }

    public IPEndPoint Address { get; }

    public Uri Url => new($"http://{Address}{MetricsEndpoint.Path}");

    /// <summary>One scrape over HTTP: its status must be 200; the body in Prometheus' text format.</summary>
    public async Task<string> ScrapeAsync()
    {
        using var response = await Http.GetAsync(Url);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.Content.ReadAsStringAsync();
    }

    /// <summary>The scraped lines that are samples (not # HELP / # TYPE comments).</summary>
    public async Task<string[]> SamplesAsync() =>
        (await ScrapeAsync()).Split('\n').Where(l => l.Length > 0 && !l.StartsWith('#')).ToArray();

    private static IPEndPoint FreeLoopbackPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return new IPEndPoint(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
    }

    public void Dispose()
    {
        _endpoint.Dispose();
        Metrics.Dispose();
    }
}
