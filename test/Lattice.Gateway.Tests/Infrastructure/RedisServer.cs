using System.Globalization;
using Lattice.Testing;
using StackExchange.Redis;

namespace Lattice.Gateway.Tests.Infrastructure;

/// <summary>
/// A real Redis (Debian's <c>redis-server</c>) on a free loopback port, in a temporary directory, with nothing saved to
/// disk. <see cref="Shared"/> is the one the test assembly's gateways share (each under its own key prefix), stopped when
/// the test process ends; a test that stops Redis starts one of its own.
/// </summary>
public sealed class RedisServer : IAsyncDisposable
{
    private static readonly Lazy<Task<RedisServer>> SharedServer = new(() => StartAsync());

    private readonly ProcessHost _process;
    private readonly string _directory;

    private RedisServer(ProcessHost process, string directory, int port)
    {
        _process = process;
        _directory = directory;
        Port = port;
    }

    public int Port { get; }

    /// <summary>The StackExchange.Redis configuration string the gateway is given (<c>Lattice:Redis</c>).</summary>
    public string Configuration => string.Create(CultureInfo.InvariantCulture, $"127.0.0.1:{Port}");

    /// <summary>The assembly's Redis, started by the first test that needs it.</summary>
    public static Task<RedisServer> Shared()
    {
        var shared = SharedServer.Value;
        if (!shared.IsFaulted && !SharedStopHooked)
        {
            SharedStopHooked = true;
            AppDomain.CurrentDomain.ProcessExit += (_, _) =>
            {
                if (SharedServer.Value.IsCompletedSuccessfully)
                {
                    SharedServer.Value.Result.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(10));
                }
            };
        }
        return shared;
    }

    private static bool SharedStopHooked;

    /// <summary>Starts a Redis on <paramref name="port"/> (a free one when null) and returns once it answers PING.</summary>
    public static async Task<RedisServer> StartAsync(int? port = null)
    {
        var binary = FindBinary() ?? throw new InvalidOperationException(
            "redis-server is not installed: the Redis-backed tests need Debian's redis-server (apt-get install redis-server; .ci/run installs it when missing).");
        var chosen = port ?? ProcessHost.FreeTcpPort();
        var directory = Path.Combine(Path.GetTempPath(), "lattice-redis-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
        var process = await ProcessHost.StartAsync(binary,
            ["--port", chosen.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory],
            null, line => line.Contains("Ready to accept connections", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
        var server = new RedisServer(process, directory, chosen);
        try
        {
            // Ready by its own account; a PING on a real connection proves it.
            await using var connection = await ConnectionMultiplexer.ConnectAsync(server.Configuration);
            await connection.GetDatabase().PingAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
        return server;
    }

    private static string? FindBinary()
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator).Append("/usr/bin").Append("/usr/sbin"))
        {
            var candidate = Path.Combine(dir, "redis-server");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        return null;
    }

    /// <summary>Stops the server (kill) and removes its directory.</summary>
    public async ValueTask DisposeAsync()
    {
        await _process.DisposeAsync();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
