using System.Diagnostics;
using System.Globalization;
using System.Text;
using Lattice.Client;
using Lattice.Protocol.Runtime;
using Lattice.Protocol.Sealing;
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
        var gatewayDll = BenchRun.GatewayDll(options, repo);
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

            var crypto = CryptoAlone(options.Duration);
            Log("the sealing work alone, in this process: " + Breakdown(crypto));

            var report = Markdown(options, results, crypto);
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

    /// <summary>
    /// µs of wall time per step, on one thread of this process, for the cryptography of one sealed non-streamed call:
    /// the client's seal (ephemeral key, ECDH, HKDF, AES-GCM), the daemon's open, its sealed answer, its signed usage,
    /// the gateway's verification, the client's open of the answer. Each step's median over the calls.
    /// </summary>
    private static (string Step, double Micros)[] CryptoAlone(TimeSpan duration)
    {
        using var work = SealedFormat.NewKey();
        var workPublic = SealedFormat.PublicKeyOf(work);
        var body = """{"model":"lattice:personal:lat_bench","messages":[{"role":"user","content":"hello"}]}"""u8.ToArray();
        var answer = """{"id":"chatcmpl-fixed","object":"chat.completion","created":1700000000,"model":"fixed","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the fixed engine.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":5,"total_tokens":6}}"""u8.ToArray();
        var usage = new DispatchEnd(1, 5, 0);
        string[] steps = ["client seals the request", "daemon opens it", "daemon seals the answer", "daemon signs the usage", "gateway verifies the usage", "client opens the answer"];
        var samples = steps.Select(_ => new Samples()).ToArray();
        var deadline = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        const string RequestId = "sreq_00000000000000000000000000000000";
        for (var calls = 0; Stopwatch.GetTimestamp() < deadline || calls < 100; calls++)
        {
            var t0 = Stopwatch.GetTimestamp();
            var sealedBody = SealedRequest.Seal(body, workPublic, RequestId, "lat_bench", out var opener);
            var t1 = Stopwatch.GetTimestamp();
            SealedRequest.Open(sealedBody, work, RequestId, "lat_bench", out var sealer);
            var t2 = Stopwatch.GetTimestamp();
            var chunk = sealer.Seal(answer, final: true);
            var t3 = Stopwatch.GetTimestamp();
            var signed = SealedUsage.Sign(usage, work, RequestId, "lat_bench");
            var t4 = Stopwatch.GetTimestamp();
            var verified = SealedUsage.Verify(signed, workPublic, RequestId, "lat_bench");
            var t5 = Stopwatch.GetTimestamp();
            var opened = opener.Open(chunk);
            var t6 = Stopwatch.GetTimestamp();
            if (!verified || opened.Length != answer.Length)
            {
                throw new BenchException("The sealing round trip failed.");
            }
            long[] marks = [t0, t1, t2, t3, t4, t5, t6];
            for (var i = 0; i < steps.Length; i++)
            {
                samples[i].Add(marks[i + 1] - marks[i]);
            }
            opener.Dispose();
            sealer.Dispose();
        }
        return [.. steps.Select((step, i) => (step, samples[i].PercentilesMs(50)[0] * 1000))];
    }

    private static string Breakdown((string Step, double Micros)[] crypto) =>
        string.Create(CultureInfo.InvariantCulture, $"{crypto.Sum(c => c.Micros):0} µs per non-streamed call — ")
        + string.Join(", ", crypto.Select(c => string.Create(CultureInfo.InvariantCulture, $"{c.Step} {c.Micros:0}")));

    private static string Markdown(BenchOptions options, List<ScenarioResult> results, (string Step, double Micros)[] crypto)
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(ci, $"Sealed vs unsealed chat through a personal runtime (fixed engine), both through the .NET SDK: {Environment.ProcessorCount} CPUs, {options.Duration.TotalSeconds:0.###} s per side per scenario in {options.Round.TotalSeconds:0.###} s ABBA rounds, warm-up {options.Warmup.TotalSeconds:0.###} s, gateway GC {options.GatewayGc}.");
        sb.AppendLine();
        Report.PairTable(sb, results, Unsealed, Sealed, "sealing adds", Unsealed, Sealed);
        sb.AppendLine();
        sb.AppendLine(ci, $"Latencies in ms, end to end (the SDK call until the answer is read and opened). Other processes used {results.Select(r => r.OtherLoad).DefaultIfEmpty(0).Average():0%} of the machine on average during the measured rounds.");
        sb.AppendLine();
        sb.AppendLine("The sealing work alone, on one thread of the bench process (median per step, summed): " + Breakdown(crypto) + ".");
        Report.ErrorList(sb);
        return sb.ToString();
    }

    private static void Log(string message) => BenchRun.Log(message);
}
