using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Data.Sqlite;

namespace Lattice.Bench;

/// <summary>
/// <c>--soak</c>: mixed load for a long time while the gateway's VmRSS and GC heap are sampled every 10 s; passes when,
/// after the warm-up, neither grows faster than 1 MB per 10 minutes (least-squares slope), no request failed, and the
/// usage ledger holds exactly one record per request the client saw an <c>x-request-id</c> for.
/// <c>--faults</c>: the same mix as background load while, one after the other, the upstream resets streams mid-way,
/// the daemon is killed with SIGKILL mid-request, another connection holds SQLite's write lock, and the data directory's
/// disk fills up; passes when every request ended with the expected answer or a clear error, none hung, no 500, each
/// fault was actually hit, and the ledger check holds.
/// </summary>
internal static class SoakBench
{
    private const double MaxSlopeMbPer10Min = 1.0;
    private static readonly TimeSpan SampleEvery = TimeSpan.FromSeconds(10);
    /// <summary>The memory criterion fits the lowest sample of each window this long (12 samples).</summary>
    private static readonly TimeSpan FloorWindow = TimeSpan.FromMinutes(2);
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    public static Task<int> RunAsync(BenchOptions options, CancellationToken cancellationToken) =>
        options.Faults ? FaultsAsync(options, cancellationToken) : SoakAsync(options, cancellationToken);

    private sealed record Sample(double Minutes, long Rss, long Heap, long Committed, long MallocInUse, long MallocFree, long Jitted, long Requests, long Failed, ProcessMemory? Memory);

    private static async Task<int> SoakAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var connections = options.Connections.Max();
        var warmup = options.SoakWarmup;
        await using var stack = await SoakStack.StartAsync(options, keys: (connections + 7) / 8, ownFileSystemMegabytes: 0, cancellationToken);
        using var load = new SoakLoad(stack.BaseUrl, connections, Deadline);
        var ops = SoakLoad.Mix(stack.RuntimeModel);
        await SanityAsync(load, [.. ops.SelectMany(g => g)], stack.ApiKeys[0]);

        Log($"soak: {connections} connections for {options.Duration.TotalMinutes:0.##} min (warm-up {warmup.TotalMinutes:0.##} min), sampling VmRSS and GC heap every {SampleEvery.TotalSeconds:0} s");
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var started = Stopwatch.GetTimestamp();
        var running = load.RunAsync(connections, ops, w => stack.ApiKeys[w % stack.ApiKeys.Length], 0, stop.Token);
        var samples = new List<Sample>();
        var cpu0 = stack.Gateway.CpuTime;
        try
        {
            while (true)
            {
                var elapsed = Stopwatch.GetElapsedTime(started);
                var gc = StartupHook.Read(stack.GcFile);
                var memory = ProcessMemory.Read(stack.Gateway.Id, stack.DataDir);
                var sample = new Sample(elapsed.TotalMinutes, memory?.Rss ?? stack.Gateway.RssBytes, gc?.HeapBytes ?? -1, gc?.CommittedBytes ?? -1, gc?.MallocInUse ?? -1, gc?.MallocFree ?? -1, gc?.Jitted ?? -1, load.Finished, load.Failed, memory);
                samples.Add(sample);
                Log(string.Create(CultureInfo.InvariantCulture,
                    $"t={elapsed.TotalMinutes:0.00} min  VmRSS {Mb(sample.Rss):0.0} MB (anon {Mb(memory?.Anon ?? -1):0.0}: malloc {Mb(memory?.Malloc ?? -1):0.0} (in use {Mb(sample.MallocInUse):0.0}, free {Mb(sample.MallocFree):0.0}), stacks {Mb(memory?.Stacks ?? -1):0.0}, other {Mb(memory?.OtherAnon ?? -1):0.0}; file {Mb(memory?.File ?? -1):0.0}: data {Mb(memory?.DataFiles ?? -1):0.0}; code {Mb(memory?.Code ?? -1):0.0}, {sample.Jitted} methods jitted)  GC heap {Mb(sample.Heap):0.0} MB (committed {Mb(sample.Committed):0.0})  requests {sample.Requests}  failed {sample.Failed}  in flight {load.InFlight}"));
                stack.CheckAlive();
                if (elapsed >= options.Duration)
                {
                    break;
                }
                var next = TimeSpan.FromTicks(SampleEvery.Ticks * samples.Count) - elapsed;
                await Task.Delay(next > TimeSpan.Zero ? next : TimeSpan.Zero, cancellationToken);
            }
        }
        finally
        {
            await stop.CancelAsync();
            await running;
        }
        var gatewayCpu = stack.Gateway.CpuTime - cpu0;
        stack.CheckAlive();
        var ledger = await CheckLedgerAsync(stack, load.Outcomes, cancellationToken);

        var measured = samples.Where(s => s.Minutes >= warmup.TotalMinutes).ToList();
        // The criterion fits each series' floor: its lowest sample in every FloorWindow. Between collections the managed
        // heap holds garbage, and consecutive samples differ by up to 80 MB with the GC's sawtooth alone; a leak raises the
        // floor, garbage does not. The slopes of every sample are reported too.
        var rssFloors = Floors(measured, s => s.Rss);
        var heapFloors = Floors(measured, s => s.Heap);
        var rssSlope = SlopePer10Min(rssFloors, s => s.Rss);
        var heapSlope = SlopePer10Min(heapFloors, s => s.Heap);
        var failures = load.Outcomes.Count(o => o.Class != OutcomeClass.Ok);
        var heapSeen = measured.All(s => s.Heap >= 0);
        var pass = rssFloors.Count >= 3 && heapSeen && rssSlope <= MaxSlopeMbPer10Min && heapSlope <= MaxSlopeMbPer10Min && failures == 0 && ledger.Pass;

        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(ci, $"Soak: {connections} connections, {options.Duration.TotalMinutes:0.##} min, warm-up {warmup.TotalMinutes:0.##} min, {Environment.ProcessorCount} CPUs, gateway GC {options.GatewayGc}, client deadline {Deadline.TotalSeconds:0} s.");
        sb.AppendLine();
        AppendOutcomes(sb, load.Outcomes, byPhase: false);
        sb.AppendLine();
        var total = load.Outcomes.Count;
        sb.AppendLine(ci, $"Requests: {total:N0} ({total / Stopwatch.GetElapsedTime(started).TotalSeconds:0.0}/s); gateway CPU {gatewayCpu.TotalSeconds:0} s ({gatewayCpu.TotalMicroseconds / Math.Max(1, total):0} µs per request).");
        sb.AppendLine();
        sb.AppendLine(ci, $"| after warm-up ({measured.Count} samples) | first | last | min | max | slope per 10 min | slope of the floor |");
        sb.AppendLine("|---|--:|--:|--:|--:|--:|--:|");
        foreach (var (name, pick) in Series)
        {
            if (measured.Count > 0 && measured.All(s => pick(s) >= 0))
            {
                sb.AppendLine(ci, $"| {name} | {Mb(pick(measured[0])):0.0} | {Mb(pick(measured[^1])):0.0} | {Mb(measured.Min(pick)):0.0} | {Mb(measured.Max(pick)):0.0} | {SlopePer10Min(measured, pick) + 0.0:+0.00;-0.00;0.00} MB | {SlopePer10Min(Floors(measured, pick), pick) + 0.0:+0.00;-0.00;0.00} MB |");
            }
        }
        sb.AppendLine();
        sb.AppendLine(ledger.Text);
        sb.AppendLine();
        sb.AppendLine(ci, $"Floor: the lowest sample of every {FloorWindow.TotalMinutes:0} minutes after the warm-up ({rssFloors.Count} windows).");
        sb.AppendLine();
        sb.AppendLine(ci, $"Result: **{(pass ? "PASS" : "FAIL")}** — slopes of the floor ≤ {MaxSlopeMbPer10Min} MB / 10 min (VmRSS {rssSlope + 0.0:+0.00;-0.00;0.00}, GC heap {heapSlope + 0.0:+0.00;-0.00;0.00}), {failures} failed requests, ledger {(ledger.Pass ? "exact" : "NOT exact")}{(heapSeen ? "" : ", GC heap not sampled (the probe did not write)")}{(rssFloors.Count < 3 ? ", fewer than 3 floor windows after the warm-up" : "")}.");
        sb.AppendLine();
        sb.AppendLine("<details><summary>Samples</summary>");
        sb.AppendLine();
        sb.AppendLine("| min | " + string.Join(" | ", Series.Select(x => x.Name)) + " | requests | failed |");
        sb.AppendLine("|--:|" + string.Concat(Series.Select(_ => "--:|")) + "--:|--:|");
        foreach (var s in samples)
        {
            sb.AppendLine(ci, $"| {s.Minutes:0.00} | {string.Join(" | ", Series.Select(x => (Mb(x.Pick(s))).ToString("0.0", ci)))} | {s.Requests} | {s.Failed} |");
        }
        sb.AppendLine();
        sb.AppendLine("</details>");
        return Finish(options, sb.ToString(), pass);
    }

    private sealed record FaultResult(string Phase, string Evidence, bool Hit);

    private static async Task<int> FaultsAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        var background = Math.Max(8, options.Connections.Max() / 2);
        var phase = options.Duration;
        // 8 background + 8 fault workers per key at most: three keys for every 16 workers.
        await using var stack = await SoakStack.StartAsync(options, keys: 6, ownFileSystemMegabytes: 96, cancellationToken);
        using var load = new SoakLoad(stack.BaseUrl, background + 16, Deadline);
        var mix = SoakLoad.Mix(stack.RuntimeModel);
        await SanityAsync(load, [.. mix.SelectMany(g => g)], stack.ApiKeys[0]);
        string Key(int worker) => stack.ApiKeys[worker / 8 % stack.ApiKeys.Length];

        Log($"faults: {background} connections of mixed load throughout; each fault {phase.TotalSeconds:0} s under it");
        using var stopBackground = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        load.Phase = "baseline";
        var backgroundRun = load.RunAsync(background, mix, Key, 0, stopBackground.Token);
        var results = new List<FaultResult>();
        try
        {
            await Task.Delay(phase / 2, cancellationToken);

            // 1. The data directory's disk is full for the phase (a small file system of its own, filled to the last byte). First, while most of the
            //    usage journal's slots have never been used: a journal page first touched on a full disk must not kill the gateway.
            load.Phase = "disk full";
            if (!stack.HasOwnFileSystem)
            {
                Log($"fault 1 skipped: {stack.OwnFileSystemRefusal}");
                results.Add(new("disk full", "skipped: " + stack.OwnFileSystemRefusal, Hit: true));
            }
            else
            {
                Log("fault 1: disk full");
                long filled = 0, rowsFull = 0, rowsFullEnd = 0;
                await WithFaultLoadAsync(load, 0, [], Key, background, phase, async ct =>
                {
                    var filler = Path.Combine(stack.DataDir, "soak-filler");
                    filled = Fill(filler);
                    rowsFull = await CountRowsAsync(stack);
                    Log($"disk full: {filled / 1048576.0:0.0} MiB filler written, {Free(stack.DataDir)} bytes free ({rowsFull} usage rows committed)");
                    await Task.Delay(phase * 3 / 4, ct);
                    rowsFullEnd = await CountRowsAsync(stack);
                    File.Delete(filler);
                    Log($"disk space back ({rowsFullEnd} usage rows committed while full)");
                }, cancellationToken);
                var during = load.Outcomes.Where(o => o.Phase == "disk full").ToList();
                results.Add(new("disk full", $"filler {filled / 1048576.0:0.0} MiB; usage rows {rowsFull} → {rowsFullEnd} while full; requests during it: {Tally(during)}", filled > 0));
                stack.CheckAlive();
            }
            // 2. The upstream resets the connection mid-stream (TCP RST after the first words; before the answer when not streaming).
            load.Phase = "upstream reset";
            Log("fault 2: upstream resets mid-stream");
            await WithFaultLoadAsync(load, 8, [[new("reset stream", SoakKind.Stream, SoakStack.ResetModel, false), new("reset chat", SoakKind.Chat, SoakStack.ResetModel, false)]],
                Key, background, phase, _ => Task.CompletedTask, cancellationToken);
            var resets = load.Outcomes.Where(o => o.Phase == "upstream reset" && o.Op.Model == SoakStack.ResetModel).ToList();
            results.Add(new("upstream reset", $"{resets.Count} requests to the resetting upstream: " + Tally(resets),
                resets.Count > 0 && resets.All(o => o.Class == OutcomeClass.ClearError)));
            stack.CheckAlive();

            // 3. SIGKILL of the daemon with requests in flight on the runtime path; later a restart.
            load.Phase = "daemon SIGKILL";
            Log("fault 3: daemon SIGKILL mid-request");
            var longStream = new SoakOp("runtime long stream", SoakKind.Stream, stack.RuntimeModel, true, MaxTokens: 200);
            var longChat = new SoakOp("runtime long chat", SoakKind.Chat, stack.RuntimeModel, true, MaxTokens: 200);
            var killedInFlight = 0L;
            await WithFaultLoadAsync(load, 8, [[longStream, longChat]], Key, background, phase, async ct =>
            {
                await Task.Delay(phase / 4, ct);
                killedInFlight = load.InFlight;
                Log($"kill -9 daemon pid {stack.Daemon!.Id} ({killedInFlight} requests in flight at the gateway's clients)");
                stack.Daemon.SigKill();
                await Task.Delay(phase / 4, ct);
                Log("restarting the daemon (lattice daemon)");
                await stack.RestartDaemonAsync(ct);
                Log($"daemon back (pid {stack.Daemon.Id})");
            }, cancellationToken);
            var killed = load.Outcomes.Where(o => o.Phase == "daemon SIGKILL" && o.Op.Runtime).ToList();
            var lostRelay = killed.Count(o => o.Class == OutcomeClass.ClearError);
            var afterRestart = await load.SendAsync(mix[1][0], stack.ApiKeys[0]);
            results.Add(new("daemon SIGKILL", $"{killed.Count} runtime-path requests during the phase: {Tally(killed)}; after the restart a runtime chat: {afterRestart.Detail}",
                lostRelay > 0 && afterRestart.Class == OutcomeClass.Ok));
            stack.CheckAlive();

            // 4. Another connection holds SQLite's write lock (BEGIN EXCLUSIVE and a write) for the phase.
            load.Phase = "database locked";
            Log("fault 4: database locked");
            long rowsAtLock = 0, rowsBeforeRelease = 0, rowsAfterRelease = 0;
            await WithFaultLoadAsync(load, 0, [], Key, background, phase, async ct =>
            {
                await using var locker = new SqliteConnection($"Data Source={stack.DatabasePath};Pooling=False");
                await locker.OpenAsync(ct);
                await using (var begin = locker.CreateCommand())
                {
                    begin.CommandText = "PRAGMA busy_timeout=30000; BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS soak_lock (x INTEGER); INSERT INTO soak_lock VALUES (1);";
                    await begin.ExecuteNonQueryAsync(ct);
                }
                rowsAtLock = await CountRowsAsync(stack);
                Log($"write lock held ({rowsAtLock} usage rows committed)");
                await Task.Delay(phase * 3 / 4, ct);
                rowsBeforeRelease = await CountRowsAsync(stack);
                await using (var rollback = locker.CreateCommand())
                {
                    rollback.CommandText = "ROLLBACK;";
                    await rollback.ExecuteNonQueryAsync(ct);
                }
                Log($"write lock released ({rowsBeforeRelease} usage rows committed while it was held)");
            }, cancellationToken);
            rowsAfterRelease = await CountRowsAsync(stack);
            results.Add(new("database locked", $"usage rows: {rowsAtLock} when the lock was taken, {rowsBeforeRelease} when released, {rowsAfterRelease} after the phase; requests during it: {Tally(load.Outcomes.Where(o => o.Phase == "database locked").ToList())}",
                rowsBeforeRelease == rowsAtLock && rowsAfterRelease > rowsBeforeRelease));
            stack.CheckAlive();

            load.Phase = "recovery";
            await Task.Delay(phase / 2, cancellationToken);
        }
        finally
        {
            await stopBackground.CancelAsync();
            await backgroundRun;
        }
        stack.CheckAlive();
        var ledger = await CheckLedgerAsync(stack, load.Outcomes, cancellationToken);
        Log($"the processes' output: {stack.LogDir}");

        var outcomes = load.Outcomes;
        var hangs = outcomes.Count(o => o.Class == OutcomeClass.Hang);
        var unclear = outcomes.Count(o => o.Class == OutcomeClass.Unclear);
        var server = outcomes.Count(o => o.Class == OutcomeClass.ServerError);
        var pass = hangs == 0 && unclear == 0 && server == 0 && results.All(r => r.Hit) && ledger.Pass;

        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(ci, $"Faults: {background} connections of mixed load (upstream and runtime paths) throughout, each fault {phase.TotalSeconds:0} s, {Environment.ProcessorCount} CPUs, client deadline {Deadline.TotalSeconds:0} s; data directory on {stack.FileSystem}.");
        sb.AppendLine();
        sb.AppendLine("| fault | hit as expected | evidence |");
        sb.AppendLine("|---|---|---|");
        foreach (var r in results)
        {
            sb.AppendLine(ci, $"| {r.Phase} | {(r.Hit ? "yes" : "**no**")} | {r.Evidence.Replace("|", "\\|", StringComparison.Ordinal)} |");
        }
        sb.AppendLine();
        AppendOutcomes(sb, outcomes, byPhase: true);
        sb.AppendLine();
        sb.AppendLine(ledger.Text);
        sb.AppendLine();
        sb.AppendLine(ci, $"Result: **{(pass ? "PASS" : "FAIL")}** — {hangs} hangs, {unclear} unclear failures, {server} answers 500, every fault hit: {(results.All(r => r.Hit) ? "yes" : "no")}, ledger {(ledger.Pass ? "exact" : "NOT exact")}.");
        return Finish(options, sb.ToString(), pass);
    }

    /// <summary>Runs <paramref name="workers"/> extra workers on <paramref name="ops"/> next to the background load, and <paramref name="inject"/>, for <paramref name="length"/>.</summary>
    private static async Task WithFaultLoadAsync(SoakLoad load, int workers, SoakOp[][] ops, Func<int, string> keyFor, int firstWorker, TimeSpan length, Func<CancellationToken, Task> inject, CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var extra = workers > 0 ? load.RunAsync(workers, ops, keyFor, firstWorker, stop.Token) : Task.CompletedTask;
        var started = Stopwatch.GetTimestamp();
        try
        {
            await inject(cancellationToken);
            var left = length - Stopwatch.GetElapsedTime(started);
            if (left > TimeSpan.Zero)
            {
                await Task.Delay(left, cancellationToken);
            }
        }
        finally
        {
            await stop.CancelAsync();
            await extra;
        }
    }

    /// <summary>One request of each operation, in turn, before the load: a wrong setup fails here with the answer.</summary>
    private static async Task SanityAsync(SoakLoad load, SoakOp[] ops, string key)
    {
        foreach (var op in ops)
        {
            var o = await load.SendAsync(op, key);
            if (o.Class != OutcomeClass.Ok)
            {
                throw new BenchException($"The {op.Name} check request failed: {o.Detail}");
            }
        }
        Log("every operation answered its check request");
    }

    private sealed record LedgerCheck(bool Pass, string Text);

    /// <summary>
    /// Once the gateway has drained: every x-request-id a client saw has exactly one row in usage_records, with the
    /// status the client got. Waits (up to 60 s) for the group commit.
    /// </summary>
    private static async Task<LedgerCheck> CheckLedgerAsync(SoakStack stack, IReadOnlyCollection<Outcome> outcomes, CancellationToken cancellationToken)
    {
        var seen = outcomes.Where(o => o.RequestId is not null).ToDictionary(o => o.RequestId!, o => o, StringComparer.Ordinal);
        var unseen = outcomes.Count(o => o.RequestId is null);
        Dictionary<string, (int Count, int HttpStatus)> rows = [];
        var missing = seen.Count;
        var waitUntil = Stopwatch.GetTimestamp() + 60 * Stopwatch.Frequency;
        while (true)
        {
            rows = await ReadRowsAsync(stack, cancellationToken);
            missing = seen.Keys.Count(id => !rows.ContainsKey(id));
            if (missing == 0 || Stopwatch.GetTimestamp() > waitUntil)
            {
                break;
            }
            await Task.Delay(500, cancellationToken);
        }
        var duplicates = rows.Values.Count(r => r.Count > 1);
        var wrongStatus = seen.Where(kv => rows.TryGetValue(kv.Key, out var r) && r.HttpStatus != kv.Value.Status).ToList();
        var extra = rows.Keys.Count(id => !seen.ContainsKey(id));
        var pass = missing == 0 && duplicates == 0 && wrongStatus.Count == 0;
        var text = string.Create(CultureInfo.InvariantCulture,
            $"Usage ledger: {seen.Count:N0} request ids seen by clients; {seen.Count - missing:N0} have a record, **{missing} missing**, {duplicates} duplicated, {wrongStatus.Count} with another status than the client got; " +
            $"{rows.Count:N0} records in all ({extra} for requests whose client saw no id; {unseen} client requests ended without one).");
        foreach (var (id, o) in wrongStatus.Take(5))
        {
            text += $"\n- {id}: client {o.Status} ({o.Detail}), ledger {rows[id].HttpStatus}";
        }
        return new LedgerCheck(pass, text);
    }

    private static async Task<Dictionary<string, (int, int)>> ReadRowsAsync(SoakStack stack, CancellationToken cancellationToken)
    {
        await using var db = new SqliteConnection($"Data Source={stack.DatabasePath};Mode=ReadOnly;Pooling=False");
        await db.OpenAsync(cancellationToken);
        await using var cmd = db.CreateCommand();
        cmd.CommandText = "SELECT RequestId, COUNT(*), MAX(HttpStatus) FROM usage_records GROUP BY RequestId";
        var rows = new Dictionary<string, (int, int)>(StringComparer.Ordinal);
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            rows[reader.GetString(0)] = (reader.GetInt32(1), reader.GetInt32(2));
        }
        return rows;
    }

    private static async Task<long> CountRowsAsync(SoakStack stack)
    {
        await using var db = new SqliteConnection($"Data Source={stack.DatabasePath};Mode=ReadOnly;Pooling=False");
        await db.OpenAsync();
        await using var cmd = db.CreateCommand();
        cmd.CommandText = "SELECT COUNT(*) FROM usage_records";
        return (long)(await cmd.ExecuteScalarAsync())!;
    }

    /// <summary>Writes <paramref name="path"/> until the file system is full; returns the bytes written.</summary>
    private static long Fill(string path)
    {
        var block = new byte[1 << 20];
        long written = 0;
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.None);
        // Big blocks until ENOSPC, then ever smaller ones for the last bytes.
        foreach (var size in new[] { 1 << 20, 1 << 16, 1 << 12, 512 })
        {
            try
            {
                while (true)
                {
                    file.Write(block.AsSpan(0, size));
                    written += size;
                }
            }
            catch (IOException)
            {
            }
        }
        return written;
    }

    private static long Free(string dir) => new DriveInfo(dir).AvailableFreeSpace;

    private static string Tally(IReadOnlyCollection<Outcome> outcomes) =>
        outcomes.Count == 0 ? "none" : string.Join(", ", outcomes.GroupBy(o => o.Class == OutcomeClass.Ok ? "ok" : o.Detail).OrderByDescending(g => g.Count()).Select(g => $"{g.Count()} × {g.Key}"));

    private static void AppendOutcomes(StringBuilder sb, IReadOnlyCollection<Outcome> outcomes, bool byPhase)
    {
        var ci = CultureInfo.InvariantCulture;
        sb.AppendLine(byPhase ? "| phase | operation | requests | ok | clear errors | 500 | unclear | hangs | p99 s | max s |" : "| operation | requests | ok | clear errors | 500 | unclear | hangs | p99 s | max s |");
        sb.AppendLine(byPhase ? "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|" : "|---|--:|--:|--:|--:|--:|--:|--:|--:|");
        foreach (var g in outcomes.GroupBy(o => (Phase: byPhase ? o.Phase : "", o.Op.Name)).OrderBy(g => g.Key.Phase, StringComparer.Ordinal).ThenBy(g => g.Key.Name, StringComparer.Ordinal))
        {
            var times = g.Select(o => o.Seconds).Order().ToList();
            var p99 = times[Math.Clamp((int)Math.Ceiling(0.99 * times.Count) - 1, 0, times.Count - 1)];
            sb.AppendLine(ci, $"|{(byPhase ? $" {g.Key.Phase} |" : "")} {g.Key.Name} | {g.Count()} | {g.Count(o => o.Class == OutcomeClass.Ok)} | {g.Count(o => o.Class == OutcomeClass.ClearError)} | {g.Count(o => o.Class == OutcomeClass.ServerError)} | {g.Count(o => o.Class == OutcomeClass.Unclear)} | {g.Count(o => o.Class == OutcomeClass.Hang)} | {p99:0.00} | {times[^1]:0.00} |");
        }
        var failures = outcomes.Where(o => o.Class != OutcomeClass.Ok).GroupBy(o => $"{o.Op.Name}: {o.Class} {o.Detail}").OrderByDescending(g => g.Count()).ToList();
        if (failures.Count > 0)
        {
            sb.AppendLine();
            foreach (var g in failures.Take(30))
            {
                sb.AppendLine(ci, $"- {g.Count()} × {g.Key}");
            }
        }
    }

    /// <summary>The series of each sample that the report fits and lists (MB; a missing figure is negative).</summary>
    private static readonly (string Name, Func<Sample, long> Pick)[] Series =
    [
        ("VmRSS (MB)", s => s.Rss),
        ("anonymous (MB)", s => s.Memory?.Anon ?? -1),
        ("· C allocator: [heap] and arenas (MB)", s => s.Memory?.Malloc ?? -1),
        ("·· C allocator: in use (MB)", s => s.MallocInUse),
        ("·· C allocator: free, kept (MB)", s => s.MallocFree),
        ("· thread stacks (MB)", s => s.Memory?.Stacks ?? -1),
        ("· other anonymous: GC heap, runtime (MB)", s => s.Memory?.OtherAnon ?? -1),
        ("file-backed (MB)", s => s.Memory?.File ?? -1),
        ("· data directory files (MB)", s => s.Memory?.DataFiles ?? -1),
        ("JIT code and stubs: memfd:doublemapper (MB)", s => s.Memory?.Code ?? -1),
        ("GC heap after last GC (MB)", s => s.Heap),
        ("GC committed (MB)", s => s.Committed),
    ];

    /// <summary>The sample with the lowest <paramref name="y"/> in each whole <see cref="FloorWindow"/> from the first sample on.</summary>
    private static List<Sample> Floors(IReadOnlyList<Sample> samples, Func<Sample, long> y) =>
        samples.Count == 0 ? [] :
        [.. samples.GroupBy(s => (int)((s.Minutes - samples[0].Minutes) / FloorWindow.TotalMinutes))
            .Where(g => g.Key < (int)((samples[^1].Minutes - samples[0].Minutes + 1e-9) / FloorWindow.TotalMinutes) || samples.Count == 1)
            .Select(g => g.MinBy(y)!)];

    private static double SlopePer10Min(IReadOnlyList<Sample> samples, Func<Sample, long> y)
    {
        if (samples.Count < 2)
        {
            return double.NaN;
        }
        var mx = samples.Average(s => s.Minutes);
        var my = samples.Average(s => Mb(y(s)));
        double num = 0, den = 0;
        foreach (var s in samples)
        {
            num += (s.Minutes - mx) * (Mb(y(s)) - my);
            den += (s.Minutes - mx) * (s.Minutes - mx);
        }
        return den > 0 ? num / den * 10 : double.NaN;
    }

    private static double Mb(long bytes) => bytes / 1e6;

    private static int Finish(BenchOptions options, string report, bool pass)
    {
        Console.WriteLine();
        Console.WriteLine(report);
        if (options.OutFile is { } outFile)
        {
            File.WriteAllText(outFile, report);
            Log($"wrote {outFile}");
        }
        return pass ? 0 : 1;
    }

    private static void Log(string message) => BenchRun.Log(message);
}
