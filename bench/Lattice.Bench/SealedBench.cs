using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Lattice.Client;
using Lattice.Protocol.Runtime;
using Lattice.Protocol.Sealing;
using Microsoft.Extensions.AI;

namespace Lattice.Bench;

/// <summary>
/// Sealed dispatch's cost (issue 13 §6): a gateway and a <c>lattice relay connect</c> daemon serving the fixed engine;
/// the same chat through the .NET SDK, unsealed (<c>WithRuntime(…).GetChatClient()</c>) and sealed
/// (<c>GetSealedChatClient</c>), in interleaved ABBA rounds. The difference is what sealing adds end to end: per call
/// the client's HKDF and AES-GCM (its session's key pair and ECDH are made ahead), the daemon's opening (ECDH only for
/// a session it has not seen) and sealing, its usage tagged with the link's usage key — the gateway relays either the
/// same way and checks the tag off the client's path. Each side's CPU per request (client, gateway, daemon) is
/// reported too: what sealing costs in work, which the machine's noise moves less than latency.
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

            // A call the SDK retried succeeds in the end (no error) but waited a backoff: counted, as the SDK saw it.
            using var lattice = new LatticeClient(new LatticeClientOptions
            {
                Endpoint = origin,
                TokenProvider = new DeveloperKeyTokenProvider(apiKey),
                Retry = new LatticeRetryOptions { MaxRetries = options.SdkRetries, OnRetry = r => Load.ErrorKinds.AddOrUpdate($"SDK retried after {r.Failure.GetType().Name}", 1, (_, n) => n + 1) },
            });
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

            // CPU each process spent in the measured rounds, per side: what sealing costs in work, which the machine's
            // noise moves less than latency. The harness's own CPU is the SDK's (and the load loop's, the same both ways).
            var (gatewayProcess, daemonProcess) = (children[0], children[^1]);
            var cpu = new Dictionary<(ChatMode Mode, int Conns, string Side), CpuTotals>();
            Load.RoundResult Round(string side, ChatMode mode, int conns, TimeSpan duration, Samples? into)
            {
                var before = (Client: ProcStat.CpuTime(Environment.ProcessId), Gateway: gatewayProcess.CpuTime, Daemon: daemonProcess.CpuTime);
                var round = RunRoundAsync(chats[side], side, mode, expected[mode], conns, duration, into, cancellationToken).GetAwaiter().GetResult();
                if (into is not null)
                {
                    if (!cpu.TryGetValue((mode, conns, side), out var totals))
                    {
                        cpu[(mode, conns, side)] = totals = new CpuTotals();
                    }
                    totals.Client += ProcStat.CpuTime(Environment.ProcessId) - before.Client;
                    totals.Gateway += gatewayProcess.CpuTime - before.Gateway;
                    totals.Daemon += daemonProcess.CpuTime - before.Daemon;
                    totals.Requests += round.Requests;
                }
                return round;
            }

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
                    Log($"{Report.ModeName(mode)} x{conns}, CPU µs per request: unsealed {cpu[(mode, conns, Unsealed)]} | sealed {cpu[(mode, conns, Sealed)]}");
                }
            }

            var crypto = CryptoAlone(options.Duration);
            Log("the sealing work alone, in this process: " + Breakdown(crypto));

            var report = Markdown(options, results, cpu, crypto);
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

    private static readonly string[] Steps =
        ["client seals the request", "daemon opens it", "daemon seals the answer", "daemon authenticates the usage", "gateway checks it", "client opens the answer"];

    /// <summary>The gateway's check of the usage: off the client's path (on the thread pool, once the answer has gone).</summary>
    private static readonly string[] OffPath = ["gateway checks it"];

    /// <summary>Median µs per step: as format v1, sessions with signed usage, now (usage tagged with the link's key); sessions apart.</summary>
    private sealed record CryptoTimes((string Step, double Micros)[] PerCall, (string Step, double Micros)[] Signed, (string Step, double Micros)[] Steady,
        double SessionClient, double SessionDaemon, double LinkKey);

    /// <summary>
    /// µs of wall time per step, on one thread of this process, for the cryptography of one sealed non-streamed call:
    /// the client's seal, the daemon's open, its sealed answer, its authenticated usage, the gateway's check, the
    /// client's open of the answer. Each step's median over the calls. Three ways, interleaved call by call: as format
    /// v1 did it (every call its own session — a fresh key pair and ECDH on both sides — and the keys imported for each
    /// signature and verification); sessions with the usage signed (the session made ahead, the daemon's session
    /// kept, the signing and verifying keys imported once: ECDSA per call); and now, the usage tagged with the
    /// link's usage key (HMAC per call). The cost of making a session and of agreeing a link's usage key are timed apart.
    /// </summary>
    private static CryptoTimes CryptoAlone(TimeSpan duration)
    {
        using var work = SealedFormat.NewKey();
        var workPublic = SealedFormat.PublicKeyOf(work);
        var body = """{"model":"lattice:personal:lat_bench","messages":[{"role":"user","content":"hello"}]}"""u8.ToArray();
        var answer = """{"id":"chatcmpl-fixed","object":"chat.completion","created":1700000000,"model":"fixed","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the fixed engine.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":5,"total_tokens":6}}"""u8.ToArray();
        var usage = new DispatchEnd(1, 5, 0);
        var perCall = Steps.Select(_ => new Samples()).ToArray();
        var signed = Steps.Select(_ => new Samples()).ToArray();
        var steady = Steps.Select(_ => new Samples()).ToArray();
        Samples sessionClient = new(), sessionDaemon = new(), linkKey = new();
        using var opener = new SealedRequestOpener(work);
        using var signer = ECDsa.Create(work.ExportParameters(includePrivateParameters: true));
        using var verifier = SealedUsage.Verifier(workPublic)!;
        // One link's usage key, both sides (each agreement timed: once per link, at the welcome).
        var l0 = Stopwatch.GetTimestamp();
        using var gatewayUsageKey = UsageKey.ForGateway(workPublic, out var linkPublic);
        var l1 = Stopwatch.GetTimestamp();
        using var daemonUsageKey = UsageKey.ForDaemon(work, linkPublic);
        linkKey.Add(l1 - l0 + (Stopwatch.GetTimestamp() - l1));
        SealingSession? session = null;
        var deadline = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        const string RuntimeId = "lat_bench";
        for (var calls = 0; Stopwatch.GetTimestamp() < deadline || calls < 100; calls++)
        {
            var requestId = "sreq_" + calls.ToString("x32", CultureInfo.InvariantCulture);
            // As v1: one session per call, keys imported per use.
            Call(perCall, requestId,
                id => { var sealedBody = SealedRequest.Seal(body, workPublic, id, RuntimeId, out var reply); return (sealedBody, reply); },
                (sealedBody, id) => { SealedRequest.Open(sealedBody, work, id, RuntimeId, out var sealer); return sealer; },
                id => SealedUsage.Sign(usage, work, id, RuntimeId),
                (end, id) => SealedUsage.Verify(end, workPublic, id, RuntimeId));
            // Steady state: a session of 1,000 calls each way (2,000 requests; the SDK's seal 1,000), made here between
            // calls and timed apart.
            if (session is null || session.Sealed >= 2000)
            {
                session?.Dispose();
                var s0 = Stopwatch.GetTimestamp();
                session = SealingSession.Create(workPublic);
                sessionClient.Add(Stopwatch.GetTimestamp() - s0);
                var first = session.Seal(body, requestId + "_first", RuntimeId, out var firstReply);
                firstReply.Dispose();
                var s1 = Stopwatch.GetTimestamp();
                opener.Open(first, requestId + "_first", RuntimeId, out var firstSealer).AsSpan().Clear();
                sessionDaemon.Add(Stopwatch.GetTimestamp() - s1);
                firstSealer.Dispose();
            }
            var current = session;
            // Sessions with the usage signed (keys imported once), then now: the usage tagged with the link's key.
            Call(signed, requestId + "_s",
                id => { var sealedBody = current.Seal(body, id, RuntimeId, out var reply); return (sealedBody, reply); },
                (sealedBody, id) => { opener.Open(sealedBody, id, RuntimeId, out var sealer); return sealer; },
                id => SealedUsage.Sign(usage, signer, id, RuntimeId),
                (end, id) => SealedUsage.Verify(end, verifier, id, RuntimeId));
            Call(steady, requestId,
                id => { var sealedBody = current.Seal(body, id, RuntimeId, out var reply); return (sealedBody, reply); },
                (sealedBody, id) => { opener.Open(sealedBody, id, RuntimeId, out var sealer); return sealer; },
                id => daemonUsageKey.Tag(usage, id, RuntimeId),
                (end, id) => gatewayUsageKey.Verify(end, id, RuntimeId));
        }
        session?.Dispose();
        return new CryptoTimes(Medians(perCall), Medians(signed), Medians(steady), sessionClient.PercentilesMs(50)[0] * 1000,
            sessionDaemon.PercentilesMs(50)[0] * 1000, linkKey.PercentilesMs(50)[0] * 1000);

        // One call's steps, each timed: seal, open, seal the answer, authenticate the usage, check it, open the answer.
        void Call(Samples[] into, string requestId, Func<string, (byte[] Sealed, SealedChunkOpener Reply)> seal, Func<byte[], string, SealedChunkSealer> open,
            Func<string, DispatchEnd> authenticate, Func<DispatchEnd, string, bool> check)
        {
            var t0 = Stopwatch.GetTimestamp();
            var (sealedBody, reply) = seal(requestId);
            var t1 = Stopwatch.GetTimestamp();
            using var sealer = open(sealedBody, requestId);
            var t2 = Stopwatch.GetTimestamp();
            var chunk = sealer.Seal(answer, final: true);
            var t3 = Stopwatch.GetTimestamp();
            var end = authenticate(requestId);
            var t4 = Stopwatch.GetTimestamp();
            var holds = check(end, requestId);
            var t5 = Stopwatch.GetTimestamp();
            var opened = reply.Open(chunk);
            var t6 = Stopwatch.GetTimestamp();
            reply.Dispose();
            if (!holds || opened.Length != answer.Length)
            {
                throw new BenchException("The sealing round trip failed.");
            }
            Add(into, [t0, t1, t2, t3, t4, t5, t6]);
        }

        static void Add(Samples[] samples, long[] marks)
        {
            for (var i = 0; i < samples.Length; i++)
            {
                samples[i].Add(marks[i + 1] - marks[i]);
            }
        }

        static (string Step, double Micros)[] Medians(Samples[] samples) =>
            [.. Steps.Select((step, i) => (step, samples[i].PercentilesMs(50)[0] * 1000))];
    }

    private static string Breakdown(CryptoTimes crypto)
    {
        // The gateway checks the usage off the client's path; a whole answer's end waits for the daemon's tag or signature.
        static double OnPath((string Step, double Micros)[] steps) => steps.Where(c => !OffPath.Contains(c.Step)).Sum(c => c.Micros);
        return string.Create(CultureInfo.InvariantCulture, $"as v1 (a session per call, keys imported per use) {crypto.PerCall.Sum(c => c.Micros):0} µs per non-streamed call — ")
            + List(crypto.PerCall)
            + string.Create(CultureInfo.InvariantCulture, $"; sessions with the usage signed (ECDSA, keys imported once) {crypto.Signed.Sum(c => c.Micros):0} µs — ")
            + List(crypto.Signed)
            + string.Create(CultureInfo.InvariantCulture, $"; now (the usage tagged with the link's key) {crypto.Steady.Sum(c => c.Micros):0} µs, {OnPath(crypto.Steady):0} µs of it on the client's path — ")
            + List(crypto.Steady)
            + string.Create(CultureInfo.InvariantCulture, $"; a new session (once per 1,000 requests, made ahead): client {crypto.SessionClient:0} µs, daemon's first open {crypto.SessionDaemon:0} µs; a link's usage key (once per link, both sides) {crypto.LinkKey:0} µs");

        static string List((string Step, double Micros)[] steps) =>
            string.Join(", ", steps.Select(c => string.Create(CultureInfo.InvariantCulture, $"{c.Step} {c.Micros:0}")));
    }

    /// <summary>CPU time of the harness (the SDK), the gateway and the daemon over a side's measured rounds.</summary>
    private sealed class CpuTotals
    {
        public TimeSpan Client;
        public TimeSpan Gateway;
        public TimeSpan Daemon;
        public long Requests;

        public double ClientMicros => TargetTotals.MicrosPerRequest(Client, Requests);
        public double GatewayMicros => TargetTotals.MicrosPerRequest(Gateway, Requests);
        public double DaemonMicros => TargetTotals.MicrosPerRequest(Daemon, Requests);
        public double AllMicros => TargetTotals.MicrosPerRequest(Client + Gateway + Daemon, Requests);

        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"client {ClientMicros:0}, gateway {GatewayMicros:0}, daemon {DaemonMicros:0}, all {AllMicros:0}");
    }

    private static void CpuTable(StringBuilder sb, List<ScenarioResult> results, Dictionary<(ChatMode Mode, int Conns, string Side), CpuTotals> cpu)
    {
        var ci = CultureInfo.InvariantCulture;
        sb.AppendLine("| mode | conns | client (SDK) unsealed / sealed / + | gateway unsealed / sealed / + | daemon unsealed / sealed / + | all three unsealed / sealed / + |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|");
        foreach (var r in results)
        {
            var (u, s) = (cpu[(r.Mode, r.Connections, Unsealed)], cpu[(r.Mode, r.Connections, Sealed)]);
            sb.AppendLine(ci, $"| {Report.ModeName(r.Mode)} | {r.Connections} | {Cell(u.ClientMicros, s.ClientMicros)} | {Cell(u.GatewayMicros, s.GatewayMicros)} | {Cell(u.DaemonMicros, s.DaemonMicros)} | {Cell(u.AllMicros, s.AllMicros)} |");
        }

        static string Cell(double a, double b) => string.Create(CultureInfo.InvariantCulture, $"{a:0} / {b:0} / {b - a:+0;-0;0}");
    }

    private static string Markdown(BenchOptions options, List<ScenarioResult> results, Dictionary<(ChatMode Mode, int Conns, string Side), CpuTotals> cpu,
        CryptoTimes crypto)
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(ci, $"Sealed vs unsealed chat through a personal runtime (fixed engine), both through the .NET SDK{(options.SdkRetries == 3 ? "" : $" (retries: {options.SdkRetries}{(options.SdkRetries == 0 ? ", so no Idempotency-Key" : "")})")}: {Environment.ProcessorCount} CPUs, {options.Duration.TotalSeconds:0.###} s per side per scenario in {options.Round.TotalSeconds:0.###} s ABBA rounds, warm-up {options.Warmup.TotalSeconds:0.###} s, gateway GC {options.GatewayGc}.");
        sb.AppendLine();
        Report.PairTable(sb, results, Unsealed, Sealed, "sealing adds", Unsealed, Sealed);
        sb.AppendLine();
        sb.AppendLine(ci, $"Latencies in ms, end to end (the SDK call until the answer is read and opened). Other processes used {results.Select(r => r.OtherLoad).DefaultIfEmpty(0).Average():0%} of the machine on average during the measured rounds.");
        sb.AppendLine();
        sb.AppendLine("CPU per request (µs, all threads of each process over the measured rounds, /proc's 10-ms ticks; the client is the bench process: the SDK and its load loop):");
        sb.AppendLine();
        CpuTable(sb, results, cpu);
        sb.AppendLine();
        sb.AppendLine("The sealing work alone, on one thread of the bench process (median per step, summed): " + Breakdown(crypto) + ".");
        Report.ErrorList(sb);
        return sb.ToString();
    }

    private static void Log(string message) => BenchRun.Log(message);
}
