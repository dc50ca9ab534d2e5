using System.ComponentModel.DataAnnotations;

namespace Lattice.Gateway.Hosting;

/// <summary>The <c>Lattice</c> configuration section.</summary>
public sealed class GatewayOptions
{
    public const string Section = "Lattice";

    /// <summary>Where the embedded database lives when no connection string is given.</summary>
    public string DataDirectory { get; set; } = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".lattice");

    /// <summary>
    /// The store (<c>Lattice:Database</c>): a <c>postgres://user:password@host:port/database</c> URL or an Npgsql connection
    /// string (<c>Host=…</c>) for PostgreSQL, or a SQLite connection string. Unset: SQLite (<see cref="ConnectionString"/>, or
    /// <c>&lt;DataDirectory&gt;/lattice.db</c>). See docs/storage.md.
    /// </summary>
    public string? Database { get; set; }

    /// <summary>EF Core SQLite connection string; defaults to <c>&lt;DataDirectory&gt;/lattice.db</c>. <see cref="Database"/> takes precedence.</summary>
    public string? ConnectionString { get; set; }

    /// <summary>
    /// Redis shared by every gateway node, as a StackExchange.Redis configuration string (<c>127.0.0.1:6379</c>,
    /// <c>redis.internal:6379,password=…,ssl=true</c>). Set, rate limits, budget reservations, idempotency keys and
    /// failed-authentication counts live there so any number of nodes agree on them; unset, each lives in this process
    /// (idempotency keys in the database). See docs/scale-out.md.
    /// </summary>
    public string? Redis { get; set; }

    /// <summary>
    /// What a request that needs a shared counter gets while <see cref="Redis"/> cannot be reached: <c>closed</c> (the
    /// default) refuses it with 503 <c>counters_unavailable</c>; <c>open</c> serves it uncounted (no rate limit or budget
    /// is taken) and counts failed authentication on this node alone until Redis is back. Idempotency keys are refused
    /// either way. See docs/scale-out.md.
    /// </summary>
    [EnumDataType(typeof(RedisWhenDown))]
    public RedisWhenDown RedisWhenDown { get; set; } = RedisWhenDown.Closed;

    /// <summary>Put before every Redis key this gateway writes, so deployments can share one Redis.</summary>
    [Required(AllowEmptyStrings = false)]
    public string RedisKeyPrefix { get; set; } = "lattice:";

    /// <summary>Largest request body accepted, in bytes (OpenAI accepts 25 MB audio files; multipart framing needs a little more).</summary>
    [Range(1024, 1L << 31)]
    public long MaxRequestBodyBytes { get; set; } = 32L * 1024 * 1024;

    /// <summary>Largest body of a JSON task (chat, embeddings…) unless <see cref="BodyLimits"/> names the task: 4 MiB.</summary>
    [Range(1, 1L << 31)]
    public long MaxJsonBodyBytes { get; set; } = 4L * 1024 * 1024;

    /// <summary>Largest body of a multipart task (audio) unless <see cref="BodyLimits"/> names the task: 25 MiB, a 25 MB file and its form fields.</summary>
    [Range(1, 1L << 31)]
    public long MaxMultipartBodyBytes { get; set; } = 25L * 1024 * 1024;

    /// <summary>Largest body per task class (<c>Lattice:BodyLimits:audio.transcriptions</c> = bytes); each is capped by <see cref="MaxRequestBodyBytes"/>.</summary>
    public Dictionary<string, long> BodyLimits { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Request bodies one credential may be sending at the same time; the next gets 429 before its body is read. 0 turns the limit off.</summary>
    [Range(0, int.MaxValue)]
    public int MaxConcurrentUploadsPerCaller { get; set; } = 8;

    /// <summary>
    /// The slowest a request body may arrive, in bytes per second, once <see cref="MinRequestBodyGracePeriod"/> has passed
    /// (Kestrel's <c>MinRequestBodyDataRate</c>); a slower upload is cut with 408. 0 turns the check off.
    /// </summary>
    [Range(0, double.MaxValue)]
    public double MinRequestBodyBytesPerSecond { get; set; } = 240;

    /// <summary>How long a request body may arrive slower than <see cref="MinRequestBodyBytesPerSecond"/> before it is cut (at least 1 s, Kestrel's heartbeat).</summary>
    public TimeSpan MinRequestBodyGracePeriod { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long one upstream attempt may take, from sending to the last byte, unless its offer says otherwise.</summary>
    public TimeSpan UpstreamTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// How long a runtime may go without progress on a dispatch (no frame of it arriving) before it times out; an
    /// answer that keeps producing is never cut.
    /// </summary>
    public TimeSpan RuntimeTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// How often the C allocator's free pages are given back to the kernel (<c>malloc_trim</c>, Linux with glibc; see
    /// <see cref="NativeHeapTrimmer"/>); zero turns it off, and the gateway's resident size then keeps what native code
    /// once freed.
    /// </summary>
    public TimeSpan NativeHeapTrimInterval { get; set; } = TimeSpan.FromSeconds(10);

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

    /// <summary>
    /// The address people and clients reach the gateway at (<c>https://lattice.example.com</c>), with an optional path
    /// prefix: the OAuth issuer, the discovery document's endpoints and invitation links are built from it, never from a
    /// request's <c>Host</c> header. When it is https, cookies are <c>Secure</c> and responses carry HSTS. Unset: the
    /// server's own first http listening address.
    /// </summary>
    public string? PublicUrl { get; set; }

    /// <summary>Device authorization requests (<c>/connect/device</c>) allowed per source address per minute; 0 turns the limit off.</summary>
    [Range(0, int.MaxValue)]
    public int DeviceAuthorizationsPerMinute { get; set; } = 10;

    /// <summary>How long an OAuth access token lives.</summary>
    public TimeSpan AccessTokenLifetime { get; set; } = TimeSpan.FromHours(1);

    /// <summary><see cref="PublicUrl"/> as an absolute http(s) URI ending in '/', or null when unset or not such a URI.</summary>
    public Uri? ParsePublicUrl() =>
        Uri.TryCreate(PublicUrl, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" && uri.Query.Length == 0 && uri.Fragment.Length == 0 && uri.UserInfo.Length == 0
            ? new Uri(uri.GetLeftPart(UriPartial.Path).TrimEnd('/') + "/")
            : null;

    /// <summary>Whether the gateway is reached over https (its <see cref="PublicUrl"/> says so).</summary>
    public bool IsPublicHttps => ParsePublicUrl()?.Scheme == "https";

    /// <summary>The store's engine and connection string; throws when <see cref="Database"/> is neither form (validated at start-up).</summary>
    public Persistence.DatabaseLocation ResolveDatabase()
    {
        if (string.IsNullOrWhiteSpace(Database))
        {
            return new(Persistence.DatabaseProvider.Sqlite, ConnectionString ?? $"Data Source={Path.Combine(DataDirectory, "lattice.db")}");
        }
        return Persistence.DatabaseLocation.Parse(Database, out var error)
            ?? throw new InvalidOperationException($"Lattice:Database {error}");
    }

    public string ResolveConnectionString() => ResolveDatabase().ConnectionString;

    /// <summary>Refuses at start-up a <see cref="Database"/> that is neither a PostgreSQL URL or connection string nor a SQLite one.</summary>
    internal sealed class DatabaseValidation : Microsoft.Extensions.Options.IValidateOptions<GatewayOptions>
    {
        public Microsoft.Extensions.Options.ValidateOptionsResult Validate(string? name, GatewayOptions options)
        {
            if (string.IsNullOrWhiteSpace(options.Database) || Persistence.DatabaseLocation.Parse(options.Database, out var error) is not null)
            {
                return Microsoft.Extensions.Options.ValidateOptionsResult.Success;
            }
            return Microsoft.Extensions.Options.ValidateOptionsResult.Fail($"Lattice:Database {error}");
        }
    }
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

/// <summary>What the gateway does with a request that needs a shared counter while Redis cannot be reached (<c>Lattice:RedisWhenDown</c>).</summary>
public enum RedisWhenDown
{
    /// <summary>Refuse it with 503 <c>counters_unavailable</c>: nothing runs that the limits, budgets and failed-authentication counts did not count.</summary>
    Closed,

    /// <summary>
    /// Serve it uncounted: rate limits and budgets are not taken, failed authentication is counted on this node alone;
    /// requests with an <c>Idempotency-Key</c> are still refused (a retry could not be told from a first request).
    /// </summary>
    Open,
}
