using System.Globalization;

namespace Lattice.Bench;

/// <summary>What to measure and how long; parsed from the command line.</summary>
internal sealed class BenchOptions
{
    /// <summary>Measured time per target (direct and gateway each) per scenario.</summary>
    public TimeSpan Duration { get; private set; } = TimeSpan.FromSeconds(10);

    /// <summary>Length of one interleaved round; direct and gateway alternate round by round.</summary>
    public TimeSpan Round { get; private set; } = TimeSpan.FromSeconds(1);

    /// <summary>Warm-up per target and mode before anything is measured.</summary>
    public TimeSpan Warmup { get; private set; } = TimeSpan.FromSeconds(10);

    public int[] Connections { get; private set; } = [1, 32];
    public ChatMode[] Modes { get; private set; } = [ChatMode.NonStreaming, ChatMode.Streaming];
    public bool Quick { get; private set; }
    public string? OutFile { get; private set; }
    public string? RepoRoot { get; private set; }
    public string? GatewayDll { get; private set; }
    public string? StandInDll { get; private set; }

    /// <summary><c>workstation</c> (DOTNET_gcServer=0), <c>server</c> (DOTNET_gcServer=1) or <c>default</c> (whatever the build says).</summary>
    public string GatewayGc { get; private set; } = "workstation";

    public List<KeyValuePair<string, string>> GatewayEnv { get; } = [];
    public List<KeyValuePair<string, string>> StandInEnv { get; } = [];

    /// <summary>A second gateway (A/B), measured in the same interleaved rounds; set by --variant-env/--variant-dll/--variant-gc.</summary>
    public bool HasVariant => VariantDll is not null || VariantEnv.Count > 0 || VariantGc is not null || VariantLimits || Scaleout;
    /// <summary>The variant is the gateway's Anthropic surface (<c>/v1/messages</c>), not a second gateway process.</summary>
    public bool VariantAnthropic { get; set; }

    /// <summary>A/B for limits and budgets: the variant's requests come from a key with rate limits and a budget, in a workspace with both.</summary>
    public bool VariantLimits { get; set; }

    /// <summary>
    /// A/B for the stores: the gateway on SQLite with its counters in process, the variant on a PostgreSQL and a Redis
    /// this run starts (deploy/local-cluster.sh with no nodes); both sides' keys have rate limits and a budget, so every
    /// request is counted in the store under test.
    /// </summary>
    public bool Scaleout { get; set; }
    /// <summary>With <see cref="Scaleout"/>: neither side's key has limits or budgets (the default for a new key), so only the stores are compared.</summary>
    public bool ScaleoutPlain { get; set; }
    public List<KeyValuePair<string, string>> VariantEnv { get; } = [];
    public string? VariantDll { get; private set; }
    public string? VariantGc { get; private set; }
    public bool Check { get; private set; }

    /// <summary>A round in which other processes used more than this share of the machine is measured again …</summary>
    public double MaxOtherLoad { get; private set; } = 0.10;

    /// <summary>… at most this many times per round (then it is kept).</summary>
    public int MaxRedos { get; private set; } = 3;
    public bool Help { get; private set; }

    /// <summary>The runtime-path scenario instead: gateway → runtime link → fixed engine vs. the same engine served directly.</summary>
    public bool Runtime { get; private set; }

    /// <summary>The sealed scenario: the same chat through a personal runtime, sealed and unsealed, through the SDK.</summary>
    public bool Sealed { get; private set; }

    /// <summary>
    /// The SDK's retries in the sealed scenario (its default, 3, unless told): with none it sends no
    /// <c>Idempotency-Key</c>, so the gateway keeps no answer — what an idempotent call costs, by difference.
    /// </summary>
    public int SdkRetries { get; private set; } = 3;

    /// <summary>The cross-node scenario: a runtime linked to node A, requests entering node A or node B.</summary>
    public bool CrossNode { get; private set; }

    /// <summary>The authentication scenario: what EndpointAuth costs per request, in process.</summary>
    public bool Auth { get; private set; }

    /// <summary>The usage-ledger scenario: records per second through UsageLedger into SQLite, in process.</summary>
    public bool Ledger { get; private set; }

    /// <summary>Ledger scenario: records written in the measured run.</summary>
    public int LedgerRecords { get; private set; } = 200_000;

    /// <summary>Ledger scenario: threads calling Begin and Complete at once.</summary>
    public int LedgerWriters { get; private set; } = 2;

    /// <summary>Ledger crash check, first half: write records into this directory until killed.</summary>
    public string? LedgerCrashDir { get; private set; }

    /// <summary>Ledger crash check, second half: recover this directory and check what the killed writer reported.</summary>
    public string? LedgerRecoverDir { get; private set; }

    /// <summary>The soak: mixed load on both paths for <see cref="Duration"/> (default 30 min), VmRSS and GC heap sampled every 10 s.</summary>
    public bool Soak { get; private set; }

    /// <summary>The fault suite: faults injected one after another under mixed load, each for <see cref="Duration"/> (default 10 s).</summary>
    public bool Faults { get; private set; }

    /// <summary>Soak: samples before this are not fitted (default a sixth of the duration, at most 5 min).</summary>
    public TimeSpan SoakWarmup { get; private set; }

    /// <summary>Runtime scenario: idle connected runtimes for the gateway memory measurement (0 skips it).</summary>
    public int IdleRuntimes { get; private set; } = 1000;

    /// <summary>Runtime scenario: chunks per answer for the relayed-chunks-per-second measurement.</summary>
    public int ManyChunks { get; private set; } = 1000;

    public const string Usage = """
        Lattice.Bench: the stand-in upstream called directly vs. through the gateway, in one run.

        Usage: dotnet run -c Release --project bench/Lattice.Bench -- [options]

          --duration T        measured time per target per scenario (default 10s; e.g. 10, 10s, 500ms, 2m)
          --round T           length of one interleaved direct/gateway round (default 1s)
          --warmup T          warm-up per target and mode (default 10s)
          --quick             short smoke run (duration 1s, round 250ms, warm-up 1s)
          --connections LIST  concurrency levels (default 1,32)
          --modes LIST        nonstream,stream (default both)
          --out FILE          also write the markdown report to FILE
          --gateway-gc KIND   workstation (default) | server | default: sets DOTNET_gcServer for the gateway
          --gateway-env K=V   extra environment variable for the gateway (repeatable)
          --standin-env K=V   extra environment variable for the stand-in (repeatable)
          --variant-env K=V   A/B: start a second gateway with this extra variable (repeatable) and measure it
          --variant-limits    A/B: a second gateway whose key and workspace have rate limits (never reached) and
                              budgets (never exhausted), so every request is admitted through both
                              in the same interleaved rounds
          --scaleout          A/B: the gateway on SQLite, the variant on PostgreSQL + Redis (started by this run
                              through deploy/local-cluster.sh); both with rate limits and budgets (never reached)
          --scaleout-plain    as --scaleout, but neither key has limits or budgets (a new key's default): the stores alone
          --variant-anthropic A/B: the variant is the same gateway's Anthropic surface (POST /v1/messages with the
                              same chat), to measure what the translation adds over the OpenAI surface
          --variant-dll PATH  A/B: the second gateway runs this build instead
          --variant-gc KIND   A/B: the second gateway's GC (default: as --gateway-gc)
          --gateway-dll PATH  gateway entry (default <repo>/src/Cli/Lattice.Cli/bin/Release/net10.0/lattice.dll)
          --standin-dll PATH  stand-in (default <repo>/test/Lattice.StandIn.OpenAi/bin/Release/net10.0/Lattice.StandIn.OpenAi.dll)
          --repo DIR          repository root (default: found by walking up to Lattice.slnx)
          --max-other-load P  measure a round again (all sides) when other processes used more than P% of the
                              machine during it (default 10; 100 turns it off)
          --max-redos N       at most N repeats per round (default 3), then the round is kept
          --runtime           the runtime-path scenario instead: the fixed engine through gateway → runtime link
                              (a `lattice relay connect` daemon) vs. the same engine behind an in-process Kestrel;
                              relayed chunks/s; gateway memory per idle connected runtime
          --cross-node        the cross-node scenario instead: a runtime linked to node A, requests entering node A
                              vs node B (forwarded to A); starts redis-server and two gateways on one SQLite file
          --sealed            the sealed scenario instead: the same chat to a fixed-engine runtime through the .NET SDK,
                              unsealed and sealed (GetSealedChatClient), in alternating rounds: what sealing adds
          --sdk-retries N     sealed scenario: the SDK's retries (default 3, the SDK's own); 0 sends no Idempotency-Key
          --idle-runtimes N   runtime scenario: connected runtimes for the memory measurement (default 1000; 0 skips)
          --many-chunks N     runtime scenario: chunks per streamed answer for chunks/s (default 1000)
          --auth              the authentication scenario instead: what the gateway's EndpointAuth costs per request
                              in process (developer key; access token seen before; access token at first sight)
          --ledger            the usage-ledger scenario instead: records/s through UsageLedger (journal + group
                              commit) into a fresh SQLite database, in process (target ≥ 20,000/s)
          --records N         ledger scenario: records in the measured run (default 200000; --quick: 20000)
          --writers N         ledger scenario: threads calling Begin/Complete (default 2)
          --ledger-crash DIR  crash check: write records into DIR without end, printing how far they are complete;
                              kill -9 it, then run --ledger-recover DIR (see bench/Lattice.Bench/README.md)
          --ledger-recover DIR  crash check: recover DIR and check every record reported complete is there once
          --soak              the soak instead: chat, streamed chat, embeddings and transcription over the upstream
                              path (stand-in) and the runtime path (a daemon with the real engines on the bundled
                              models), --connections' highest count (default 32), for --duration (default 30m);
                              the gateway's VmRSS and GC heap sampled every 10 s; PASS when after --warmup (default
                              duration/6, at most 5m) both slopes are <= 1 MB per 10 min, no request failed and the
                              usage ledger holds one record per request id (exit 0 PASS, 1 FAIL)
          --faults            the fault suite instead: under mixed load, the upstream resets streams mid-way, the
                              daemon gets SIGKILL mid-request, another connection holds SQLite's write lock, and the
                              data directory's disk (a tmpfs; root only) fills up, each for --duration (default 10s);
                              PASS when every request ended with its answer or a clear error, none hung, none got a
                              500, each fault was hit, and the ledger check holds (see docs/reliability.md)
          --check             exit 3 when a target is missed
          -h, --help          this text

        Build first:
          dotnet build -c Release src/Cli/Lattice.Cli
          dotnet build -c Release test/Lattice.StandIn.OpenAi
        """;

    public static BenchOptions Parse(string[] args)
    {
        var o = new BenchOptions();
        TimeSpan? duration = null, round = null, warmup = null;
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            string Next() => i + 1 < args.Length ? args[++i] : throw new BenchException($"{arg} needs a value.");
            switch (arg)
            {
                case "--duration": duration = ParseTime(Next()); break;
                case "--round": round = ParseTime(Next()); break;
                case "--warmup": warmup = ParseTime(Next()); break;
                case "--quick": o.Quick = true; break;
                case "--connections":
                    o.Connections = [.. Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                        .Select(s => int.TryParse(s, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : throw new BenchException($"Bad connection count '{s}'."))];
                    break;
                case "--modes":
                    o.Modes = [.. Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                        .Select(s => s switch
                        {
                            "nonstream" or "non-streaming" => ChatMode.NonStreaming,
                            "stream" or "streaming" => ChatMode.Streaming,
                            _ => throw new BenchException($"Bad mode '{s}' (nonstream, stream)."),
                        })];
                    break;
                case "--out": o.OutFile = Next(); break;
                case "--repo": o.RepoRoot = Next(); break;
                case "--gateway-dll": o.GatewayDll = Next(); break;
                case "--standin-dll": o.StandInDll = Next(); break;
                case "--gateway-gc": o.GatewayGc = Gc(Next()); break;
                case "--gateway-env": o.GatewayEnv.Add(KeyValue(arg, Next())); break;
                case "--standin-env": o.StandInEnv.Add(KeyValue(arg, Next())); break;
                case "--variant-env": o.VariantEnv.Add(KeyValue(arg, Next())); break;
                case "--variant-dll": o.VariantDll = Next(); break;
                case "--variant-gc": o.VariantGc = Gc(Next()); break;
                case "--variant-limits": o.VariantLimits = true; break;
                case "--scaleout": o.Scaleout = true; break;
                case "--scaleout-plain": o.Scaleout = true; o.ScaleoutPlain = true; break;
                case "--variant-anthropic": o.VariantAnthropic = true; break;
                case "--check": o.Check = true; break;
                case "--runtime": o.Runtime = true; break;
                case "--cross-node": o.CrossNode = true; break;
                case "--sealed": o.Sealed = true; break;
                case "--sdk-retries":
                    o.SdkRetries = int.Parse(Next(), CultureInfo.InvariantCulture);
                    break;
                case "--soak": o.Soak = true; break;
                case "--faults": o.Faults = true; break;
                case "--auth": o.Auth = true; break;
                case "--ledger": o.Ledger = true; break;
                case "--ledger-crash": o.LedgerCrashDir = Next(); o.Ledger = true; break;
                case "--ledger-recover": o.LedgerRecoverDir = Next(); o.Ledger = true; break;
                case "--records":
                    o.LedgerRecords = int.TryParse(Next(), CultureInfo.InvariantCulture, out var records) && records > 0
                        ? records
                        : throw new BenchException("Bad --records (a count, e.g. 200000).");
                    break;
                case "--writers":
                    o.LedgerWriters = int.TryParse(Next(), CultureInfo.InvariantCulture, out var writers) && writers > 0
                        ? writers
                        : throw new BenchException("Bad --writers (a count, e.g. 2).");
                    break;
                case "--idle-runtimes":
                    o.IdleRuntimes = int.TryParse(Next(), CultureInfo.InvariantCulture, out var idle) && idle >= 0
                        ? idle
                        : throw new BenchException("Bad --idle-runtimes (a count, e.g. 1000).");
                    break;
                case "--many-chunks":
                    o.ManyChunks = int.TryParse(Next(), CultureInfo.InvariantCulture, out var chunks) && chunks > 0
                        ? chunks
                        : throw new BenchException("Bad --many-chunks (a count, e.g. 1000).");
                    break;
                case "--max-other-load":
                    var pct = Next().TrimEnd('%');
                    o.MaxOtherLoad = double.TryParse(pct, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v >= 0
                        ? v / 100
                        : throw new BenchException($"Bad --max-other-load '{pct}' (a percentage, e.g. 10).");
                    break;
                case "--max-redos":
                    o.MaxRedos = int.TryParse(Next(), CultureInfo.InvariantCulture, out var redos) && redos >= 0
                        ? redos
                        : throw new BenchException("Bad --max-redos (a count, e.g. 3).");
                    break;
                case "-h" or "--help": o.Help = true; break;
                default: throw new BenchException($"Unknown option '{arg}'. Try --help.");
            }
        }

        if (o.Quick)
        {
            o.Duration = TimeSpan.FromSeconds(1);
            o.Round = TimeSpan.FromMilliseconds(250);
            o.Warmup = TimeSpan.FromSeconds(1);
        }
        if (o.Soak && o.Faults)
        {
            throw new BenchException("--soak and --faults are separate runs; pick one.");
        }
        o.Duration = duration ?? (o.Soak ? TimeSpan.FromMinutes(30) : o.Duration);
        o.Round = round ?? o.Round;
        o.Warmup = warmup ?? o.Warmup;
        o.SoakWarmup = warmup ?? TimeSpan.FromTicks(Math.Min(o.Duration.Ticks / 6, TimeSpan.FromMinutes(5).Ticks));
        if (o.Round > o.Duration)
        {
            o.Round = o.Duration;
        }
        if (o.Duration <= TimeSpan.Zero || o.Round <= TimeSpan.Zero || o.Warmup < TimeSpan.Zero)
        {
            throw new BenchException("Durations must be positive.");
        }
        return o;
    }

    private static string Gc(string kind) => kind switch
    {
        "workstation" or "ws" => "workstation",
        "server" => "server",
        "default" => "default",
        _ => throw new BenchException($"Bad GC kind '{kind}' (workstation, server, default)."),
    };

    private static KeyValuePair<string, string> KeyValue(string option, string kv)
    {
        var eq = kv.IndexOf('=', StringComparison.Ordinal);
        return eq > 0 ? new(kv[..eq], kv[(eq + 1)..]) : throw new BenchException($"{option} wants KEY=VALUE, not '{kv}'.");
    }

    private static TimeSpan ParseTime(string text)
    {
        var t = text.Trim();
        double Number(string s) => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v >= 0
            ? v
            : throw new BenchException($"Bad time '{text}' (e.g. 10, 10s, 500ms).");
        if (t.EndsWith("ms", StringComparison.OrdinalIgnoreCase))
        {
            return TimeSpan.FromMilliseconds(Number(t[..^2]));
        }
        if (t.EndsWith('m'))
        {
            return TimeSpan.FromMinutes(Number(t[..^1]));
        }
        if (t.EndsWith('s'))
        {
            return TimeSpan.FromSeconds(Number(t[..^1]));
        }
        return TimeSpan.FromSeconds(Number(t));
    }
}

internal enum ChatMode
{
    NonStreaming,
    Streaming,
}

/// <summary>A failure the harness explains in one message (no stack trace).</summary>
internal sealed class BenchException(string message) : Exception(message);
