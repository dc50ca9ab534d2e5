using System.Diagnostics;

namespace Lattice.Gateway.Telemetry;

/// <summary>
/// The gateway's spans, one per stage of the request path: <c>lattice.auth</c>, <c>lattice.request</c> (the dispatch) and
/// within it <c>lattice.route</c>, <c>lattice.admission</c>, one <c>lattice.dispatch</c> per candidate tried and
/// <c>lattice.relay</c>. Tags name ids, models, statuses and sizes — never a prompt, an answer or a credential.
/// With no tracing listener (no OTLP exporter configured) <see cref="ActivitySource.StartActivity(string, ActivityKind)"/>
/// returns null and a request pays nothing else.
/// </summary>
public static class GatewayTracing
{
    public const string SourceName = "Lattice.Gateway";

    public static readonly ActivitySource Source = new(SourceName);

    public static Activity? Start(string name, ActivityKind kind = ActivityKind.Internal) => Source.StartActivity(name, kind);
}
