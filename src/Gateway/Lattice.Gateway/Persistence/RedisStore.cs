using Lattice.Gateway.Hosting;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Lattice.Gateway.Persistence;

/// <summary>
/// The Redis every gateway node shares (<see cref="GatewayOptions.Redis"/>): the counters that must agree across nodes
/// (rate limits, budgets, idempotency keys, failed authentication) live there, each changed by one Lua script, so a
/// change is atomic whichever node makes it and costs one round trip.
/// </summary>
/// <remarks>
/// Fails fast: while Redis is unreachable a command is not queued to wait for the reconnect but fails at once with
/// <see cref="SharedCountersUnavailableException"/>. By default every caller answers it with 503 — the gateway neither
/// waits nor guesses a counter (it fails closed); with <see cref="GatewayOptions.RedisWhenDown"/> <c>open</c> the callers
/// that may serve uncounted do (<see cref="FailsOpen"/>, <see cref="ServingUncounted"/>). The connection comes back on
/// its own when Redis does.
/// </remarks>
public sealed partial class RedisStore : IHostedService, IAsyncDisposable
{
    private readonly ConfigurationOptions? _configuration;
    private readonly string _prefix;
    private readonly ILogger<RedisStore> _logger;
    private ConnectionMultiplexer? _connection;
    private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _outageWarned;
    private int _outagesWarned;
    private long _uncounted;
    private long _evaluations;

    public RedisStore(IOptions<GatewayOptions> options, ILogger<RedisStore> logger)
    {
        if (IsConfigured(options.Value))
        {
            _configuration = ConfigurationOptions.Parse(options.Value.Redis!);
            // Start even while Redis is down (requests that need it get 503 until it is back), and never queue a command
            // behind a reconnect: a request waiting on Redis would hang where it should fail.
            _configuration.AbortOnConnectFail = false;
            _configuration.BacklogPolicy = BacklogPolicy.FailFast;
        }
        _prefix = options.Value.RedisKeyPrefix;
        FailsOpen = options.Value.RedisWhenDown == RedisWhenDown.Open;
        _logger = logger;
    }

    /// <summary>Whether requests are served uncounted while Redis is away (<see cref="GatewayOptions.RedisWhenDown"/> <c>open</c>).</summary>
    public bool FailsOpen { get; }

    /// <summary>Counts served without a shared counter because Redis could not be reached (fail-open only).</summary>
    public long Uncounted => Interlocked.Read(ref _uncounted);

    /// <summary>Outages that were warned about: one warning per outage, however many requests it affected.</summary>
    public int OutagesWarned => Volatile.Read(ref _outagesWarned);

    /// <summary>
    /// Notes that something is being let through without its shared counter (<paramref name="counter"/>: what was not
    /// counted) because Redis could not be reached; the first time in an outage, logs a warning. Fail-open only.
    /// </summary>
    public void ServingUncounted(string counter)
    {
        Interlocked.Increment(ref _uncounted);
        if (Interlocked.Exchange(ref _outageWarned, 1) == 0)
        {
            Interlocked.Increment(ref _outagesWarned);
            Log.ServingUncounted(_logger, counter);
        }
    }

    /// <summary>Scripts run so far (each one round trip to Redis): what the node-local allotments save is counted in these.</summary>
    public long Evaluations => Interlocked.Read(ref _evaluations);

    /// <summary>Whether the connection to Redis is up now (a cheap check, no round trip).</summary>
    public bool IsConnected => Volatile.Read(ref _connection) is { IsConnected: true };

    /// <summary>Whether the gateway keeps its shared counters in Redis.</summary>
    public static bool IsConfigured(GatewayOptions options) => !string.IsNullOrWhiteSpace(options.Redis);

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (_configuration is null)
        {
            return;
        }
        var connection = await ConnectionMultiplexer.ConnectAsync(_configuration);
        connection.ConnectionFailed += (_, e) => Log.ConnectionFailed(_logger, e.EndPoint?.ToString() ?? "", e.FailureType.ToString());
        connection.ConnectionRestored += (_, e) =>
        {
            // The outage is over: the next one warns again.
            Volatile.Write(ref _outageWarned, 0);
            Log.ConnectionRestored(_logger, e.EndPoint?.ToString() ?? "");
        };
        _connection = connection;
        _started.TrySetResult();
        if (!connection.IsConnected)
        {
            Log.NotConnected(_logger);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _connection, null) is { } connection)
        {
            await connection.CloseAsync(allowCommandsToComplete: false);
            await connection.DisposeAsync();
        }
    }

    /// <summary>
    /// Completes once the connection that runs commands is up: at once when it is, else when it is restored. (The
    /// subscription connection comes back on its own, sometimes first: that is not enough for a command.)
    /// </summary>
    public async Task WhenConnectedAsync(CancellationToken cancellationToken)
    {
        if (_configuration is null)
        {
            throw new InvalidOperationException("Redis is not configured.");
        }
        await _started.Task.WaitAsync(cancellationToken);
        var connection = Volatile.Read(ref _connection) ?? throw new ObjectDisposedException(nameof(RedisStore));
        var restored = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        EventHandler<ConnectionFailedEventArgs> onRestored = (_, e) =>
        {
            if (e.ConnectionType == ConnectionType.Interactive)
            {
                restored.TrySetResult();
            }
        };
        connection.ConnectionRestored += onRestored;
        try
        {
            if (!connection.GetDatabase().IsConnected(default))
            {
                await restored.Task.WaitAsync(cancellationToken);
            }
        }
        finally
        {
            connection.ConnectionRestored -= onRestored;
        }
    }

    /// <summary>Whether this gateway uses Redis at all (<see cref="GatewayOptions.Redis"/> set).</summary>
    public bool Configured => _configuration is not null;

    /// <summary>Whether Redis answers a PING now (readiness); false when it is not connected or fails.</summary>
    public async Task<bool> PingAsync()
    {
        if (Volatile.Read(ref _connection) is not { IsConnected: true } connection)
        {
            return false;
        }
        try
        {
            await connection.GetDatabase().PingAsync();
            return true;
        }
        catch (Exception e) when (IsUnavailable(e))
        {
            return false;
        }
    }

    /// <summary>A key under this deployment's prefix (<see cref="GatewayOptions.RedisKeyPrefix"/>).</summary>
    public RedisKey Key(string name) => _prefix + name;

    /// <summary>
    /// Runs <paramref name="script"/> (sent whole once, by its SHA-1 after that); a Redis that cannot be reached throws
    /// <see cref="SharedCountersUnavailableException"/>.
    /// </summary>
    public async Task<RedisResult> EvaluateAsync(string script, RedisKey[] keys, RedisValue[] values)
    {
        var connection = Volatile.Read(ref _connection) ?? throw new SharedCountersUnavailableException(null);
        Interlocked.Increment(ref _evaluations);
        try
        {
            return await connection.GetDatabase().ScriptEvaluateAsync(script, keys, values);
        }
        catch (Exception e) when (IsUnavailable(e))
        {
            throw new SharedCountersUnavailableException(e);
        }
    }

    /// <summary>
    /// Subscribes <paramref name="onMessage"/> to the channel <paramref name="name"/> under this deployment's prefix.
    /// False when Redis is not connected (yet): the caller tries again later.
    /// </summary>
    public async Task<bool> TrySubscribeAsync(string name, Action onMessage)
    {
        if (Volatile.Read(ref _connection) is not { IsConnected: true } connection)
        {
            return false;
        }
        try
        {
            await connection.GetSubscriber().SubscribeAsync(RedisChannel.Literal(_prefix + name), (_, _) => onMessage());
            return true;
        }
        catch (Exception e) when (IsUnavailable(e))
        {
            return false;
        }
    }

    /// <summary>Publishes an empty message on the channel <paramref name="name"/>; best effort (false when it could not).</summary>
    public async Task<bool> TryPublishAsync(string name)
    {
        if (Volatile.Read(ref _connection) is not { } connection)
        {
            return false;
        }
        try
        {
            await connection.GetSubscriber().PublishAsync(RedisChannel.Literal(_prefix + name), RedisValue.EmptyString);
            return true;
        }
        catch (Exception e) when (IsUnavailable(e))
        {
            return false;
        }
    }

    /// <summary>Transport failures, and a server that is up but cannot take writes yet (loading, a replica, busy).</summary>
    private static bool IsUnavailable(Exception e) => e switch
    {
        RedisConnectionException or RedisTimeoutException or ObjectDisposedException => true,
        RedisServerException server => server.Message.StartsWith("LOADING", StringComparison.Ordinal)
            || server.Message.StartsWith("BUSY", StringComparison.Ordinal)
            || server.Message.StartsWith("READONLY", StringComparison.Ordinal)
            || server.Message.StartsWith("MASTERDOWN", StringComparison.Ordinal),
        _ => false,
    };

    private static partial class Log
    {
        [LoggerMessage(EventId = 9601, Level = LogLevel.Error, Message = "Lost the connection to Redis at {EndPoint} ({Failure}); requests that need shared counters get 503 (or run uncounted with Lattice:RedisWhenDown=open) until it is back")]
        public static partial void ConnectionFailed(ILogger logger, string endPoint, string failure);

        [LoggerMessage(EventId = 9604, Level = LogLevel.Warning, Message = "Redis cannot be reached: serving requests uncounted (first: {Counter}) until it is back, as Lattice:RedisWhenDown=open asks; rate limits and budgets are not enforced and failed authentication is counted per node")]
        public static partial void ServingUncounted(ILogger logger, string counter);

        [LoggerMessage(EventId = 9602, Level = LogLevel.Information, Message = "Connection to Redis at {EndPoint} restored")]
        public static partial void ConnectionRestored(ILogger logger, string endPoint);

        [LoggerMessage(EventId = 9603, Level = LogLevel.Error, Message = "Redis is not reachable at start-up; requests that need shared counters get 503 (or run uncounted with Lattice:RedisWhenDown=open) until it is")]
        public static partial void NotConnected(ILogger logger);
    }
}

/// <summary>
/// The store holding the counters shared by all nodes cannot be reached: the request is refused with 503, never guessed
/// (unless the gateway fails open, <see cref="RedisStore.FailsOpen"/>).
/// </summary>
public sealed class SharedCountersUnavailableException(Exception? inner)
    : Exception("The shared counter store (Redis) cannot be reached.", inner);
