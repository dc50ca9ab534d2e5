using System.ComponentModel.DataAnnotations;

namespace Lattice.Gateway.Telemetry;

/// <summary>The <c>Lattice:Telemetry</c> section: whether the gateway collects metrics and traces at all.</summary>
public sealed class TelemetryOptions
{
    public const string Section = "Lattice:Telemetry";

    /// <summary>
    /// On by default. Off: no metrics are collected, <c>/metrics</c> is not served and no span is exported — what the
    /// benchmark's A/B compares against (<c>Lattice__Telemetry__Enabled=false</c>).
    /// </summary>
    public bool Enabled { get; set; } = true;
}

/// <summary>The <c>Lattice:Metrics</c> section: who may scrape <c>/metrics</c>.</summary>
public sealed class MetricsOptions : IValidatableObject
{
    public const string Section = "Lattice:Metrics";

    /// <summary>A bearer token that scrapers send (<c>Authorization: Bearer …</c>); at least 16 characters. Unset: no token opens it.</summary>
    public string? Token { get; set; }

    /// <summary>
    /// Whether a request from a loopback address may scrape without the token (<c>lattice up</c> sets it). Behind a reverse
    /// proxy on the same host, leave it off: the proxy's requests come from loopback too unless it is a trusted proxy.
    /// </summary>
    public bool AllowLoopback { get; set; }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Token is not null && Token.Trim().Length < 16)
        {
            yield return new ValidationResult("Lattice:Metrics:Token must be at least 16 characters.", [nameof(Token)]);
        }
    }
}

/// <summary>
/// The <c>Lattice:Otlp</c> section: where metrics and traces are pushed over OTLP. The standard
/// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> (and the other <c>OTEL_EXPORTER_OTLP_*</c> variables) works as well.
/// </summary>
public sealed class OtlpOptions
{
    public const string Section = "Lattice:Otlp";

    /// <summary>The collector, e.g. <c>http://127.0.0.1:4317</c> (gRPC) or <c>http://127.0.0.1:4318</c> (<see cref="Protocol"/> http/protobuf).</summary>
    public string? Endpoint { get; set; }

    /// <summary><c>grpc</c> (the default) or <c>http/protobuf</c>.</summary>
    [RegularExpression("^(grpc|http/protobuf)$", ErrorMessage = "Lattice:Otlp:Protocol must be grpc or http/protobuf.")]
    public string Protocol { get; set; } = "grpc";
}
