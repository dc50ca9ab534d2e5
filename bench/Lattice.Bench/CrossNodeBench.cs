using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace Lattice.Bench;

/// <summary>
/// The cross-node hop: two gateway nodes on one SQLite file and one Redis (Debian's <c>redis-server</c>, started here),
/// a <c>lattice relay connect</c> daemon serving the fixed engine linked to node A, and the same request entering node
/// A ("direct" in the tables) or node B, which forwards it to A over the internal channel ("gateway"). The difference
/// is what the hop adds.
/// </summary>
internal static class CrossNodeBench
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(90);

    public static async Task<int> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        Verify.FixedEngine = true;
        var repo = BenchRun.FindRepoRoot(options.RepoRoot);
        var gatewayDll = BenchRun.GatewayDll(options, repo);
        var root = Directory.CreateTempSubdirectory("lattice-bench-xnode-").FullName;
        var children = new List<ChildProcess>();
        var targets = new List<Target>();
        Process? redis = null;
        try
        {
            var redisPort = FreePort();
            redis = await StartRedisAsync(redisPort, root, cancellationToken);
            Log($"redis-server on 127.0.0.1:{redisPort}");

            var env = new Dictionary<string, string?>
            {
                ["ASPNETCORE_ENVIRONMENT"] = "Production",
                ["DOTNET_ENVIRONMENT"] = "Production",
                ["Logging__LogLevel__Default"] = "Warning",
                ["DOTNET_gcServer"] = options.GatewayGc switch { "server" => "1", "workstation" => "0", _ => null },
                ["Lattice__Redis"] = $"127.0.0.1:{redisPort.ToString(CultureInfo.InvariantCulture)}",
                ["Lattice__Cluster__Secret"] = Convert.ToHexString(RandomNumberGenerator.GetBytes(32)),
                // Both nodes on node A's database.
                ["Lattice__ConnectionString"] = "Data Source=" + Path.Combine(root, "a", "lattice.db"),
            };
            foreach (var (k, v) in options.GatewayEnv)
            {
                env[k] = v;
            }
            async Task<(ChildProcess Node, Uri BaseUrl)> StartNodeAsync(string name)
            {
                var dir = Path.Combine(root, name);
                Directory.CreateDirectory(dir);
                var node = ChildProcess.Start("node " + name, gatewayDll, ["up", "--no-daemon", "--port", "0", "--data-dir", dir], env,
                    line => line.StartsWith("LATTICE_BASE_URL=", StringComparison.Ordinal) ? line["LATTICE_BASE_URL=".Length..].Trim() : null);
                children.Add(node);
                var baseUrl = new Uri(await node.WaitReadyAsync(StartTimeout, cancellationToken));
                Log($"node {name} at {baseUrl}");
                return (node, baseUrl);
            }

            var (_, baseA) = await StartNodeAsync("a");
            var apiKey = BenchRun.ReadEnvFile(Path.Combine(root, "a", "env")).GetValueOrDefault("LATTICE_API_KEY")
                ?? throw new BenchException($"No LATTICE_API_KEY in {root}/a/env.");
            var originA = new Uri(baseA.GetLeftPart(UriPartial.Authority));
            using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { BaseAddress = originA, Timeout = TimeSpan.FromSeconds(60) };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);

            var config = Path.Combine(root, "daemon.toml");
            File.WriteAllText(config, """
                [daemon]
                concurrency = 64

                [[engines]]
                kind = "fixed"
                  [[engines.models]]
                  name = "fixed"
                """);
            var (latticeId, token) = await RuntimeBench.CreateRuntimeAsync(http, "bench cross-node", cancellationToken);
            var daemon = ChildProcess.Start("the daemon", gatewayDll,
                ["relay", "connect", "--gateway", originA.ToString().TrimEnd('/'), "--token", token, "--config", config, "--data-dir", Path.Combine(root, "daemon")],
                new Dictionary<string, string?>(env) { ["DOTNET_gcServer"] = "0" },
                line => line.Contains("connected as lat_", StringComparison.Ordinal) ? line : null);
            children.Add(daemon);
            await daemon.WaitReadyAsync(StartTimeout, cancellationToken);
            Log($"daemon linked to node a as {latticeId}");
            var (_, baseB) = await StartNodeAsync("b");

            var model = "lattice:personal:" + latticeId;
            var sides = new[]
            {
                (Name: "direct", Target: BenchRun.MakeTarget("direct", baseA, baseA.AbsolutePath.TrimEnd('/') + "/chat/completions", apiKey, model)),
                (Name: "gateway", Target: BenchRun.MakeTarget("gateway", baseB, baseB.AbsolutePath.TrimEnd('/') + "/chat/completions", apiKey, model)),
            };
            targets.AddRange(sides.Select(s => s.Target));
            foreach (var (_, target) in sides)
            {
                foreach (var mode in options.Modes)
                {
                    BenchRun.SanityCheck(target, mode);
                }
            }

            var maxConns = options.Connections.Max();
            Log($"warming up ({options.Warmup.TotalSeconds:0.###} s per node and mode at {maxConns} connections, then {options.Warmup.TotalSeconds / 5:0.###} s at 1)");
            foreach (var mode in options.Modes)
            {
                foreach (var (_, target) in sides)
                {
                    Load.Run(target, mode, maxConns, options.Warmup, null, cancellationToken);
                    Load.Run(target, mode, 1, options.Warmup / 5, null, cancellationToken);
                }
            }
            Load.ErrorKinds.Clear();

            var results = new List<ScenarioResult>();
            foreach (var mode in options.Modes)
            {
                foreach (var conns in options.Connections)
                {
                    results.Add(RuntimeBench.Interleaved(options, sides, mode, conns, children, cancellationToken));
                    Log(results[^1].OneLine());
                }
            }

            var report = Markdown(options, results);
            Console.WriteLine();
            Console.WriteLine(report);
            if (options.OutFile is { } outFile)
            {
                File.WriteAllText(outFile, report);
                Log($"wrote {outFile}");
            }
            return results.Sum(s => s.Sides.Values.Sum(t => t.Errors)) > 0 ? 1 : 0;
        }
        finally
        {
            foreach (var t in targets)
            {
                t.CloseAll();
            }
            foreach (var c in Enumerable.Reverse(children))
            {
                c.Dispose();
            }
            if (redis is not null)
            {
                try
                {
                    redis.Kill(entireProcessTree: true);
                }
                catch (InvalidOperationException)
                {
                }
                redis.Dispose();
            }
            try
            {
                Directory.Delete(root, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Debian's redis-server on <paramref name="port"/>, nothing saved; returns once it accepts connections.</summary>
    private static async Task<Process> StartRedisAsync(int port, string root, CancellationToken cancellationToken)
    {
        var binary = new[] { "/usr/bin/redis-server", "/usr/local/bin/redis-server" }.FirstOrDefault(File.Exists)
            ?? throw new BenchException("redis-server is not installed (apt-get install redis-server).");
        var info = new ProcessStartInfo(binary) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = root };
        foreach (var a in new[] { "--port", port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", root })
        {
            info.ArgumentList.Add(a);
        }
        var process = Process.Start(info) ?? throw new BenchException("Could not start redis-server.");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var deadline = Stopwatch.GetTimestamp();
        while (true)
        {
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, port, cancellationToken);
                return process;
            }
            catch (SocketException) when (Stopwatch.GetElapsedTime(deadline) < TimeSpan.FromSeconds(20) && !process.HasExited)
            {
                await Task.Delay(50, cancellationToken);
            }
        }
    }

    private static string Markdown(BenchOptions options, List<ScenarioResult> results)
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(ci, $"Cross-node hop: {Environment.ProcessorCount} CPUs, {options.Duration.TotalSeconds:0.###} s per side per scenario in {options.Round.TotalSeconds:0.###} s ABBA rounds, warm-up {options.Warmup.TotalSeconds:0.###} s, gateway GC {options.GatewayGc}.");
        sb.AppendLine();
        Report.PairTable(sb, results, "node A", "via node B", "hop");
        sb.AppendLine();
        sb.AppendLine(ci, $"Latencies in ms. Other processes used {results.Select(r => r.OtherLoad).DefaultIfEmpty(0).Average():0%} of the machine on average during the measured rounds.");
        Report.ErrorList(sb);
        return sb.ToString();
    }

    private static void Log(string message) => BenchRun.Log(message);
}
