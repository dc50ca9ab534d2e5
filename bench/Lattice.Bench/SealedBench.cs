using System.Diagnostics;
using System.Globalization;
using System.Text;
using Lattice.Client;
using Microsoft.Extensions.AI;

namespace Lattice.Bench;

/// <summary>
/// Sealed dispatch's cost (issue 13 §6): a gateway and a <c>lattice relay connect</c> daemon serving the fixed engine;
/// the same chat through the .NET SDK, unsealed (<c>WithRuntime(…).GetChatClient()</c>) and sealed
/// (<c>GetSealedChatClient</c>), in interleaved ABBA rounds. The difference is what sealing adds end to end: the
/// client's ephemeral key, ECDH and HKDF, sealing the request and opening the answer, and the daemon's opening,
/// sealing and signing — the gateway relays either the same way.
/// </summary>
internal static class SealedBench
{
    private const string Unsealed = "unsealed";
    private const string Sealed = "sealed";

    public static async Task<int> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var repo = BenchRun.FindRepoRoot(options.RepoRoot);
        var gatewayDll = options.GatewayDll ?? Path.Combine(repo, "src", "Cli", "Lattice.Cli", "bin", "Release", "net10.0", "lattice.dll");
        BenchRun.RequireBuilt(gatewayDll, "src/Cli/Lattice.Cli");
        var root = Directory.CreateTempSubdirectory("lattice-bench-sealed-").FullName;
        var children = new List<ChildProcess>();
        try
        {
            var (_, _, origin, apiKey, env) = await RuntimeBench.StartGatewayAsync(options, repo, gatewayDll, root, children, cancellationToken);
            string latticeId;
            using (var http = RuntimeBench.ApiClient(origin, apiKey))
            {
                latticeId = await RuntimeBench.StartFixedDaemonAsync(http, origin, gatewayDll, root, "fixed", "name = \"fixed\"", env, children, cancellationToken);
            }

            using var lattice = new LatticeClient(new LatticeClientOptions { Endpoint = origin, TokenProvider = new DeveloperKeyTokenProvider(apiKey) });
            var runtime = await lattice.Runtimes.GetAsync(latticeId, cancellationToken);
            var chats = new Dictionary<string, IChatClient>(StringComparer.Ordinal)
            {
                [Unsealed] = lattice.WithRuntime(runtime).GetChatClient(),
                [Sealed] = lattice.GetSealedChatClient(runtime),
            };

            // The same answer both ways, or the comparison means nothing.
            var expected = new Dictionary<ChatMode, string>();
            foreach (var mode in options.Modes)
            {
                expected[mode] = await ChatAsync(chats[Unsealed], mode, cancellationToken);
                var opened = await ChatAsync(chats[Sealed], mode, cancellationToken);
                if (opened != expected[mode] || opened.Length == 0)
                {
                    throw new BenchException($"{Report.ModeName(mode)}: the sealed chat answered '{opened}', the unsealed one '{expected[mode]}'.");
                }
            }

            Load.RoundResult Round(string side, ChatMode mode, int conns, TimeSpan duration, Samples? into) =>
                RunRoundAsync(chats[side], side, mode, expected[mode], conns, duration, into, cancellationToken).GetAwaiter().GetResult();

            var maxConns = options.Connections.Max();
            Log($"warming up ({options.Warmup.TotalSeconds:0.###} s per side and mode at {maxConns} connections, then {options.Warmup.TotalSeconds / 5:0.###} s at 1)");
            foreach (var mode in options.Modes)
            {
                foreach (var side in chats.Keys)
                {
                    Round(side, mode, maxConns, options.Warmup, null);
                    Round(side, mode, 1, options.Warmup / 5, null);
                }
            }
            Load.ErrorKinds.Clear();

            var results = new List<ScenarioResult>();
            foreach (var mode in options.Modes)
            {
                foreach (var conns in options.Connections)
                {
                    var scenario = RuntimeBench.Interleaved(options, [Unsealed, Sealed], mode, conns, children,
                        (side, into) => Round(side, mode, conns, options.Round, into), cancellationToken);
                    results.Add(scenario);
                    var (u, s) = (scenario.P(Unsealed), scenario.P(Sealed));
                    Log(string.Create(CultureInfo.InvariantCulture,
                        $"{Report.ModeName(mode)} x{conns}: unsealed p50 {u[0]:0.000} p99 {u[1]:0.000} ms | sealed p50 {s[0]:0.000} p99 {s[1]:0.000} ms | sealing adds p50 {(s[0] - u[0]) * 1000:+0;-0} µs | errors {scenario.Sides.Values.Sum(t => t.Errors)} | other load {scenario.OtherLoad:0%}"));
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
            return results.Sum(r => r.Sides.Values.Sum(t => t.Errors)) > 0 ? 1 : 0;
        }
        finally
        {
            foreach (var c in Enumerable.Reverse(children))
            {
                c.Dispose();
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

    private static async Task<string> ChatAsync(IChatClient chat, ChatMode mode, CancellationToken cancellationToken)
    {
        if (mode == ChatMode.NonStreaming)
        {
            return (await chat.GetResponseAsync("hello", cancellationToken: cancellationToken)).Text;
        }
        var text = new StringBuilder();
        await foreach (var update in chat.GetStreamingResponseAsync("hello", cancellationToken: cancellationToken))
        {
            text.Append(update.Text);
        }
        return text.ToString();
    }

    /// <summary>Closed loop: <paramref name="conns"/> callers, each sending its next chat once the last answer is read in full.</summary>
    private static async Task<Load.RoundResult> RunRoundAsync(IChatClient chat, string side, ChatMode mode, string expected, int conns, TimeSpan duration,
        Samples? into, CancellationToken cancellationToken)
    {
        var start = Stopwatch.GetTimestamp();
        var deadline = start + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        var callers = await Task.WhenAll(Enumerable.Range(0, conns).Select(_ => Task.Run(async () =>
        {
            var latencies = new Samples();
            long errors = 0;
            while (!cancellationToken.IsCancellationRequested)
            {
                var t0 = Stopwatch.GetTimestamp();
                if (t0 >= deadline)
                {
                    break;
                }
                string? problem;
                try
                {
                    var text = await ChatAsync(chat, mode, cancellationToken);
                    problem = text == expected ? null : "answer differs";
                }
                catch (Exception ex) when (ex is LatticeException or HttpRequestException or System.Security.Cryptography.CryptographicException or IOException)
                {
                    problem = ex.GetType().Name;
                }
                var t1 = Stopwatch.GetTimestamp();
                if (problem is not null)
                {
                    errors++;
                    Load.ErrorKinds.AddOrUpdate($"{side}: {problem}", 1, (_, n) => n + 1);
                    continue;
                }
                latencies.Add(t1 - t0);
            }
            return (Latencies: latencies, Errors: errors, Finished: Stopwatch.GetTimestamp());
        }, CancellationToken.None)));
        long requests = 0, failed = 0;
        foreach (var (latencies, errors, _) in callers)
        {
            requests += latencies.Count;
            failed += errors;
            into?.AddRange(latencies);
        }
        return new Load.RoundResult(requests, failed, (callers.Max(c => c.Finished) - start) / (double)Stopwatch.Frequency);
    }

    private static string Markdown(BenchOptions options, List<ScenarioResult> results)
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(ci, $"Sealed vs unsealed chat through a personal runtime (fixed engine), both through the .NET SDK: {Environment.ProcessorCount} CPUs, {options.Duration.TotalSeconds:0.###} s per side per scenario in {options.Round.TotalSeconds:0.###} s ABBA rounds, warm-up {options.Warmup.TotalSeconds:0.###} s, gateway GC {options.GatewayGc}.");
        sb.AppendLine();
        Report.PairTable(sb, results, Unsealed, Sealed, "sealing adds", Unsealed, Sealed);
        sb.AppendLine();
        sb.AppendLine(ci, $"Latencies in ms, end to end (the SDK call until the answer is read and opened). Other processes used {results.Select(r => r.OtherLoad).DefaultIfEmpty(0).Average():0%} of the machine on average during the measured rounds.");
        if (!Load.ErrorKinds.IsEmpty)
        {
            sb.AppendLine();
            foreach (var (what, n) in Load.ErrorKinds)
            {
                sb.AppendLine(ci, $"- {n} × {what}");
            }
        }
        return sb.ToString();
    }

    private static void Log(string message) => BenchRun.Log(message);
}
