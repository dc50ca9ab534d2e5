using System.CommandLine;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text.Json;
using Lattice.Protocol.Runtime;
using Lattice.Protocol.Sealing;
using Lattice.Runtime.Config;
using Lattice.Runtime.Connection;
using Lattice.Runtime.Engines;
using Lattice.Runtime.Hosting;

namespace Lattice.Cli.Commands;

/// <summary>The runtime daemon: <c>relay connect</c> (pair, then serve), <c>daemon</c>, <c>status</c>, <c>ping</c>.</summary>
internal static class DaemonCommands
{
    private static Option<string?> ConfigOption() => new("--config") { Description = "Daemon config file (default: LATTICE_CONFIG_PATH or ~/.lattice/config.toml)." };

    private static Option<string?> DataDirOption() => new("--data-dir") { Description = "Where the runtime credential and status live (default: the config's daemon.data_dir, or ~/.lattice)." };

    public static Command CreateRelay()
    {
        var gateway = new Option<string[]>("--gateway")
        {
            Description = "The gateway's URL, e.g. http://127.0.0.1:8080 (repeatable: one per node of the deployment; the daemon reconnects to another when one dies).",
            Required = true,
            AllowMultipleArgumentsPerToken = false,
        };
        var token = new Option<string>("--token") { Description = "The one-time bootstrap token from POST /v1/personal-runtimes.", Required = true };
        var config = ConfigOption();
        var dataDir = DataDirOption();
        var connect = new Command("connect", "Pair this machine with a gateway using a bootstrap token, store the credential, and start serving.") { gateway, token, config, dataDir };
        connect.SetAction(async (parse, ct) =>
        {
            if (LoadConfig(parse.GetValue(config), parse.GetValue(dataDir)) is not { } cfg)
            {
                return 2;
            }
            var urls = new List<Uri>();
            foreach (var value in parse.GetValue(gateway)!)
            {
                if (GatewayEndpoints.ToOrigin(value, out var problem) is not { } origin)
                {
                    await Console.Error.WriteLineAsync($"--gateway {problem}.");
                    return 2;
                }
                if (!urls.Contains(new Uri(origin)))
                {
                    urls.Add(new Uri(origin));
                }
            }
            RuntimeCredentials credentials;
            try
            {
                credentials = await RuntimeCredentials.PairAsync(urls, parse.GetValue(token)!, ct);
            }
            catch (Exception ex) when (ex is PairingException or HttpRequestException or TaskCanceledException)
            {
                await Console.Error.WriteLineAsync("Pairing failed: " + ex.Message);
                return 1;
            }
            credentials.Save(cfg.DataDirectory);
            using (var workKey = WorkKey.LoadOrCreate(cfg.DataDirectory))
            {
                Console.WriteLine($"Paired as {credentials.LatticeId}. Credential stored in {RuntimeCredentials.PathIn(cfg.DataDirectory)} (readable by you only).");
                Console.WriteLine($"Work key fingerprint {workKey.Fingerprint} (private key in {WorkKey.PathIn(cfg.DataDirectory)}, readable by you only).");
            }
            Console.WriteLine($"Apps reach this machine as model \"lattice:personal:{credentials.LatticeId}\".");
            return await ServeAsync(cfg, credentials, ct);
        });
        return new Command("relay", "Pair this machine with a gateway.") { connect };
    }

    public static Command CreateDaemon()
    {
        var config = ConfigOption();
        var dataDir = DataDirOption();
        var command = new Command("daemon", "Serve this machine's models to the gateway with the stored runtime credential.") { config, dataDir };
        command.SetAction(async (parse, ct) =>
        {
            if (LoadConfig(parse.GetValue(config), parse.GetValue(dataDir)) is not { } cfg)
            {
                return 2;
            }
            if (RuntimeCredentials.Load(cfg.DataDirectory) is not { } credentials)
            {
                await Console.Error.WriteLineAsync($"No runtime credential in {cfg.DataDirectory}: pair first with `lattice relay connect --gateway URL --token TOKEN`.");
                return 2;
            }
            return await ServeAsync(cfg, credentials, ct);
        });
        return command;
    }

    public static Command CreateStatus()
    {
        var config = ConfigOption();
        var dataDir = DataDirOption();
        var command = new Command("status", "Show this machine's runtime: pairing, and what the daemon last reported.") { config, dataDir };
        command.SetAction((parse, _) =>
        {
            if (LoadConfig(parse.GetValue(config), parse.GetValue(dataDir)) is not { } cfg)
            {
                return Task.FromResult(2);
            }
            if (RuntimeCredentials.Load(cfg.DataDirectory) is not { } credentials)
            {
                Console.WriteLine("Not paired. Pair with `lattice relay connect --gateway URL --token TOKEN`.");
                return Task.FromResult(1);
            }
            Console.WriteLine($"Runtime   {credentials.LatticeId}  (model \"lattice:personal:{credentials.LatticeId}\")");
            using (var workKey = WorkKey.Load(cfg.DataDirectory))
            {
                Console.WriteLine($"Work key  {workKey?.Fingerprint ?? "none yet (made when the daemon first starts)"}");
            }
            var status = DaemonStatus.Load(cfg.DataDirectory);
            var running = status is not null && status.IsAlive();
            Console.WriteLine($"Gateway   {string.Join(", ", running ? status!.Gateways ?? [status.Gateway] : DaemonRunner.GatewaysFor(cfg, credentials))}");
            if (!running)
            {
                Console.WriteLine("Daemon    not running (start it with `lattice daemon`)");
                return Task.FromResult(3);
            }
            Console.WriteLine($"Daemon    running (pid {status!.Pid}), {(status.Connected ? "connected to " + status.Gateway : "not connected")}: {status.State}");
            Console.WriteLine($"Served    {status.Served} requests");
            Console.WriteLine($"Serves    {string.Join(", ", status.Capabilities)}");
            return Task.FromResult(status.Connected ? 0 : 4);
        });
        return command;
    }

    public static Command CreatePing()
    {
        var config = ConfigOption();
        var dataDir = DataDirOption();
        var command = new Command("ping", "Check that the gateway (each of its nodes, when several are configured) answers and still accepts this runtime's credential.") { config, dataDir };
        command.SetAction(async (parse, ct) =>
        {
            if (LoadConfig(parse.GetValue(config), parse.GetValue(dataDir)) is not { } cfg)
            {
                return 2;
            }
            if (RuntimeCredentials.Load(cfg.DataDirectory) is not { } credentials)
            {
                await Console.Error.WriteLineAsync("Not paired. Pair with `lattice relay connect --gateway URL --token TOKEN`.");
                return 2;
            }
            using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };
            // Every node the daemon may connect to: each must answer and accept the credential.
            var exit = 0;
            foreach (var gateway in DaemonRunner.GatewaysFor(cfg, credentials))
            {
                if (!await PingAsync(http, gateway, credentials, ct))
                {
                    exit = 1;
                }
            }
            return exit;
        });
        return command;
    }

    private static async Task<bool> PingAsync(HttpClient http, string gateway, RuntimeCredentials credentials, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(new Uri(gateway), RuntimeLink.MePath));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", credentials.Credential);
        var watch = Stopwatch.StartNew();
        try
        {
            using var response = await http.SendAsync(request, cancellationToken);
            var elapsed = watch.Elapsed.TotalMilliseconds;
            var text = await response.Content.ReadAsStringAsync(cancellationToken);
            if (!response.IsSuccessStatusCode)
            {
                Console.WriteLine($"The gateway at {gateway} answered {(int)response.StatusCode} in {elapsed:0.0} ms: the credential is not accepted (revoked?).");
                return false;
            }
            var status = JsonDocument.Parse(text).RootElement.GetProperty("status").GetString();
            Console.WriteLine($"Gateway {gateway} answered in {elapsed:0.0} ms; runtime {credentials.LatticeId} is {status}.");
            return true;
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            Console.WriteLine($"The gateway at {gateway} did not answer: {ex.Message}");
            return false;
        }
    }

    internal static DaemonConfig? LoadConfig(string? explicitPath, string? dataDir)
    {
        try
        {
            var path = DaemonConfig.ResolvePath(explicitPath);
            var config = DaemonConfig.Load(path, mustExist: explicitPath is not null || Environment.GetEnvironmentVariable("LATTICE_CONFIG_PATH") is { Length: > 0 });
            return dataDir is null ? config : config with { DataDirectory = Path.GetFullPath(dataDir) };
        }
        catch (ConfigException ex)
        {
            Console.Error.WriteLine("Bad config: " + ex.Message);
            return null;
        }
    }

    private static async Task<int> ServeAsync(DaemonConfig config, RuntimeCredentials credentials, CancellationToken cancellationToken)
    {
        static void Say(string line) => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {line}");
        if (config.Engines.Count == 0)
        {
            Say($"no engines configured in {config.SourcePath ?? DaemonConfig.ResolvePath(null)}; serving nothing until you add [[engines]]");
        }
        EngineSet engines;
        try
        {
            engines = await DaemonRunner.LoadEnginesAsync(config, Say, cancellationToken);
        }
        catch (Exception ex) when (ex is ConfigException or IOException or InvalidOperationException or ArgumentException)
        {
            await Console.Error.WriteLineAsync("Could not load the engines: " + ex.Message);
            return 2;
        }
        await using (engines)
        {
            var exit = await DaemonRunner.RunAsync(credentials, engines, config, Say, cancellationToken);
            return exit == LinkExit.CredentialRejected ? 3 : 0;
        }
    }
}
