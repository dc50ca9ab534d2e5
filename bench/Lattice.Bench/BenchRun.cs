using System.Text.Json.Nodes;
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
        var gatewayDll = GatewayDll(options, repo);
        var variantDll = options.VariantDll ?? gatewayDll;
        RequireBuilt(standInDll, "test/Lattice.StandIn.OpenAi");
        RequireBuilt(variantDll, "src/Cli/Lattice.Cli");

        var upstreamKey = "sk-bench-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));
        var dataDirs = new List<string>();
        ChildProcess? standIn = null;
        ChildProcess? stores = null;
        var gateways = new List<ChildProcess>();
        var sides = new List<Side>();
        try
        {
            Log($"starting the stand-in ({Rel(repo, standInDll)})");
            standIn = ChildProcess.Start("the stand-in", standInDll,
                ["--urls", "http://127.0.0.1:0", "--api-key", upstreamKey, "--no-record"],
                options.StandInEnv.ToDictionary(kv => kv.Key, kv => (string?)kv.Value),
                line => line.StartsWith("standin listening on ", StringComparison.Ordinal) ? line["standin listening on ".Length..].Trim() : null);
            var standInUrl = new Uri(await standIn.WaitReadyAsync(StartTimeout, cancellationToken));

            sides.Add(new Side("direct", MakeTarget("direct", standInUrl, "/v1/chat/completions", upstreamKey, UpstreamModel)));
            var gatewaySpecs = new List<(string Name, string Dll, string Gc, List<KeyValuePair<string, string>> Env)>
            {
                ("gateway", gatewayDll, options.GatewayGc, options.GatewayEnv),
            };
            if (options.HasVariant)
            {
                List<KeyValuePair<string, string>> variantEnv = [.. options.GatewayEnv, .. options.VariantEnv];
                if (options.Scaleout)
                {
                    Log("starting PostgreSQL and Redis (deploy/local-cluster.sh, no nodes)");
                    stores = ChildProcess.StartProgram("the stores", "bash", repo, [Path.Combine(repo, "deploy", "local-cluster.sh")],
                        new Dictionary<string, string?> { ["LATTICE_NODES"] = "0" },
                        line => line.StartsWith("LATTICE_STORES=", StringComparison.Ordinal) ? line["LATTICE_STORES=".Length..].Trim() : null);
                    var (database, redis) = (await stores.WaitReadyAsync(StartTimeout, cancellationToken)).Split(' ') is [var d, var r]
                        ? (d, r) : throw new BenchException("deploy/local-cluster.sh printed no stores.");
                    Log($"PostgreSQL {database}, Redis {redis} (pid {stores.Id})");
                    variantEnv.Add(new("Lattice__Database", database));
                    variantEnv.Add(new("Lattice__Redis", redis));
                }
                gatewaySpecs.Add(("variant", variantDll, options.VariantGc ?? options.GatewayGc, variantEnv));
            }
            foreach (var spec in gatewaySpecs)
            {
                var dataDir = Directory.CreateTempSubdirectory("lattice-bench-").FullName;
                dataDirs.Add(dataDir);
                var env = new Dictionary<string, string?>
                {
                    [$"Lattice__Credentials__{CredentialName}"] = upstreamKey,
                    ["ASPNETCORE_ENVIRONMENT"] = "Production",
                    ["DOTNET_ENVIRONMENT"] = "Production",
                    ["Logging__LogLevel__Default"] = "Warning",
                    ["DOTNET_gcServer"] = spec.Gc switch { "server" => "1", "workstation" => "0", _ => null },
                };
                foreach (var (k, v) in spec.Env)
                {
                    env[k] = v;
                }
                Log($"starting the {spec.Name} ({Rel(repo, spec.Dll)} up, GC {spec.Gc}{string.Concat(spec.Env.Select(kv => $", {kv.Key}={kv.Value}"))})");
                var process = ChildProcess.Start("the " + spec.Name, spec.Dll, ["up", "--port", "0", "--data-dir", dataDir], env,
                    line => line.StartsWith("LATTICE_BASE_URL=", StringComparison.Ordinal) ? line["LATTICE_BASE_URL=".Length..].Trim() : null);
                gateways.Add(process);
                var baseUrl = new Uri(await process.WaitReadyAsync(StartTimeout, cancellationToken));

                var envFile = ReadEnvFile(Path.Combine(dataDir, "env"));
                var apiKey = envFile.GetValueOrDefault("LATTICE_API_KEY") ?? throw new BenchException($"No LATTICE_API_KEY in {dataDir}/env.");
                var adminKey = envFile.GetValueOrDefault("LATTICE_ADMIN_KEY") ?? throw new BenchException($"No LATTICE_ADMIN_KEY in {dataDir}/env.");
                await RegisterModelAsync(baseUrl, adminKey, new Uri(standInUrl, "/v1"), cancellationToken);
                if ((spec.Name == "variant" && options.VariantLimits) || (options.Scaleout && !options.ScaleoutPlain))
                {
                    var workspaceId = envFile.GetValueOrDefault("LATTICE_WORKSPACE_ID") ?? throw new BenchException($"No LATTICE_WORKSPACE_ID in {dataDir}/env.");
                    apiKey = await LimitAndBudgetAsync(baseUrl, adminKey, workspaceId, cancellationToken);
                }
                Log($"{spec.Name} {baseUrl} (pid {process.Id}) serves {GatewayModel} from the stand-in {standInUrl} (pid {standIn.Id})");
                sides.Add(new Side(spec.Name, MakeTarget(spec.Name, baseUrl, baseUrl.AbsolutePath.TrimEnd('/') + "/chat/completions", apiKey, GatewayModel)));
                if (options.VariantAnthropic)
                {
                    // The same gateway process, asked the same chat through the Anthropic surface.
                    sides.Add(new Side("variant", MakeMessagesTarget("variant", baseUrl, baseUrl.AbsolutePath.TrimEnd('/') + "/messages", apiKey, GatewayModel)));
                }
            }

            foreach (var side in sides)
            {
                foreach (var mode in options.Modes)
                {
                    SanityCheck(side.Target, mode);
                }
            }

            var maxConns = options.Connections.Max();
            Log($"warming up ({options.Warmup.TotalSeconds:0.###} s per target and mode at {maxConns} connections, then {options.Warmup.TotalSeconds / 5:0.###} s at 1)");
            foreach (var mode in options.Modes)
            {
                foreach (var side in sides)
                {
                    Load.Run(side.Target, mode, maxConns, options.Warmup, null, cancellationToken);
                    Load.Run(side.Target, mode, 1, options.Warmup / 5, null, cancellationToken);
                    cancellationToken.ThrowIfCancellationRequested();
                }
            }
            Load.ErrorKinds.Clear();

            var results = new List<ScenarioResult>();
            var rounds = (int)Math.Ceiling(options.Duration / options.Round);
            TimeSpan GatewaysCpu() => gateways.Aggregate(TimeSpan.Zero, (sum, g) => sum + g.CpuTime);
            TimeSpan LedgersCpu() => gateways.Aggregate(TimeSpan.Zero, (sum, g) => sum + g.LedgerThreadCpuTime);
            foreach (var mode in options.Modes)
            {
                foreach (var conns in options.Connections)
                {
                    var scenario = new ScenarioResult(mode, conns, sides.Select(s => s.Name), options.VariantAnthropic);
                    for (var r = 0; r < rounds; r++)
                    {
                        for (var attempt = 0; ; attempt++)
                        {
                            // ABBA order (direct, gateway[, variant], then reversed), so drift and noise land on every side alike.
                            var order = r % 2 == 0 ? sides : Enumerable.Reverse(sides);
                            var roundTotals = sides.ToDictionary(s => s.Name, _ => new TargetTotals());
                            foreach (var side in order)
                            {
                                var totals = roundTotals[side.Name];
                                var cpu0 = (Gw: GatewaysCpu(), Ledger: LedgersCpu(), Si: standIn.CpuTime, Me: ProcStat.CpuTime(Environment.ProcessId), All: ProcStat.MachineBusy());
                                var round = Load.Run(side.Target, mode, conns, options.Round, totals.Latencies, cancellationToken);
                                var cpu1 = (Gw: GatewaysCpu(), Ledger: LedgersCpu(), Si: standIn.CpuTime, Me: ProcStat.CpuTime(Environment.ProcessId), All: ProcStat.MachineBusy());
                                cancellationToken.ThrowIfCancellationRequested();
                                totals.Requests += round.Requests;
                                totals.Errors += round.Errors;
                                totals.Seconds += round.Seconds;
                                totals.GatewayCpu += cpu1.Gw - cpu0.Gw;
                                totals.LedgerCpu += cpu1.Ledger - cpu0.Ledger;
                                totals.StandInCpu += cpu1.Si - cpu0.Si;
                                totals.HarnessCpu += cpu1.Me - cpu0.Me;
                                totals.MachineBusy += cpu1.All - cpu0.All;
                                foreach (var process in gateways.Append(standIn))
                                {
                                    if (process.HasExited)
                                    {
                                        throw new BenchException($"{process.Name} died during the run:\n{process.RecentOutput()}");
                                    }
                                }
                            }

                            // A round that other processes disturbed is measured again (all sides together, so the comparison stays fair).
                            var otherLoad = OtherLoad(roundTotals.Values);
                            if (otherLoad > options.MaxOtherLoad && attempt < options.MaxRedos)
                            {
                                scenario.Redone++;
                                foreach (var (name, t) in roundTotals)
                                {
                                    scenario.Sides[name].Errors += t.Errors;
                                }
                                continue;
                            }
                            foreach (var (name, t) in roundTotals)
                            {
                                scenario.Sides[name].Add(t);
                            }
                            break;
                        }
                    }
                    results.Add(scenario);
                    Log(scenario.OneLine());
                }
            }

            Log("responses per target, warm-up included: " + string.Join(", ", sides.Select(s => $"{s.Name} {s.Target.TotalResponses}")));
            var report = Report.Markdown(options, results, Load.ErrorKinds,
                Report.SourceDescription(repo, options.GatewayDll is not null || options.StandInDll is not null));
            Console.WriteLine();
            Console.WriteLine(report);
            if (options.OutFile is { } outFile)
            {
                File.WriteAllText(outFile, report);
                Log($"wrote {outFile}");
            }

            var errors = results.Sum(s => s.Sides.Values.Sum(t => t.Errors));
            if (errors > 0)
            {
                return 1;
            }
            return options.Check && Report.Targets(results).Any(t => !t.Met) ? 3 : 0;
        }
        finally
        {
            foreach (var side in sides)
            {
                side.Target.CloseAll();
            }
            foreach (var g in gateways)
            {
                g.Dispose();
            }
            standIn?.Dispose();
            // After the gateways: the script stops PostgreSQL and Redis and deletes their directory.
            stores?.Stop(TimeSpan.FromSeconds(30));
            foreach (var dir in dataDirs)
            {
                try
                {
                    Directory.Delete(dir, recursive: true);
                }
                catch (IOException)
                {
                }
            }
        }
    }

    /// <summary>Share of the machine's CPU used by processes other than ours while these totals were measured.</summary>
    public static double OtherLoad(IEnumerable<TargetTotals> totals)
    {
        var list = totals.ToList();
        var seconds = list.Sum(t => t.Seconds) * Environment.ProcessorCount;
        var other = list.Aggregate(TimeSpan.Zero, (sum, t) => sum + t.OtherCpu);
        return seconds > 0 ? Math.Max(0, other.TotalSeconds / seconds) : 0;
    }

    /// <summary>A path the load goes to: the stand-in itself, or a gateway process in front of it.</summary>
    private sealed record Side(string Name, Target Target);

    /// <summary>The <c>lattice</c> CLI to start (<c>--gateway-dll</c>, else the Release build in the repository), checked to be built.</summary>
    internal static string GatewayDll(BenchOptions options, string repo)
    {
        var gatewayDll = options.GatewayDll ?? Path.Combine(repo, "src", "Cli", "Lattice.Cli", "bin", "Release", "net10.0", "lattice.dll");
        RequireBuilt(gatewayDll, "src/Cli/Lattice.Cli");
        return gatewayDll;
    }

    internal static Target MakeTarget(string name, Uri server, string path, string bearer, string model) =>
        Make(name, server, path, bearer, $$"""{"model":"{{model}}","messages":[{"role":"user","content":"hello"}]}""", anthropic: false);

    /// <summary>The same chat as an Anthropic Messages request (served through the chat translation).</summary>
    internal static Target MakeMessagesTarget(string name, Uri server, string path, string bearer, string model) =>
        Make(name, server, path, bearer, $$"""{"model":"{{model}}","max_tokens":64,"messages":[{"role":"user","content":"hello"}]}""", anthropic: true);

    /// <summary>A target sent <paramref name="body"/> (a JSON object), and the same with <c>"stream":true</c> added.</summary>
    private static Target Make(string name, Uri server, string path, string bearer, string body, bool anthropic)
    {
        var host = server.Host == "localhost" ? IPAddress.Loopback : IPAddress.Parse(server.Host);
        var authority = $"{server.Host}:{server.Port.ToString(CultureInfo.InvariantCulture)}";
        var streaming = body[..^1] + ""","stream":true}""";
        return new Target(name, new IPEndPoint(host, server.Port),
            RawHttpConnection.EncodePost(authority, path, bearer, body),
            RawHttpConnection.EncodePost(authority, path, bearer, streaming), anthropic);
    }

    /// <summary>One request per target and mode before anything else, failing with the response when it is wrong.</summary>
    internal static void SanityCheck(Target target, ChatMode mode)
    {
        using var connection = new RawHttpConnection(target.EndPoint);
        var body = new ArrayBufferWriter<byte>();
        var status = connection.Exchange(target.Request(mode), body);
        var problem = status != 200 ? $"HTTP {status}: {Verify.Preview(body.WrittenSpan)}" : Verify.Body(mode, body.WrittenSpan, target.Anthropic);
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
                $$"""{"id":"{{GatewayModel}}","prices":{"input_per_mtok":0.15,"output_per_mtok":0.6},"offers":[{"base_url":"{{upstreamBase.ToString().TrimEnd('/')}}","credential":"{{CredentialName}}","upstream_model":"{{UpstreamModel}}"}]}""",
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

    /// <summary>
    /// Puts limits and budgets in the way of every request without ever refusing one: the workspace gets rate limits
    /// and a budget, and a new key (returned) gets its own of both.
    /// </summary>
    private static async Task<string> LimitAndBudgetAsync(Uri baseUrl, string adminKey, string workspaceId, CancellationToken cancellationToken)
    {
        const string limits = """{"requests_per_minute":2000000000,"tokens_per_minute":1000000000000,"max_concurrent":100000}""";
        using var http = new HttpClient { BaseAddress = baseUrl, Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", adminKey);
        async Task<JsonNode> SendAsync(HttpMethod method, string path, string body)
        {
            using var response = await http.SendAsync(new HttpRequestMessage(method, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") }, cancellationToken);
            var text = await response.Content.ReadAsStringAsync(cancellationToken);
            if (!response.IsSuccessStatusCode)
            {
                throw new BenchException($"{method} {path} answered {(int)response.StatusCode}: {text}");
            }
            return JsonNode.Parse(text)!;
        }
        await SendAsync(HttpMethod.Put, $"/admin/v1/workspaces/{workspaceId}/limits", limits);
        await SendAsync(HttpMethod.Post, $"/admin/v1/workspaces/{workspaceId}/budgets", """{"scope":"workspace","amount_usd":"1000000"}""");
        var key = await SendAsync(HttpMethod.Post, $"/admin/v1/workspaces/{workspaceId}/keys", $$"""{"name":"bench limited","limits":{{limits}}}""");
        await SendAsync(HttpMethod.Post, $"/admin/v1/workspaces/{workspaceId}/budgets", $$"""{"scope":"key","subject_id":"{{key["id"]}}","amount_usd":"1000000"}""");
        return key["key"]!.GetValue<string>();
    }

    internal static Dictionary<string, string> ReadEnvFile(string path)
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

    internal static string FindRepoRoot(string? given)
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

    internal static void RequireBuilt(string dll, string project)
    {
        if (!File.Exists(dll))
        {
            throw new BenchException($"{dll} is not built. Build the Release outputs first:\n" +
                "  dotnet build -c Release src/Cli/Lattice.Cli\n" +
                "  dotnet build -c Release test/Lattice.StandIn.OpenAi\n" +
                $"(missing: {project})");
        }
    }

    internal static string Rel(string repo, string path) => Path.GetRelativePath(repo, path);

    public static void Log(string message) =>
        Console.Error.WriteLine($"[{DateTime.Now:HH:mm:ss}] {message}");
}

/// <summary>One mode at one concurrency: every side's totals.</summary>
internal sealed class ScenarioResult(ChatMode mode, int connections, IEnumerable<string> sides, bool anthropic = false)
{
    /// <summary>The variant is the Anthropic surface of the same gateway.</summary>
    public bool Anthropic { get; } = anthropic;
    public ChatMode Mode { get; } = mode;
    public int Connections { get; } = connections;
    public Dictionary<string, TargetTotals> Sides { get; } = sides.ToDictionary(s => s, _ => new TargetTotals());
    public TargetTotals Direct => Sides["direct"];
    public TargetTotals Gateway => Sides["gateway"];
    public TargetTotals? Variant => Sides.GetValueOrDefault("variant");

    private readonly Dictionary<string, double[]> _percentiles = [];

    /// <summary>p50, p99 in ms.</summary>
    public double[] P(string side) =>
        _percentiles.TryGetValue(side, out var p) ? p : _percentiles[side] = Sides[side].Latencies.PercentilesMs(50, 99);

    public double[] DirectP => P("direct");
    public double[] GatewayP => P("gateway");

    public string OneLine()
    {
        var line = string.Create(CultureInfo.InvariantCulture,
            $"{Report.ModeName(Mode)} x{Connections}: direct p50 {DirectP[0]:0.000} p99 {DirectP[1]:0.000} ms {Direct.Throughput:0} req/s | " +
            $"gateway p50 {GatewayP[0]:0.000} p99 {GatewayP[1]:0.000} ms {Gateway.Throughput:0} req/s | " +
            $"added p50 {GatewayP[0] - DirectP[0]:+0.000;-0.000} p99 {GatewayP[1] - DirectP[1]:+0.000;-0.000} ms");
        if (Variant is { } v)
        {
            var vp = P("variant");
            line += string.Create(CultureInfo.InvariantCulture, $" | variant p50 {vp[0]:0.000} p99 {vp[1]:0.000} ms {v.Throughput:0} req/s");
        }
        return line + string.Create(CultureInfo.InvariantCulture, $" | errors {Sides.Values.Sum(t => t.Errors)} | other load {OtherLoad:0%}, {Redone} rounds redone");
    }

    /// <summary>Share of the machine's CPU that other processes used during this scenario's rounds.</summary>
    public double OtherLoad => BenchRun.OtherLoad(Sides.Values);

    /// <summary>Rounds measured again because other processes used too much of the machine.</summary>
    public int Redone { get; set; }
}
