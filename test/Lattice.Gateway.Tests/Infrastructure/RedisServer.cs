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
    private static readonly Lazy<Task<RedisServer>> SharedServer = new(StartSharedAsync);

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

    /// <summary>
    /// The assembly's Redis, started by the first test that needs it and stopped when the test process ends. When it
    /// cannot start (redis-server missing), every test that needs it fails with the reason.
    /// </summary>
    public static Task<RedisServer> Shared() => SharedServer.Value;

    private static async Task<RedisServer> StartSharedAsync()
    {
        var server = await StartAsync();
        AppDomain.CurrentDomain.ProcessExit += (_, _) => server.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(10));
        return server;
    }

    /// <summary>Starts a Redis on <paramref name="port"/> (a free one when null) and returns once it answers PING.</summary>
    public static async Task<RedisServer> StartAsync(int? port = null)
    {
        var binary = FindBinary() ?? throw new InvalidOperationException(
            "redis-server is not installed: the Redis-backed tests need Debian's redis-server (apt-get install redis-server; .ci/run installs it when missing).");
        var chosen = port ?? ProcessHost.FreeTcpPort();
        var directory = Path.Combine(Path.GetTempPath(), "lattice-redis-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
        // Under a small shell that stops the server once this test process is gone, however it ended: an orphaned
        // server would outlive a test run that was killed.
        var process = await ProcessHost.StartAsync("/bin/sh",
            ["-c", Watchdog, "sh", Environment.ProcessId.ToString(CultureInfo.InvariantCulture), directory, binary,
                "--port", chosen.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory],
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

    /// <summary>
    /// $1: the test process; $2: the server's directory; the rest: the server's command line. Runs the server until
    /// either ends, then removes the directory.
    /// </summary>
    private const string Watchdog = """
        parent=$1; dir=$2; shift 2
        "$@" & server=$!
        trap 'kill $server 2>/dev/null; wait $server; rm -rf "$dir"' EXIT INT TERM
        while kill -0 "$parent" 2>/dev/null && kill -0 "$server" 2>/dev/null; do sleep 1; done
        """;

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

    /// <summary>Stops the server and removes its directory.</summary>
    public async ValueTask DisposeAsync()
    {
        // SIGTERM to the watchdog shell, whose trap stops the server: killing the tree outright could kill the shell
        // first and leave the server running without a parent.
        if (!_process.HasExited)
        {
            using (var kill = System.Diagnostics.Process.Start("kill", ["-TERM", _process.ProcessId.ToString(CultureInfo.InvariantCulture)]))
            {
                await kill.WaitForExitAsync();
            }
            try
            {
                await _process.WaitForExitAsync(TimeSpan.FromSeconds(10));
            }
            catch (TimeoutException)
            {
            }
        }
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
