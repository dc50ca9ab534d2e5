using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Runtimes;
using Lattice.Protocol.Runtime;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Lattice.Gateway.Cluster;

/// <summary>A runtime's link held by another node, as its lease says: where to forward a request for it.</summary>
/// <param name="Node">The holding node's internal address.</param>
/// <param name="LinkId">Which of the runtime's links (<see cref="RuntimeConnection.LinkId"/>).</param>
/// <param name="Hello">What the daemon said when it linked: its capabilities, for routing on this node.</param>
public sealed record RemoteLink(string LatticeId, Uri Node, string LinkId, HelloMessage Hello)
{
    public CapabilityInfo? FindCapability(string task, string? model = null) => RuntimeConnection.FindCapability(Hello, task, model);
}

/// <summary>
/// Which node holds which runtime's link, in the Redis every node shares: the hash <c>link:&lt;lattice id&gt;</c> names
/// the holding node's address, the link's id, the daemon's hello and when the lease ends. The holding node records a
/// link once its hello is in, renews the lease on the registry's heartbeat, and deletes it when the link ends — only
/// while it is still its own, so a newer link on another node is never removed by an older one ending. A node that
/// dies stops renewing, and its leases lapse after <see cref="Lease"/>.
/// </summary>
/// <remarks>
/// The lease's end is a time on the nodes' clocks (a <see cref="TimeProvider"/>), not the Redis key's expiry: routing
/// compares it with its own clock, as every counter in Redis does. The key itself expires <see cref="KeyLifetime"/> after
/// the last renewal, only so that what dead nodes leave behind is cleared. Enabled when both <c>Lattice:Redis</c> and
/// <c>Lattice:Cluster:Secret</c> are set; otherwise every method does nothing and a link is reachable only where it is.
/// </remarks>
public sealed partial class LinkLeases
{
    /// <summary>How long a lease lasts unless renewed: three heartbeats, as long as a silent link is kept.</summary>
    public static readonly TimeSpan Lease = RuntimeConnection.DeadAfter;

    private static readonly TimeSpan KeyLifetime = TimeSpan.FromMinutes(10);

    private const string ClaimScript = """
        redis.call('HSET', KEYS[1], 'node', ARGV[1], 'link', ARGV[2], 'exp', ARGV[3], 'hello', ARGV[4])
        redis.call('PEXPIRE', KEYS[1], ARGV[5])
        return 1
        """;

    // 1 renewed; 0 another link holds the runtime now (it reconnected elsewhere); -1 no lease at all (Redis lost it).
    private const string RenewScript = """
        local held = redis.call('HGET', KEYS[1], 'link')
        if not held then return -1 end
        if held ~= ARGV[1] then return 0 end
        redis.call('HSET', KEYS[1], 'exp', ARGV[2])
        redis.call('PEXPIRE', KEYS[1], ARGV[3])
        return 1
        """;

    private const string ReleaseScript = """
        if redis.call('HGET', KEYS[1], 'link') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """;

    private const string FindScript = "return redis.call('HMGET', KEYS[1], 'node', 'link', 'exp', 'hello')";

    // The leases of several runtimes in one round trip, each as FindScript reads one.
    private const string FindManyScript = """
        local found = {}
        for i, key in ipairs(KEYS) do found[i] = redis.call('HMGET', key, 'node', 'link', 'exp', 'hello') end
        return found
        """;

    /// <summary>The most leases one <see cref="FindManyAsync"/> round trip reads; a longer list takes several.</summary>
    private const int FindManyBatch = 500;

    private readonly RedisStore _redis;
    private readonly IServiceProvider _services;
    private readonly TimeProvider _time;
    private readonly ILogger<LinkLeases> _logger;
    private readonly Uri? _configuredSelf;
    // The last hello read per runtime, so a lease that has not changed is not parsed again on every request.
    private readonly ConcurrentDictionary<string, RemoteLink> _known = new(StringComparer.Ordinal);
    private Uri? _self;
    private int _renewing;
    private int _warnedNoAddress;

    public LinkLeases(IOptions<GatewayOptions> gateway, IOptions<ClusterOptions> cluster, RedisStore redis, IServiceProvider services,
        TimeProvider time, ILogger<LinkLeases> logger)
    {
        Enabled = RedisStore.IsConfigured(gateway.Value) && !string.IsNullOrEmpty(cluster.Value.Secret);
        _configuredSelf = cluster.Value.ParseNodeUrl();
        _redis = redis;
        _services = services;
        _time = time;
        _logger = logger;
    }

    /// <summary>Links are recorded and looked up (Redis and a cluster secret are configured).</summary>
    public bool Enabled { get; }

    /// <summary>Records <paramref name="link"/> as this node's, over any older lease of its runtime. Best effort: a failure is logged.</summary>
    public async Task ClaimAsync(RuntimeConnection link)
    {
        if (!Enabled || Self() is not { } self)
        {
            return;
        }
        try
        {
            await _redis.EvaluateAsync(ClaimScript, [Key(link.LatticeId)],
            [
                self.AbsoluteUri, link.LinkId, LeaseEnd(),
                System.Text.Json.JsonSerializer.Serialize(link.Hello, ProtocolJsonContext.Default.HelloMessage),
                (long)KeyLifetime.TotalMilliseconds,
            ]);
        }
        catch (SharedCountersUnavailableException e)
        {
            // The link works here; the next heartbeat records it once Redis is back.
            Log.ClaimFailed(_logger, link.LatticeId, e.InnerException?.Message ?? e.Message);
        }
    }

    /// <summary>
    /// Renews the leases of <paramref name="links"/> (the heartbeat's callback, so it does not wait): each is renewed
    /// while it is still this link's, and recorded again if Redis has lost it. A round still running skips this one.
    /// </summary>
    public void Renew(IReadOnlyCollection<RuntimeConnection> links)
    {
        if (!Enabled || links.Count == 0 || Interlocked.Exchange(ref _renewing, 1) == 1)
        {
            return;
        }
        _ = RenewAsync(links);
    }

    private async Task RenewAsync(IReadOnlyCollection<RuntimeConnection> links)
    {
        try
        {
            var end = LeaseEnd();
            var renewals = new List<Task>(links.Count);
            foreach (var link in links)
            {
                if (!link.Closed.IsCancellationRequested)
                {
                    renewals.Add(RenewOneAsync(link, end));
                }
            }
            // Sent together: StackExchange.Redis pipelines them on its one connection.
            await Task.WhenAll(renewals);
        }
        catch (SharedCountersUnavailableException e)
        {
            Log.RenewFailed(_logger, e.InnerException?.Message ?? e.Message);
        }
        finally
        {
            Volatile.Write(ref _renewing, 0);
        }
    }

    private async Task RenewOneAsync(RuntimeConnection link, long end)
    {
        var result = (int)await _redis.EvaluateAsync(RenewScript, [Key(link.LatticeId)], [link.LinkId, end, (long)KeyLifetime.TotalMilliseconds]);
        if (result == -1)
        {
            await ClaimAsync(link);
        }
        // 0: the daemon has a newer link on another node, which routing now finds; this one lives on until it is
        // found dead, reachable here only.
    }

    /// <summary>Deletes the lease of <paramref name="link"/> if it is still this link's (compare and delete).</summary>
    public async Task ReleaseAsync(RuntimeConnection link)
    {
        if (!Enabled)
        {
            return;
        }
        try
        {
            await _redis.EvaluateAsync(ReleaseScript, [Key(link.LatticeId)], [link.LinkId]);
        }
        catch (SharedCountersUnavailableException e)
        {
            // The lease lapses on its own.
            Log.ReleaseFailed(_logger, link.LatticeId, e.InnerException?.Message ?? e.Message);
        }
    }

    /// <summary>
    /// The link another node holds for <paramref name="latticeId"/>; null when there is no lease, it has lapsed, it names
    /// this node (whose link is gone) or Redis cannot be reached (the runtime is then unreachable from here).
    /// </summary>
    public async ValueTask<RemoteLink?> FindAsync(string latticeId)
    {
        if (!Enabled)
        {
            return null;
        }
        RedisResult[]? fields;
        try
        {
            fields = (RedisResult[]?)await _redis.EvaluateAsync(FindScript, [Key(latticeId)], []);
        }
        catch (SharedCountersUnavailableException e)
        {
            Log.FindFailed(_logger, e.InnerException?.Message ?? e.Message);
            return null;
        }
        return Read(latticeId, fields, _time.GetUtcNow().ToUnixTimeMilliseconds());
    }

    /// <summary>
    /// The links other nodes hold for <paramref name="latticeIds"/>, by lattice id, read in one round trip (per
    /// <see cref="FindManyBatch"/> ids): those with no live lease, or one naming this node, are left out — and all of
    /// them when Redis cannot be reached.
    /// </summary>
    public async ValueTask<IReadOnlyDictionary<string, RemoteLink>> FindManyAsync(IReadOnlyList<string> latticeIds)
    {
        var found = new Dictionary<string, RemoteLink>(StringComparer.Ordinal);
        if (!Enabled || latticeIds.Count == 0)
        {
            return found;
        }
        for (var start = 0; start < latticeIds.Count; start += FindManyBatch)
        {
            var ids = latticeIds.Skip(start).Take(FindManyBatch).ToArray();
            RedisResult[]? leases;
            try
            {
                leases = (RedisResult[]?)await _redis.EvaluateAsync(FindManyScript, ids.Select(Key).ToArray(), []);
            }
            catch (SharedCountersUnavailableException e)
            {
                Log.FindFailed(_logger, e.InnerException?.Message ?? e.Message);
                return found;
            }
            var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
            for (var i = 0; i < ids.Length && leases is not null && i < leases.Length; i++)
            {
                if (Read(ids[i], (RedisResult[]?)leases[i], now) is { } link)
                {
                    found[ids[i]] = link;
                }
            }
        }
        return found;
    }

    /// <summary>One lease as HMGET returns its fields (node, link, end, hello): the link, or null as <see cref="FindAsync"/> says.</summary>
    private RemoteLink? Read(string latticeId, RedisResult[]? fields, long now)
    {
        if (fields is not { Length: 4 } || fields[0].IsNull || fields[1].IsNull || fields[3].IsNull
            || !long.TryParse((string?)fields[2], NumberStyles.None, CultureInfo.InvariantCulture, out var end)
            || end <= now)
        {
            _known.TryRemove(latticeId, out _);
            return null;
        }
        var node = (string)fields[0]!;
        var linkId = (string)fields[1]!;
        if (_known.TryGetValue(latticeId, out var known) && known.LinkId == linkId && known.Node.AbsoluteUri == node)
        {
            return known.Node == Self() ? null : known;
        }
        if (!Uri.TryCreate(node, UriKind.Absolute, out var uri)
            || System.Text.Json.JsonSerializer.Deserialize((string)fields[3]!, ProtocolJsonContext.Default.HelloMessage) is not { } hello)
        {
            return null;
        }
        var found = new RemoteLink(latticeId, uri, linkId, hello);
        _known[latticeId] = found;
        return uri == Self() ? null : found;
    }

    private RedisKey Key(string latticeId) => _redis.Key("link:" + latticeId);

    private long LeaseEnd() => (_time.GetUtcNow() + Lease).ToUnixTimeMilliseconds();

    /// <summary>
    /// This node's internal address: <see cref="ClusterOptions.NodeUrl"/>, else the server's first http listening
    /// address once it is bound. Null while there is none other nodes could use (a wildcard address is logged once).
    /// </summary>
    private Uri? Self()
    {
        if ((_self ??= _configuredSelf) is { } self)
        {
            return self;
        }
        var addresses = _services.GetService<Microsoft.AspNetCore.Hosting.Server.IServer>()?.Features.Get<IServerAddressesFeature>()?.Addresses;
        var first = addresses?.FirstOrDefault(a => a.StartsWith("http://", StringComparison.OrdinalIgnoreCase)) ?? addresses?.FirstOrDefault();
        if (first is null || !Uri.TryCreate(first, UriKind.Absolute, out var uri) || uri.Port == 0)
        {
            return null;
        }
        if (IPAddress.TryParse(uri.Host.Trim('[', ']'), out var ip) && (ip.Equals(IPAddress.Any) || ip.Equals(IPAddress.IPv6Any)))
        {
            if (Interlocked.Exchange(ref _warnedNoAddress, 1) == 0)
            {
                Log.NoAddress(_logger, first);
            }
            return null;
        }
        return _self = new Uri(uri.GetLeftPart(UriPartial.Authority) + "/");
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 9701, Level = LogLevel.Warning, Message = "Could not record the link of runtime {LatticeId} in Redis ({Error}); it is reachable only through this node until the next heartbeat records it")]
        public static partial void ClaimFailed(ILogger logger, string latticeId, string error);

        [LoggerMessage(EventId = 9702, Level = LogLevel.Warning, Message = "Could not renew this node's link leases in Redis ({Error})")]
        public static partial void RenewFailed(ILogger logger, string error);

        [LoggerMessage(EventId = 9703, Level = LogLevel.Debug, Message = "Could not delete the link lease of runtime {LatticeId} ({Error}); it lapses on its own")]
        public static partial void ReleaseFailed(ILogger logger, string latticeId, string error);

        [LoggerMessage(EventId = 9704, Level = LogLevel.Warning, Message = "Could not look up a runtime's link in Redis ({Error}); runtimes linked to other nodes are unreachable from this one meanwhile")]
        public static partial void FindFailed(ILogger logger, string error);

        [LoggerMessage(EventId = 9705, Level = LogLevel.Error, Message = "This node listens on {Address}, which other nodes cannot use: set Lattice:Cluster:NodeUrl, or runtimes linked here are reachable only through this node")]
        public static partial void NoAddress(ILogger logger, string address);
    }
}
