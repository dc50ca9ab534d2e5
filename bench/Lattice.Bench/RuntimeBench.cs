using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lattice.Runtime.Connection;
using Lattice.Runtime.Engines;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Lattice.Bench;

/// <summary>
/// The runtime path: a gateway, a <c>lattice relay connect</c> daemon serving only the fixed engine, and the same
/// <see cref="FixedEngine"/> behind a minimal in-process Kestrel server ("direct"). Measures added latency, relayed
/// chunks per second, and the gateway's memory per idle connected runtime.
/// </summary>
internal static class RuntimeBench
{
    private const string FixedModel = "fixed";
    private const string ManyModel = "fixed-many";
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(90);

    public static async Task<int> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        Verify.FixedEngine = true;
        var repo = BenchRun.FindRepoRoot(options.RepoRoot);
        var gatewayDll = BenchRun.GatewayDll(options, repo);
        var root = Directory.CreateTempSubdirectory("lattice-bench-rt-").FullName;
        var children = new List<ChildProcess>();
        var targets = new List<Target>();
        WebApplication? direct = null;
        try
        {
            // Direct: the same engine behind Kestrel in this process.
            direct = await StartDirectAsync(options.ManyChunks, cancellationToken);
            var directUrl = new Uri(direct.Urls.First());
            Log($"direct: FixedEngine behind in-process Kestrel at {directUrl}");

            var (gateway, baseUrl, origin, apiKey, env) = await StartGatewayAsync(options, repo, gatewayDll, root, children, cancellationToken);
            using var http = ApiClient(origin, apiKey);

            // Two daemons: one whose fixed model streams 8 chunks, one whose streams ManyChunks.
            Task<string> StartDaemonAsync(string name, string modelToml) =>
                StartFixedDaemonAsync(http, origin, gatewayDll, root, name, modelToml, env, children, cancellationToken);
            var fixedId = await StartDaemonAsync("fixed", $"name = \"{FixedModel}\"");
            var manyId = await StartDaemonAsync("many", $"name = \"{ManyModel}\"\n  chunks = {options.ManyChunks.ToString(CultureInfo.InvariantCulture)}");

            var v1 = baseUrl.AbsolutePath.TrimEnd('/') + "/chat/completions";
            var sides = new[]
            {
                (Name: "direct", Target: BenchRun.MakeTarget("direct", directUrl, "/v1/chat/completions", "unused", FixedModel)),
                (Name: "gateway", Target: BenchRun.MakeTarget("gateway", baseUrl, v1, apiKey, "lattice:personal:" + fixedId)),
            };
            var manySides = new[]
            {
                (Name: "direct", Target: BenchRun.MakeTarget("direct", directUrl, "/v1/chat/completions", "unused", ManyModel)),
                (Name: "gateway", Target: BenchRun.MakeTarget("gateway", baseUrl, v1, apiKey, "lattice:personal:" + manyId)),
            };
            targets.AddRange(sides.Select(s => s.Target));
            targets.AddRange(manySides.Select(s => s.Target));
            foreach (var (_, target) in sides)
            {
                foreach (var mode in options.Modes)
                {
                    BenchRun.SanityCheck(target, mode);
                }
            }
            foreach (var (_, target) in manySides)
            {
                BenchRun.SanityCheck(target, ChatMode.Streaming);
            }

            // 1. Memory per idle connected runtime first, on a gateway that has not carried load yet
            //    (freed heap left by a load run would absorb the new connections and flatter the figure).
            MemoryResult? memory = null;
            if (options.IdleRuntimes > 0)
            {
                memory = await MeasureIdleRuntimesAsync(options.IdleRuntimes, http, origin, gateway, cancellationToken);
            }

            // 2. Added latency, interleaved ABBA rounds.
            var maxConns = options.Connections.Max();
            Log($"warming up ({options.Warmup.TotalSeconds:0.###} s per target and mode at {maxConns} connections, then {options.Warmup.TotalSeconds / 5:0.###} s at 1)");
            foreach (var mode in options.Modes)
            {
                foreach (var (_, target) in sides)
                {
                    Load.Run(target, mode, maxConns, options.Warmup, null, cancellationToken);
                    Load.Run(target, mode, 1, options.Warmup / 5, null, cancellationToken);
                }
            }
            foreach (var (_, target) in manySides)
            {
                Load.Run(target, ChatMode.Streaming, maxConns, options.Warmup / 2, null, cancellationToken);
            }
            Load.ErrorKinds.Clear();

            var results = new List<ScenarioResult>();
            foreach (var mode in options.Modes)
            {
                foreach (var conns in options.Connections)
                {
                    results.Add(Interleaved(options, sides, mode, conns, children, cancellationToken));
                    Log(results[^1].OneLine());
                }
            }

            // 3. Relayed chunks per second: streaming ManyChunks per answer at the highest concurrency.
            var many = Interleaved(options, manySides, ChatMode.Streaming, maxConns, children, cancellationToken);
            Log($"{options.ManyChunks} chunks x{maxConns}: direct {many.Direct.Throughput * options.ManyChunks:0} chunks/s, gateway {many.Gateway.Throughput * options.ManyChunks:0} chunks/s");

            var report = Markdown(options, results, many, memory, maxConns);
            Console.WriteLine();
            Console.WriteLine(report);
            if (options.OutFile is { } outFile)
            {
                File.WriteAllText(outFile, report);
                Log($"wrote {outFile}");
            }
            var errors = results.Append(many).Sum(s => s.Sides.Values.Sum(t => t.Errors));
            return errors > 0 ? 1 : 0;
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
            if (direct is not null)
            {
                await direct.DisposeAsync();
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

    /// <summary>Starts <c>lattice up --no-daemon</c> in <paramref name="root"/>/gateway, as configured by the options.</summary>
    internal static async Task<(ChildProcess Gateway, Uri BaseUrl, Uri Origin, string ApiKey, Dictionary<string, string?> Env)> StartGatewayAsync(
        BenchOptions options, string repo, string gatewayDll, string root, List<ChildProcess> children, CancellationToken cancellationToken)
    {
        var gatewayDir = Path.Combine(root, "gateway");
        Directory.CreateDirectory(gatewayDir);
        var env = new Dictionary<string, string?>
        {
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            ["DOTNET_ENVIRONMENT"] = "Production",
            ["Logging__LogLevel__Default"] = "Warning",
            ["DOTNET_gcServer"] = options.GatewayGc switch { "server" => "1", "workstation" => "0", _ => null },
        };
        foreach (var (k, v) in options.GatewayEnv)
        {
            env[k] = v;
        }
        Log($"starting the gateway ({BenchRun.Rel(repo, gatewayDll)} up --no-daemon, GC {options.GatewayGc})");
        var gateway = ChildProcess.Start("the gateway", gatewayDll, ["up", "--no-daemon", "--port", "0", "--data-dir", gatewayDir], env,
            line => line.StartsWith("LATTICE_BASE_URL=", StringComparison.Ordinal) ? line["LATTICE_BASE_URL=".Length..].Trim() : null);
        children.Add(gateway);
        var baseUrl = new Uri(await gateway.WaitReadyAsync(StartTimeout, cancellationToken));
        var origin = new Uri(baseUrl.GetLeftPart(UriPartial.Authority));
        var apiKey = BenchRun.ReadEnvFile(Path.Combine(gatewayDir, "env")).GetValueOrDefault("LATTICE_API_KEY")
            ?? throw new BenchException($"No LATTICE_API_KEY in {gatewayDir}/env.");
        return (gateway, baseUrl, origin, apiKey, env);
    }

    internal static HttpClient ApiClient(Uri origin, string apiKey)
    {
        var http = new HttpClient(new SocketsHttpHandler { UseProxy = false, MaxConnectionsPerServer = 32 }) { BaseAddress = origin, Timeout = TimeSpan.FromSeconds(60) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        return http;
    }

    /// <summary>Creates a runtime and starts a <c>lattice relay connect</c> daemon serving one fixed-engine model; returns its lattice id.</summary>
    internal static async Task<string> StartFixedDaemonAsync(HttpClient http, Uri origin, string gatewayDll, string root, string name, string modelToml,
        Dictionary<string, string?> gatewayEnv, List<ChildProcess> children, CancellationToken cancellationToken)
    {
        var daemonEnv = new Dictionary<string, string?>(gatewayEnv) { ["DOTNET_gcServer"] = "0" };
        var config = Path.Combine(root, name + ".toml");
        File.WriteAllText(config, $"""
            [daemon]
            concurrency = 64

            [[engines]]
            kind = "fixed"
              [[engines.models]]
              {modelToml}
            """);
        var (latticeId, token) = await CreateRuntimeAsync(http, "bench " + name, cancellationToken);
        var daemon = ChildProcess.Start("the daemon " + name, gatewayDll,
            ["relay", "connect", "--gateway", origin.ToString().TrimEnd('/'), "--token", token, "--config", config, "--data-dir", Path.Combine(root, name)],
            daemonEnv, line => line.Contains("connected as lat_", StringComparison.Ordinal) ? line : null);
        children.Add(daemon);
        await daemon.WaitReadyAsync(StartTimeout, cancellationToken);
        Log($"daemon {name} (pid {daemon.Id}) connected as {latticeId}");
        return latticeId;
    }

    internal static ScenarioResult Interleaved(BenchOptions options, (string Name, Target Target)[] sides, ChatMode mode, int conns, List<ChildProcess> children, CancellationToken cancellationToken) =>
        Interleaved(options, sides.Select(s => s.Name).ToArray(), mode, conns, children,
            (name, into) => Load.Run(sides.First(s => s.Name == name).Target, mode, conns, options.Round, into, cancellationToken), cancellationToken);

    /// <summary>Rounds of <see cref="BenchOptions.Round"/> per side, in ABBA order, until <see cref="BenchOptions.Duration"/> per side; <paramref name="runRound"/> runs one side's round.</summary>
    internal static ScenarioResult Interleaved(BenchOptions options, string[] sides, ChatMode mode, int conns, List<ChildProcess> children,
        Func<string, Samples, Load.RoundResult> runRound, CancellationToken cancellationToken)
    {
        var scenario = new ScenarioResult(mode, conns, sides);
        var rounds = (int)Math.Ceiling(options.Duration / options.Round);
        for (var r = 0; r < rounds; r++)
        {
            var order = r % 2 == 0 ? sides : sides.Reverse();
            foreach (var name in order)
            {
                var totals = new TargetTotals();
                TimeSpan ChildrenCpu() => children.Aggregate(TimeSpan.Zero, (sum, c) => sum + c.CpuTime);
                var cpu0 = (Children: ChildrenCpu(), Me: ProcStat.CpuTime(Environment.ProcessId), All: ProcStat.MachineBusy());
                var round = runRound(name, totals.Latencies);
                var cpu1 = (Children: ChildrenCpu(), Me: ProcStat.CpuTime(Environment.ProcessId), All: ProcStat.MachineBusy());
                cancellationToken.ThrowIfCancellationRequested();
                // Gateway and daemons count as "gateway"; the harness (load generator and the direct Kestrel) as harness.
                totals.GatewayCpu = cpu1.Children - cpu0.Children;
                totals.HarnessCpu = cpu1.Me - cpu0.Me;
                totals.MachineBusy = cpu1.All - cpu0.All;
                totals.Requests = round.Requests;
                totals.Errors = round.Errors;
                totals.Seconds = round.Seconds;
                scenario.Sides[name].Add(totals);
                foreach (var c in children)
                {
                    if (c.HasExited)
                    {
                        throw new BenchException($"{c.Name} died during the run:\n{c.RecentOutput()}");
                    }
                }
            }
        }
        return scenario;
    }

    private sealed record MemoryResult(int Runtimes, long Before, long Connected, long Idle, double ConnectSeconds);

    private static async Task<MemoryResult> MeasureIdleRuntimesAsync(int count, HttpClient http, Uri origin, ChildProcess gateway, CancellationToken cancellationToken)
    {
        Log($"creating and pairing {count} runtimes");
        var credentials = new RuntimeCredentials[count];
        await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = cancellationToken }, async (i, ct) =>
        {
            var (_, token) = await CreateRuntimeAsync(http, "idle " + i.ToString(CultureInfo.InvariantCulture), ct);
            credentials[i] = await RuntimeCredentials.PairAsync(origin, token, ct);
        });
        await Task.Delay(TimeSpan.FromSeconds(3), cancellationToken);
        var before = gateway.RssBytes;
        Log($"gateway VmRSS before connecting: {before / 1024.0 / 1024:0.0} MiB; connecting {count} RuntimeClients");

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var clients = credentials.Select(c => new RuntimeClient(c, new EngineSet([new FixedEngine()]), 1)).ToArray();
        var started = Stopwatch.GetTimestamp();
        var runs = clients.Select(c => Task.Run(() => c.RunAsync(stop.Token), CancellationToken.None)).ToArray();
        try
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(120);
            int up;
            while ((up = clients.Count(c => c.Connected)) < count)
            {
                if (DateTime.UtcNow > deadline)
                {
                    throw new BenchException($"Only {up} of {count} runtimes connected within 120 s.");
                }
                await Task.Delay(100, cancellationToken);
            }
            var connectSeconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            Log($"all {count} runtimes connected in {connectSeconds:0.0} s; settling 5 s");
            await Task.Delay(TimeSpan.FromSeconds(5), cancellationToken);
            var connected = gateway.RssBytes;
            Log($"gateway VmRSS with {count} connected: {connected / 1024.0 / 1024:0.0} MiB ({(connected - before) / 1024.0 / count:0.0} KiB per runtime); idling 10 s");
            await Task.Delay(TimeSpan.FromSeconds(10), cancellationToken);
            var idle = gateway.RssBytes;
            var still = clients.Count(c => c.Connected);
            Log($"gateway VmRSS after 10 s idle: {idle / 1024.0 / 1024:0.0} MiB ({(idle - before) / 1024.0 / count:0.0} KiB per runtime); {still} still connected");
            return new MemoryResult(count, before, connected, idle, connectSeconds);
        }
        finally
        {
            await stop.CancelAsync();
            try
            {
                await Task.WhenAll(runs).WaitAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
            }
            catch (Exception ex) when (ex is OperationCanceledException or TimeoutException or System.Net.WebSockets.WebSocketException)
            {
            }
        }
    }

    internal static async Task<(string LatticeId, string BootstrapToken)> CreateRuntimeAsync(HttpClient http, string displayName, CancellationToken cancellationToken)
    {
        using var response = await http.PostAsJsonAsync("v1/personal-runtimes", new JsonObject { ["displayName"] = displayName, ["executionBackend"] = "local-model" }, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            throw new BenchException($"POST /v1/personal-runtimes answered {(int)response.StatusCode}: {text}");
        }
        var node = JsonNode.Parse(text)!;
        var latticeId = node["runtime"]?["latticeId"]?.GetValue<string>() ?? throw new BenchException("No runtime.latticeId in: " + text);
        var token = node["bootstrapToken"]?.GetValue<string>() ?? throw new BenchException("No bootstrapToken in: " + text);
        return (latticeId, token);
    }

    /// <summary>POST /v1/chat/completions → FixedEngine.ExecuteAsync, the engine writing straight to the response.</summary>
    private static async Task<WebApplication> StartDirectAsync(int manyChunks, CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { EnvironmentName = "Production" });
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        var engines = new Dictionary<string, FixedEngine>(StringComparer.Ordinal)
        {
            [FixedModel] = new FixedEngine(FixedModel),
            [ManyModel] = new FixedEngine(ManyModel, manyChunks),
        };
        app.MapPost("/v1/chat/completions", async context =>
        {
            using var buffer = new MemoryStream();
            await context.Request.Body.CopyToAsync(buffer, context.RequestAborted);
            var body = buffer.ToArray();
            string? model;
            bool stream;
            using (var doc = JsonDocument.Parse(body))
            {
                model = doc.RootElement.TryGetProperty("model", out var m) ? m.GetString() : null;
                stream = doc.RootElement.TryGetProperty("stream", out var s) && s.ValueKind == JsonValueKind.True;
            }
            if (model is null || !engines.TryGetValue(model, out var engine))
            {
                context.Response.StatusCode = 404;
                return;
            }
            await engine.ExecuteAsync(new EngineRequest("chat.completions", model, body, "application/json", stream), new ResponseOutput(context.Response), context.RequestAborted);
        });
        await app.StartAsync(cancellationToken);
        return app;
    }

    private sealed class ResponseOutput(HttpResponse response) : IEngineOutput
    {
        public ValueTask StartAsync(int status, string contentType, CancellationToken cancellationToken)
        {
            response.StatusCode = status;
            response.ContentType = contentType;
            return ValueTask.CompletedTask;
        }

        // PipeWriter.WriteAsync writes and flushes: each SSE event leaves at once, as through the gateway.
        public async ValueTask WriteAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken) =>
            await response.BodyWriter.WriteAsync(bytes, cancellationToken);

        // Nothing is metered here.
        public void ReportUsage(EngineUsage usageSoFar)
        {
        }
    }

    private static string Markdown(BenchOptions options, List<ScenarioResult> results, ScenarioResult many, MemoryResult? memory, int maxConns)
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(ci, $"Runtime path: {Environment.ProcessorCount} CPUs, {options.Duration.TotalSeconds:0.###} s per side per scenario in {options.Round.TotalSeconds:0.###} s ABBA rounds, warm-up {options.Warmup.TotalSeconds:0.###} s, gateway GC {options.GatewayGc}.");
        sb.AppendLine();
        Report.PairTable(sb, results, "direct", "gateway", "added");
        sb.AppendLine();
        sb.AppendLine(ci, $"Latencies in ms. Other processes used {results.Append(many).Select(r => r.OtherLoad).DefaultIfEmpty(0).Average():0%} of the machine on average during the measured rounds.");
        sb.AppendLine();
        sb.AppendLine(ci, $"Relayed chunks ({options.ManyChunks} chunks per streamed answer, {maxConns} connections): direct {many.Direct.Throughput * options.ManyChunks:0} chunks/s ({many.Direct.Throughput:0.0} req/s), gateway {many.Gateway.Throughput * options.ManyChunks:0} chunks/s ({many.Gateway.Throughput:0.0} req/s), errors {many.Sides.Values.Sum(t => t.Errors)}.");
        if (memory is not null)
        {
            double Per(long after) => (after - memory.Before) / 1024.0 / memory.Runtimes;
            sb.AppendLine();
            sb.AppendLine(ci, $"Gateway VmRSS, {memory.Runtimes} idle connected runtimes (all connected in {memory.ConnectSeconds:0.0} s): before {memory.Before / 1048576.0:0.0} MiB, connected + 5 s {memory.Connected / 1048576.0:0.0} MiB ({Per(memory.Connected):0.0} KiB per runtime), + 10 s idle {memory.Idle / 1048576.0:0.0} MiB ({Per(memory.Idle):0.0} KiB per runtime).");
        }
        Report.ErrorList(sb);
        return sb.ToString();
    }

    private static void Log(string message) => BenchRun.Log(message);
}
