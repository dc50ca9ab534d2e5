using Lattice.Cli.Commands;
using Lattice.Runtime.Connection;
using Lattice.Runtime.Hosting;

namespace Lattice.Cli.Tests.Commands;

/// <summary>The daemon's commands with several gateway nodes: what <c>relay connect</c> refuses and what <c>status</c> shows.</summary>
[Collection(ConsoleCollection.Name)]
public sealed class DaemonGatewaysTests : IDisposable
{
    private readonly string _dataDir = Path.Combine(Path.GetTempPath(), "lattice-cli-gw-" + Guid.NewGuid().ToString("N"));
    private readonly string _config;

    public DaemonGatewaysTests()
    {
        Directory.CreateDirectory(_dataDir);
        _config = Path.Combine(_dataDir, "config.toml");
        File.WriteAllText(_config, "[daemon]\nconcurrency = 1\n");
    }

    public void Dispose() => Directory.Delete(_dataDir, recursive: true);

    [Theory]
    [InlineData("ftp://a:1", "--gateway expected an http(s) URL, not 'ftp://a:1'.")]
    [InlineData("http://user:secret@a:1", "--gateway a gateway URL carries no user name or password (the runtime credential authenticates the daemon).")]
    public async Task Relay_connect_refuses_a_gateway_that_is_not_an_http_url_before_pairing(string bad, string expected)
    {
        var (exit, _, error) = await RunAsync(DaemonCommands.CreateRelay(),
            ["connect", "--gateway", "http://127.0.0.1:1", "--gateway", bad, "--token", "lbt_x", "--config", _config, "--data-dir", _dataDir]);

        Assert.Equal(2, exit);
        Assert.Equal(expected, error.TrimEnd());
        Assert.False(File.Exists(RuntimeCredentials.PathIn(_dataDir)));
    }

    [Fact]
    public async Task Status_shows_every_gateway_and_the_one_the_daemon_is_connected_to()
    {
        new RuntimeCredentials("http://a:1", "lat_x", "lrt_x", ["http://a:1", "http://b:1"]).Save(_dataDir);
        new DaemonStatus(Environment.ProcessId, "connected as lat_x to http://b:1", "lat_x", "http://b:1", true, 7, DateTimeOffset.UnixEpoch,
            ["chat.completions:fixed"], ["http://a:1", "http://b:1"]).Save(_dataDir);

        var (exit, output, _) = await RunAsync(DaemonCommands.CreateStatus(), ["--config", _config, "--data-dir", _dataDir]);

        Assert.Equal(0, exit);
        Assert.Equal(
            [
                "Runtime   lat_x  (model \"lattice:personal:lat_x\")",
                "Work key  none yet (made when the daemon first starts)",
                "Gateway   http://a:1, http://b:1",
                $"Daemon    running (pid {Environment.ProcessId}), connected to http://b:1: connected as lat_x to http://b:1",
                "Served    7 requests",
                "Serves    chat.completions:fixed",
            ], output.TrimEnd().Split(Environment.NewLine));
    }

    [Fact]
    public async Task Status_of_a_stopped_daemon_lists_the_gateways_it_would_use()
    {
        new RuntimeCredentials("http://a:1", "lat_x", "lrt_x").Save(_dataDir);
        File.WriteAllText(_config, "[gateway]\nurls = [\"http://c:1\", \"http://d:1\"]\n");

        var (exit, output, _) = await RunAsync(DaemonCommands.CreateStatus(), ["--config", _config, "--data-dir", _dataDir]);

        Assert.Equal(3, exit);
        Assert.Contains("Gateway   http://c:1, http://d:1" + Environment.NewLine + "Daemon    not running", output, StringComparison.Ordinal);
    }

    private static async Task<(int Exit, string Output, string Error)> RunAsync(System.CommandLine.Command command, string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var (originalOut, originalError) = (Console.Out, Console.Error);
        Console.SetOut(output);
        Console.SetError(error);
        try
        {
            var exit = await command.Parse(args).InvokeAsync();
            return (exit, output.ToString(), error.ToString());
        }
        finally
        {
            Console.SetOut(originalOut);
            Console.SetError(originalError);
        }
    }
}

/// <summary>Tests that redirect the console run one at a time.</summary>
[CollectionDefinition(Name)]
public sealed class ConsoleCollection
{
    public const string Name = "Console";
}
