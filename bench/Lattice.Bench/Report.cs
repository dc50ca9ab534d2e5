using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace Lattice.Bench;

/// <summary>The markdown report.</summary>
internal static class Report
{
    public const double AddedP50TargetMs = 0.3;
    /// <summary>What the Anthropic surface may add at p50 over the OpenAI surface, both over an OpenAI upstream.</summary>
    public const double AnthropicSurfaceP50TargetMs = 0.030;
    public const double AddedP99TargetMs = 1.0;
    public const double ThroughputTarget = 5000;
    public const int TargetConcurrency = 32;

    public static string ModeName(ChatMode mode) => mode == ChatMode.Streaming ? "streaming" : "non-streaming";

    /// <summary>
    /// One row per scenario of two sides measured in the same rounds: each side's p50 and p99, what the second adds, each
    /// side's throughput and the errors. <paramref name="first"/>, <paramref name="second"/> and <paramref name="added"/>
    /// name the columns.
    /// </summary>
    /// <summary>The kinds of errors the run met (<see cref="Load.ErrorKinds"/>) and how often, as a list; nothing when none.</summary>
    public static void ErrorList(StringBuilder sb)
    {
        if (!Load.ErrorKinds.IsEmpty)
        {
            sb.AppendLine();
            foreach (var (what, n) in Load.ErrorKinds)
            {
                sb.AppendLine(System.Globalization.CultureInfo.InvariantCulture, $"- {n} × {what}");
            }
        }
    }

    /// <summary>
    /// Two sides of each scenario and what the second adds, p50 and p99 in ms; the sides are <c>direct</c> and
    /// <c>gateway</c> unless named (<paramref name="firstSide"/>, <paramref name="secondSide"/>).
    /// </summary>
    public static void PairTable(StringBuilder sb, IEnumerable<ScenarioResult> results, string first, string second, string added,
        string firstSide = "direct", string secondSide = "gateway")
    {
        var ci = System.Globalization.CultureInfo.InvariantCulture;
        sb.AppendLine(ci, $"| mode | conns | {first} p50 | {first} p99 | {second} p50 | {second} p99 | {added} p50 | {added} p99 | {first} req/s | {second} req/s | errors |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var s in results)
        {
            var a = s.P(firstSide);
            var b = s.P(secondSide);
            sb.AppendLine(ci, $"| {ModeName(s.Mode)} | {s.Connections} | {a[0]:0.000} | {a[1]:0.000} | {b[0]:0.000} | {b[1]:0.000} | {b[0] - a[0]:+0.000;-0.000} | {b[1] - a[1]:+0.000;-0.000} | {s.Sides[firstSide].Throughput:0} | {s.Sides[secondSide].Throughput:0} | {s.Sides.Values.Sum(t => t.Errors)} |");
        }
    }

    public sealed record TargetCheck(string What, string Goal, string Measured, bool Met);

    public static IEnumerable<TargetCheck> Targets(IReadOnlyList<ScenarioResult> results)
    {
        foreach (var s in results)
        {
            var mode = ModeName(s.Mode);
            if (s.Connections == 1)
            {
                var p50 = s.GatewayP[0] - s.DirectP[0];
                var p99 = s.GatewayP[1] - s.DirectP[1];
                yield return new($"added p50, 1 connection, {mode}", $"≤ {AddedP50TargetMs:0.0} ms", Ms(p50), p50 <= AddedP50TargetMs);
                yield return new($"added p99, 1 connection, {mode}", $"≤ {AddedP99TargetMs:0.0} ms", Ms(p99), p99 <= AddedP99TargetMs);
            }
            if (s.Connections == 1 && s.Variant is not null && s.Anthropic)
            {
                var extra = s.P("variant")[0] - s.GatewayP[0];
                yield return new($"Anthropic surface over OpenAI surface, p50, 1 connection, {mode}", $"≤ +{AnthropicSurfaceP50TargetMs * 1000:0} µs",
                    string.Create(CultureInfo.InvariantCulture, $"{extra * 1000:+0;-0;0} µs"), extra <= AnthropicSurfaceP50TargetMs);
            }
            if (s.Connections == TargetConcurrency)
            {
                yield return new($"gateway throughput, {TargetConcurrency} connections, {mode}", $"≥ {ThroughputTarget:#,0} req/s",
                    Rps(s.Gateway.Throughput), s.Gateway.Throughput >= ThroughputTarget);
            }
        }
    }

    public static string Markdown(BenchOptions options, IReadOnlyList<ScenarioResult> results, IReadOnlyDictionary<string, long> errorKinds, string source)
    {
        var sb = new StringBuilder();
        void Line(string text = "") => sb.Append(text).Append('\n');

        Line("## Results");
        Line();
        Line($"- When: {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
        Line($"- Machine: {Environment.ProcessorCount} logical CPUs ({CpuModel()}), Linux {Kernel()}, {RuntimeInformation.FrameworkDescription}");
        Line($"- Source: {source}");
        Line($"- Gateway: `lattice up`, {GcDescription(options.GatewayGc)}, ASPNETCORE_ENVIRONMENT=Production, log level Warning, API-key checking on" +
            (options.GatewayEnv.Count > 0 ? ", extra env " + string.Join(", ", options.GatewayEnv.Select(kv => $"`{kv.Key}={kv.Value}`")) : ""));
        Line($"- Load: closed loop, HTTP/1.1 keep-alive over raw sockets, {Secs(options.Duration)} measured per target per scenario " +
            $"in {Secs(options.Round)} rounds alternating direct/gateway (ABBA), after {Secs(options.Warmup)} warm-up per target and mode; " +
            "latency = request sent → last response byte read");
        Line();
        Line("| Mode | Conns | Direct p50 | Gateway p50 | **Added p50** | Direct p99 | Gateway p99 | **Added p99** | Direct req/s | Gateway req/s | Errors | Other load | Redone |");
        Line("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        foreach (var s in results)
        {
            Line($"| {ModeName(s.Mode)} | {s.Connections} | {Ms(s.DirectP[0])} | {Ms(s.GatewayP[0])} | **{Signed(s.GatewayP[0] - s.DirectP[0])}** | " +
                $"{Ms(s.DirectP[1])} | {Ms(s.GatewayP[1])} | **{Signed(s.GatewayP[1] - s.DirectP[1])}** | " +
                $"{Rps(s.Direct.Throughput)} | {Rps(s.Gateway.Throughput)} | {s.Sides.Values.Sum(t => t.Errors)} | {s.OtherLoad.ToString("0%", CultureInfo.InvariantCulture)} | {s.Redone} |");
        }
        Line();
        Line("Latencies in ms. Added = gateway pN − direct pN. Errors = non-200 answers, broken connections and failed content checks (every 64th response per connection is checked for \"You said: hello\"). " +
            "Other load = share of the machine's CPU used by processes other than these three during the kept rounds (from /proc/stat); " +
            "anything above a few percent means the numbers are disturbed. " +
            $"Redone = rounds measured again (all sides) because other load exceeded {options.MaxOtherLoad:0%} (at most {options.MaxRedos} times per round).");

        var busy = results.Where(s => s.Connections == results.Max(r => r.Connections)).ToList();
        if (busy.Count > 0)
        {
            Line();
            Line($"CPU time per request at {busy[0].Connections} connections (µs, from /proc/PID/stat, 10 ms tick resolution):");
            Line();
            Line("| Mode | Path | Load generator | Gateway | of which ledger commits | Stand-in | Sum |");
            Line("|---|---|--:|--:|--:|--:|--:|");
            foreach (var s in busy)
            {
                foreach (var (name, t) in s.Sides)
                {
                    var me = TargetTotals.MicrosPerRequest(t.HarnessCpu, t.Requests);
                    var gw = TargetTotals.MicrosPerRequest(t.GatewayCpu, t.Requests);
                    var ledger = TargetTotals.MicrosPerRequest(t.LedgerCpu, t.Requests);
                    var si = TargetTotals.MicrosPerRequest(t.StandInCpu, t.Requests);
                    Line($"| {ModeName(s.Mode)} | {name} | {Us(me)} | {Us(gw)} | {ledger.ToString("0.0", CultureInfo.InvariantCulture)} | {Us(si)} | {Us(me + gw + si)} |");
                }
            }
            Line();
            Line("Ledger commits = the usage ledger's commit thread (its batches of SQLite inserts), counted in the round it ran in: " +
                "a batch still lingering when a round ends is counted in the next one.");
        }

        if (options.VariantAnthropic)
        {
            Line();
            Line("A/B: **variant** = the same gateway asked the same chat through its Anthropic surface (`POST /v1/messages`, " +
                "translated to the chat task and back), measured in the same interleaved rounds:");
        }
        else if (options.Scaleout)
        {
            Line();
            Line("A/B: **gateway** = one node on SQLite, counters in process; **variant** = one node on PostgreSQL + Redis; " +
                (options.ScaleoutPlain ? "neither caller with rate limits or a budget (a new key's default)"
                    : "both callers with rate limits and a budget (never reached)") + ", measured in the same interleaved rounds:");
        }
        else if (options.HasVariant)
        {
            Line();
            Line("A/B: **variant** = " + (options.VariantDll is { } dll ? $"`{dll}`" : "the same build") +
                (options.VariantGc is { } gc ? $", {GcDescription(gc)}" : "") +
                string.Concat(options.VariantEnv.Select(kv => $", `{kv.Key}={kv.Value}`")) + ", measured in the same interleaved rounds:");
        }
        if (options.HasVariant || options.VariantAnthropic)
        {
            Line();
            Line("| Mode | Conns | Gateway p50 | Variant p50 | Gateway p99 | Variant p99 | Gateway req/s | Variant req/s |");
            Line("|---|--:|--:|--:|--:|--:|--:|--:|");
            foreach (var s in results)
            {
                var v = s.P("variant");
                Line($"| {ModeName(s.Mode)} | {s.Connections} | {Ms(s.GatewayP[0])} | {Ms(v[0])} | {Ms(s.GatewayP[1])} | {Ms(v[1])} | " +
                    $"{Rps(s.Gateway.Throughput)} | {Rps(s.Variant!.Throughput)} |");
            }
        }

        var targets = Targets(results).ToList();
        if (targets.Count > 0)
        {
            Line();
            Line("| Target | Goal | Measured | |");
            Line("|---|---|--:|---|");
            foreach (var t in targets)
            {
                Line($"| {t.What} | {t.Goal} | {t.Measured} | {(t.Met ? "met" : "**missed**")} |");
            }
        }

        if (errorKinds.Count > 0)
        {
            Line();
            Line("Errors:");
            Line();
            foreach (var (what, count) in errorKinds.OrderByDescending(kv => kv.Value).Take(20))
            {
                Line($"- {count} × {what}");
            }
        }
        return sb.ToString();
    }

    /// <summary>Which commit was measured (read-only git queries), e.g. "commit 0ff5a7f, with uncommitted changes under src/".</summary>
    public static string SourceDescription(string repo, bool customBuild)
    {
        if (customBuild)
        {
            return "custom build (--gateway-dll/--standin-dll)";
        }
        var head = Git(repo, "rev-parse", "--short", "HEAD");
        if (head is null)
        {
            return "unknown (no git)";
        }
        var dirty = Git(repo, "status", "--porcelain", "--untracked-files=no", "--", "src", "test");
        return $"commit {head}" + (string.IsNullOrEmpty(dirty) ? "" : ", with uncommitted edits under src/ or test/");
    }

    private static string? Git(string repo, params string[] args)
    {
        try
        {
            var info = new System.Diagnostics.ProcessStartInfo("git") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            info.ArgumentList.Add("-C");
            info.ArgumentList.Add(repo);
            foreach (var a in args)
            {
                info.ArgumentList.Add(a);
            }
            using var p = System.Diagnostics.Process.Start(info)!;
            var output = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit(5000);
            return p.ExitCode == 0 ? output : null;
        }
        catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            return null;
        }
    }

    private static string GcDescription(string gc) => gc switch
    {
        "server" => "server GC (`DOTNET_gcServer=1`)",
        "workstation" => "workstation GC (`DOTNET_gcServer=0`)",
        _ => "GC as built",
    };

    private static string CpuModel()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            return line is null ? "unknown CPU" : line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim();
        }
        catch (IOException)
        {
            return "unknown CPU";
        }
    }

    private static string Kernel()
    {
        try
        {
            return File.ReadAllText("/proc/sys/kernel/osrelease").Trim();
        }
        catch (IOException)
        {
            return "?";
        }
    }

    private static string Secs(TimeSpan t) => t.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture) + " s";
    private static string Ms(double ms) => double.IsNaN(ms) ? "n/a" : ms.ToString("0.000", CultureInfo.InvariantCulture);
    private static string Signed(double ms) => double.IsNaN(ms) ? "n/a" : ms.ToString("+0.000;−0.000;0.000", CultureInfo.InvariantCulture);
    private static string Us(double us) => double.IsNaN(us) ? "n/a" : us.ToString("0", CultureInfo.InvariantCulture);
    private static string Rps(double rps) => rps.ToString("#,0", CultureInfo.InvariantCulture);
}
