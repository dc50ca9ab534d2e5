using System.ComponentModel.DataAnnotations;

namespace Lattice.Gateway.Hosting;

/// <summary>The <c>Lattice</c> configuration section.</summary>
public sealed class GatewayOptions
{
    public const string Section = "Lattice";

    /// <summary>Where the embedded database lives when no connection string is given.</summary>
    public string DataDirectory { get; set; } = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".lattice");

    /// <summary>EF Core SQLite connection string; defaults to <c>&lt;DataDirectory&gt;/lattice.db</c>.</summary>
    public string? ConnectionString { get; set; }

    /// <summary>Largest request body accepted, in bytes (OpenAI accepts 25 MB audio files; multipart framing needs a little more).</summary>
    [Range(1024, 1L << 31)]
    public long MaxRequestBodyBytes { get; set; } = 32L * 1024 * 1024;

    /// <summary>How long one upstream attempt may take, from sending to the last byte, unless its offer says otherwise.</summary>
    public TimeSpan UpstreamTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// How long a runtime may go without progress on a dispatch (no frame of it arriving) before it times out; an
    /// answer that keeps producing is never cut.
    /// </summary>
    public TimeSpan RuntimeTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>An operator key for the admin API, configured out of band. Stored hashed at start-up; optional.</summary>
    public string? AdminKey { get; set; }

    /// <summary>Failed authentication attempts allowed per source address per minute before further ones get 429; 0 turns the limit off.</summary>
    [Range(0, int.MaxValue)]
    public int FailedAuthPerMinute { get; set; } = 120;

    /// <summary>
    /// Reverse proxies (addresses, or networks as <c>10.0.0.0/8</c>) whose <c>X-Forwarded-For</c> and
    /// <c>X-Forwarded-Proto</c> the gateway believes. Empty (the default): the headers are ignored and the client is the
    /// socket's address, so no client can pose as another by sending them.
    /// </summary>
    public string[] TrustedProxies { get; set; } = [];

    /// <summary>How long an OAuth access token lives.</summary>
    public TimeSpan AccessTokenLifetime { get; set; } = TimeSpan.FromHours(1);

    public string ResolveConnectionString() =>
        ConnectionString ?? $"Data Source={Path.Combine(DataDirectory, "lattice.db")}";
}

/// <summary>Upstream credentials by name (<c>Lattice:Credentials:&lt;name&gt;</c>). Offers name them; no API returns them.</summary>
public sealed class UpstreamCredentialsOptions
{
    public Dictionary<string, string> Credentials { get; set; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Hosts each credential may be sent to (<c>Lattice:CredentialHosts:&lt;name&gt;:0</c> = <c>api.openai.com</c>, a host
    /// or host:port). A credential with hosts is refused for offers elsewhere and never sent elsewhere; one without any
    /// may go to every offer that names it.
    /// </summary>
    public Dictionary<string, string[]> CredentialHosts { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Allow offers on link-local addresses (where cloud metadata services answer); off by default.</summary>
    public bool AllowLinkLocalUpstreams { get; set; }
}
