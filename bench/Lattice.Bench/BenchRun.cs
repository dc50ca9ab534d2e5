using System.Buffers;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;

namespace Lattice.Bench;

/// <summary>Starts the stand-in and the gateway, warms both paths up, measures in interleaved rounds, reports.</summary>
internal static class BenchRun
{
    private const string GatewayModel = "lovelace:bench";
    private const string UpstreamModel = "standin-chat";
    private const string CredentialName = "standin";
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(90);

    public static async Task<int> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var repo = FindRepoRoot(options.RepoRoot);
        var standInDll = options.StandInDll ?? Path.Combine(repo, "test", "Lattice.StandIn.OpenAi", "bin", "Release", "net10.0", "Lattice.StandIn.OpenAi.dll");
        var gatewayDll = options.GatewayDll ?? Path.Combine(repo, "src", "Cli", "Lattice.Cli", "bin", "Release", "net10.0", "lattice.dll");
        RequireBuilt(standInDll, "test/Lattice.StandIn.OpenAi");
        RequireBuilt(gatewayDll, "src/Cli/Lattice.Cli");

        var upstreamKey = "sk-bench-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));
        var dataDir = Directory.CreateTempSubdirectory("lattice-bench-").FullName;
        ChildProcess? standIn = null, gateway = null;
        Target? direct = null, through = null;
        try
        {
            Log($"starting the stand-in ({Rel(repo, standInDll)})");
            standIn = ChildProcess.Start("the stand-in", standInDll,
                ["--urls", "http://127.0.0.1:0", "--api-key", upstreamKey, "--no-record"],
                new Dictionary<string, string?>(),
                line => line.StartsWith("standin listening on ", StringComparison.Ordinal) ? line["standin listening on ".Length..].Trim() : null);
            var standInUrl = new Uri(await standIn.WaitReadyAsync(StartTimeout, cancellationToken));

            var gatewayEnv = new Dictionary<string, string?>
            {
                [$"Lattice__Credentials__{CredentialName}"] = upstreamKey,
                ["ASPNETCORE_ENVIRONMENT"] = "Production",
                ["DOTNET_ENVIRONMENT"] = "Production",
                ["Logging__LogLevel__Default"] = "Warning",
                ["DOTNET_gcServer"] = options.GatewayGc switch { "server" => "1", "workstation" => "0", _ => null },
            };
            foreach (var (k, v) in options.GatewayEnv)
            {
                gatewayEnv[k] = v;
            }
            Log($"starting the gateway ({Rel(repo, gatewayDll)} up, GC {options.GatewayGc}, data {dataDir})");
            gateway = ChildProcess.Start("the gateway", gatewayDll, ["up", "--port", "0", "--data-dir", dataDir], gatewayEnv,
                line => line.StartsWith("LATTICE_BASE_URL=", StringComparison.Ordinal) ? line["LATTICE_BASE_URL=".Length..].Trim() : null);
            var baseUrl = new Uri(await gateway.WaitReadyAsync(StartTimeout, cancellationToken));

            var env = ReadEnvFile(Path.Combine(dataDir, "env"));
            var apiKey = env.GetValueOrDefault("LATTICE_API_KEY") ?? throw new BenchException($"No LATTICE_API_KEY in {dataDir}/env.");
            var adminKey = env.GetValueOrDefault("LATTICE_ADMIN_KEY") ?? throw new BenchException($"No LATTICE_ADMIN_KEY in {dataDir}/env.");
            await RegisterModelAsync(baseUrl, adminKey, new Uri(standInUrl, "/v1"), cancellationToken);
            Log($"stand-in {standInUrl} (pid {standIn.Id}), gateway {baseUrl} (pid {gateway.Id}), model {GatewayModel} registered");

            direct = MakeTarget("direct", standInUrl, "/v1/chat/completions", upstreamKey, UpstreamModel);
            through = MakeTarget("gateway", baseUrl, baseUrl.AbsolutePath.TrimEnd('/') + "/chat/completions", apiKey, GatewayModel);
            foreach (var target in new[] { direct, through })
            {
                foreach (var mode in options.Modes)
                {
                    SanityCheck(target, mode);
                }
            }

            var maxConns = options.Connections.Max();
            Log($"warming up ({options.Warmup.TotalSeconds:0.###} s per target and mode at {maxConns} connections, then at 1)");
            foreach (var mode in options.Modes)
            {
                foreach (var target in new[] { direct, through })
                {
                    Load.Run(target, mode, maxConns, options.Warmup, null, cancellationToken);
                    Load.Run(target, mode, 1, options.Warmup / 5, null, cancellationToken);
                    cancellationToken.ThrowIfCancellationRequested();
                }
            }
            Load.ErrorKinds.Clear();

            var results = new List<ScenarioResult>();
            var rounds = (int)Math.Ceiling(options.Duration / options.Round);
            foreach (var mode in options.Modes)
            {
                foreach (var conns in options.Connections)
                {
                    var scenario = new ScenarioResult(mode, conns);
                    for (var r = 0; r < rounds; r++)
                    {
                        // ABBA order, so drift and noise land on both sides alike.
                        var order = r % 2 == 0 ? new[] { direct, through } : [through, direct];
                        foreach (var target in order)
                        {
                            var totals = target == direct ? scenario.Direct : scenario.Gateway;
                            var cpu0 = (Gw: gateway.CpuTime, Si: standIn.CpuTime, Me: ProcStat.CpuTime(Environment.ProcessId), All: ProcStat.MachineBusy());
                            var round = Load.Run(target, mode, conns, options.Round, totals.Latencies, cancellationToken);
                            var cpu1 = (Gw: gateway.CpuTime, Si: standIn.CpuTime, Me: ProcStat.CpuTime(Environment.ProcessId), All: ProcStat.MachineBusy());
                            cancellationToken.ThrowIfCancellationRequested();
                            totals.Requests += round.Requests;
                            totals.Errors += round.Errors;
                            totals.Seconds += round.Seconds;
                            totals.GatewayCpu += cpu1.Gw - cpu0.Gw;
                            totals.StandInCpu += cpu1.Si - cpu0.Si;
                            totals.HarnessCpu += cpu1.Me - cpu0.Me;
                            totals.MachineBusy += cpu1.All - cpu0.All;
                            if (gateway.HasExited || standIn.HasExited)
                            {
                                throw new BenchException($"{(gateway.HasExited ? "The gateway" : "The stand-in")} died during the run:\n" +
                                    (gateway.HasExited ? gateway : standIn).RecentOutput());
                            }
                        }
                    }
                    results.Add(scenario);
                    Log(scenario.OneLine());
                }
            }

            var report = Report.Markdown(options, results, Load.ErrorKinds);
            Console.WriteLine();
            Console.WriteLine(report);
            if (options.OutFile is { } outFile)
            {
                File.WriteAllText(outFile, report);
                Log($"wrote {outFile}");
            }

            var errors = results.Sum(s => s.Direct.Errors + s.Gateway.Errors);
            if (errors > 0)
            {
                return 1;
            }
            return options.Check && Report.Targets(results).Any(t => !t.Met) ? 3 : 0;
        }
        finally
        {
            direct?.CloseAll();
            through?.CloseAll();
            gateway?.Dispose();
            standIn?.Dispose();
            try
            {
                Directory.Delete(dataDir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static Target MakeTarget(string name, Uri server, string path, string bearer, string model)
    {
        var host = server.Host == "localhost" ? IPAddress.Loopback : IPAddress.Parse(server.Host);
        var endPoint = new IPEndPoint(host, server.Port);
        var authority = $"{server.Host}:{server.Port.ToString(CultureInfo.InvariantCulture)}";
        var nonStreaming = $$"""{"model":"{{model}}","messages":[{"role":"user","content":"hello"}]}""";
        var streaming = $$"""{"model":"{{model}}","messages":[{"role":"user","content":"hello"}],"stream":true}""";
        return new Target(name, endPoint,
            RawHttpConnection.EncodePost(authority, path, bearer, nonStreaming),
            RawHttpConnection.EncodePost(authority, path, bearer, streaming));
    }

    /// <summary>One request per target and mode before anything else, failing with the response when it is wrong.</summary>
    private static void SanityCheck(Target target, ChatMode mode)
    {
        using var connection = new RawHttpConnection(target.EndPoint);
        var body = new ArrayBufferWriter<byte>();
        var status = connection.Exchange(target.Request(mode), body);
        var problem = status != 200 ? $"HTTP {status}: {Verify.Preview(body.WrittenSpan)}" : Verify.Body(mode, body.WrittenSpan);
        if (problem is not null)
        {
            throw new BenchException($"The {target.Name} {Report.ModeName(mode)} check request failed: {problem}");
        }
    }

    private static async Task RegisterModelAsync(Uri baseUrl, string adminKey, Uri upstreamBase, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(baseUrl, "/admin/v1/models"))
        {
            Content = new StringContent(
                $$"""{"id":"{{GatewayModel}}","offers":[{"base_url":"{{upstreamBase.ToString().TrimEnd('/')}}","credential":"{{CredentialName}}","upstream_model":"{{UpstreamModel}}"}]}""",
                Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", adminKey);
        using var response = await http.SendAsync(request, cancellationToken);
        if (response.StatusCode != HttpStatusCode.Created)
        {
            var text = await response.Content.ReadAsStringAsync(cancellationToken);
            throw new BenchException($"Registering {GatewayModel} answered {(int)response.StatusCode}, not 201: {text}");
        }
    }

    private static Dictionary<string, string> ReadEnvFile(string path)
    {
        if (!File.Exists(path))
        {
            throw new BenchException($"The gateway did not write {path}.");
        }
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in File.ReadAllLines(path))
        {
            var eq = line.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0 && !line.StartsWith('#'))
            {
                values[line[..eq].Trim()] = line[(eq + 1)..].Trim();
            }
        }
        return values;
    }

    private static string FindRepoRoot(string? given)
    {
        if (given is not null)
        {
            return Path.GetFullPath(given);
        }
        foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Lattice.slnx")))
                {
                    return dir.FullName;
                }
            }
        }
        throw new BenchException("Cannot find the repository root (Lattice.slnx); pass --repo DIR.");
    }

    private static void RequireBuilt(string dll, string project)
    {
        if (!File.Exists(dll))
        {
            throw new BenchException($"{dll} is not built. Build the Release outputs first:\n" +
                "  dotnet build -c Release src/Cli/Lattice.Cli\n" +
                "  dotnet build -c Release test/Lattice.StandIn.OpenAi\n" +
                $"(missing: {project})");
        }
    }

    private static string Rel(string repo, string path) => Path.GetRelativePath(repo, path);

    public static void Log(string message) =>
        Console.Error.WriteLine($"[{DateTime.Now:HH:mm:ss}] {message}");
}

/// <summary>One mode at one concurrency: both targets' totals.</summary>
internal sealed class ScenarioResult(ChatMode mode, int connections)
{
    public ChatMode Mode { get; } = mode;
    public int Connections { get; } = connections;
    public TargetTotals Direct { get; } = new();
    public TargetTotals Gateway { get; } = new();

    private double[]? _direct;
    private double[]? _gateway;

    /// <summary>p50, p99 in ms.</summary>
    public double[] DirectP => _direct ??= Direct.Latencies.PercentilesMs(50, 99);

    public double[] GatewayP => _gateway ??= Gateway.Latencies.PercentilesMs(50, 99);

    public string OneLine() => string.Create(CultureInfo.InvariantCulture,
        $"{Report.ModeName(Mode)} x{Connections}: direct p50 {DirectP[0]:0.000} p99 {DirectP[1]:0.000} ms {Direct.Throughput:0} req/s | " +
        $"gateway p50 {GatewayP[0]:0.000} p99 {GatewayP[1]:0.000} ms {Gateway.Throughput:0} req/s | " +
        $"added p50 {GatewayP[0] - DirectP[0]:+0.000;-0.000} p99 {GatewayP[1] - DirectP[1]:+0.000;-0.000} ms | errors {Direct.Errors + Gateway.Errors} | other load {OtherLoad:0%}");

    /// <summary>Share of the machine's CPU that other processes used during this scenario's rounds.</summary>
    public double OtherLoad
    {
        get
        {
            var seconds = (Direct.Seconds + Gateway.Seconds) * Environment.ProcessorCount;
            return seconds > 0 ? Math.Max(0, (Direct.OtherCpu + Gateway.OtherCpu).TotalSeconds / seconds) : 0;
        }
    }
}
