using System.Diagnostics;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Persistence;
using Lattice.Protocol.Metering;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging.Abstractions;

namespace Lattice.Bench;

/// <summary>
/// Usage-ledger write rate, in process: N requests' records through <see cref="UsageLedger.Begin"/> and
/// <see cref="UsageLedger.Complete"/> (journal, queue, group commit) into a fresh SQLite database migrated like the
/// gateway's, until every record is committed. Writers keep at most half the journal's slots waiting for a commit, as a
/// gateway whose requests take time would, so the rate is one that keeps every record crash-proof.
/// </summary>
internal static class LedgerBench
{
    public const double Target = 20_000;

    public static async Task<int> RunAsync(BenchOptions options, CancellationToken cancellationToken)
    {
        if (options.LedgerCrashDir is { } crashDir)
        {
            return await WriteUntilKilledAsync(crashDir, cancellationToken);
        }
        if (options.LedgerRecoverDir is { } recoverDir)
        {
            return await RecoverAndCheckAsync(recoverDir, cancellationToken);
        }
        var dataDir = Path.Combine(Path.GetTempPath(), "lattice-ledgerbench-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dataDir);
        var connectionString = $"Data Source={Path.Combine(dataDir, "lattice.db")}";
        try
        {
            await using (var db = new LatticeDbContext(new DbContextOptionsBuilder<LatticeDbContext>().UseSqlite(connectionString).Options))
            {
                await db.Database.MigrateAsync(cancellationToken);
                await db.Database.ExecuteSqlRawAsync("PRAGMA journal_mode=WAL;", cancellationToken);
            }

            var metering = new MeteringOptions();
            var journal = UsageJournal.Open(dataDir, metering.JournalSlots, metering.JournalSlotBytes);
            await using var ledger = new UsageLedger(journal, connectionString, metering, NullLogger<UsageLedger>.Instance);
            await ledger.RecoverAsync(cancellationToken);
            ledger.Start();

            var records = options.Quick ? 20_000 : options.LedgerRecords;
            var writers = options.LedgerWriters;
            await WriteAsync(ledger, "warmup", Math.Min(records, 10_000), writers, metering, cancellationToken);
            var unjournaledBefore = ledger.Unjournaled;

            var cpu = Process.GetCurrentProcess().TotalProcessorTime;
            var started = Stopwatch.GetTimestamp();
            var inLedger = await WriteAsync(ledger, "r", records, writers, metering, cancellationToken);
            await ledger.FlushAsync(cancellationToken);
            var elapsed = Stopwatch.GetElapsedTime(started);
            cpu = Process.GetCurrentProcess().TotalProcessorTime - cpu;

            await using (var db = new LatticeDbContext(new DbContextOptionsBuilder<LatticeDbContext>().UseSqlite(connectionString).Options))
            {
                var rows = await db.UsageRecords.CountAsync(r => r.RequestId.StartsWith("r-"), cancellationToken);
                if (rows != records)
                {
                    throw new BenchException($"{rows:N0} rows for {records:N0} records.");
                }
            }

            var rate = records / elapsed.TotalSeconds;
            Console.WriteLine($"Usage ledger write rate (in process; {Environment.ProcessorCount} cores; SQLite WAL; {writers} writers; batches ≤ {metering.MaxBatch}, linger {metering.MaxBatchDelay.TotalMilliseconds:F0} ms; journal {metering.JournalSlots} × {metering.JournalSlotBytes} B)");
            Console.WriteLine();
            Console.WriteLine("| Records | Committed in s | Records/s | Begin+Complete µs/record | CPU µs/record | Unjournaled |");
            Console.WriteLine("|--:|--:|--:|--:|--:|--:|");
            Console.WriteLine($"| {records:N0} | {elapsed.TotalSeconds:F2} | {rate:N0} | {inLedger.TotalMicroseconds / records:F2} | {cpu.TotalMicroseconds / records:F1} | {ledger.Unjournaled - unjournaledBefore:N0} |");
            Console.WriteLine();
            Console.WriteLine($"Target: ≥ {Target:N0} records/s — {(rate >= Target ? "met" : "MISSED")}.");
            return options.Check && rate < Target ? 3 : 0;
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            try
            {
                Directory.Delete(dataDir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>
    /// Crash check, first half: requests numbered from 0 without end; every 97th stays in flight (begun, never completed).
    /// After each 1,000 it prints <c>complete N</c>: every request below N that is not in flight has returned from
    /// Complete. The process is meant to die by <c>kill -9</c>.
    /// </summary>
    private static async Task<int> WriteUntilKilledAsync(string dataDir, CancellationToken cancellationToken)
    {
        var connectionString = await CreateDatabaseAsync(dataDir, cancellationToken);
        var metering = new MeteringOptions();
        var ledger = new UsageLedger(UsageJournal.Open(dataDir, metering.JournalSlots, metering.JournalSlotBytes), connectionString, metering, NullLogger<UsageLedger>.Instance);
        await ledger.RecoverAsync(cancellationToken);
        ledger.Start();
        var created = DateTimeOffset.UtcNow;
        // Runs on the same directory (a crash, a restart, another crash) use distinct ids, so each run is checked on its own.
        var run = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(4));
        Console.WriteLine($"run {run}");
        var inFlight = new List<LedgerEntry>();
        for (var i = 0; !cancellationToken.IsCancellationRequested; i++)
        {
            if (ledger.Pending > metering.JournalSlots / 2)
            {
                await ledger.FlushAsync(cancellationToken);
            }
            var id = $"c-{run}-{i:D9}";
            var entry = ledger.Begin(Record(id, created, UsageStatuses.Interrupted, completionTokens: 0));
            if (i % 97 == 0)
            {
                inFlight.Add(entry);
            }
            else
            {
                ledger.Complete(entry, End(completionTokens: 7));
            }
            if ((i + 1) % 1000 == 0)
            {
                Console.WriteLine($"complete {i + 1} unjournaled {ledger.Unjournaled} in-flight {inFlight.Count}");
            }
        }
        return 0;
    }

    /// <summary>Crash check, second half: recovers the killed writer's directory and checks the rows against what it printed.</summary>
    private static async Task<int> RecoverAndCheckAsync(string dataDir, CancellationToken cancellationToken)
    {
        var connectionString = $"Data Source={Path.Combine(dataDir, "lattice.db")}";
        var output = Console.In.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var run = output.First(l => l.StartsWith("run ", StringComparison.Ordinal))["run ".Length..].Trim();
        var reported = int.Parse(output.Last(l => l.StartsWith("complete ", StringComparison.Ordinal)).Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        var prefix = $"c-{run}-";
        var metering = new MeteringOptions();
        await using (var ledger = new UsageLedger(UsageJournal.Open(dataDir, metering.JournalSlots, metering.JournalSlotBytes), connectionString, metering, NullLogger<UsageLedger>.Instance))
        {
            var before = Stopwatch.GetTimestamp();
            await ledger.RecoverAsync(cancellationToken);
            Console.WriteLine($"recovery took {Stopwatch.GetElapsedTime(before).TotalMilliseconds:F0} ms");
        }
        await using var db = new LatticeDbContext(new DbContextOptionsBuilder<LatticeDbContext>().UseSqlite(connectionString).Options);
        var rows = await db.UsageRecords.AsNoTracking().Where(r => r.RequestId.StartsWith(prefix)).Select(r => new { r.RequestId, r.Status }).ToListAsync(cancellationToken);
        var byId = rows.ToDictionary(r => int.Parse(r.RequestId[prefix.Length..], System.Globalization.CultureInfo.InvariantCulture), r => r.Status);
        var missing = 0;
        var wrong = 0;
        for (var i = 0; i < reported; i++)
        {
            if (!byId.TryGetValue(i, out var status))
            {
                missing++;
            }
            else if (status != (i % 97 == 0 ? UsageStatuses.Interrupted : UsageStatuses.Ok))
            {
                wrong++;
            }
        }
        var interrupted = rows.Count(r => r.Status == UsageStatuses.Interrupted);
        Console.WriteLine($"writer reported {reported:N0} requests done; table holds {rows.Count:N0} rows ({interrupted:N0} interrupted, {rows.Count - reported:N0} beyond the last report); missing {missing}, wrong status {wrong}");
        return missing == 0 && wrong == 0 ? 0 : 1;
    }

    private static async Task<string> CreateDatabaseAsync(string dataDir, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(dataDir);
        var connectionString = $"Data Source={Path.Combine(dataDir, "lattice.db")}";
        await using var db = new LatticeDbContext(new DbContextOptionsBuilder<LatticeDbContext>().UseSqlite(connectionString).Options);
        await db.Database.MigrateAsync(cancellationToken);
        await db.Database.ExecuteSqlRawAsync("PRAGMA journal_mode=WAL;", cancellationToken);
        return connectionString;
    }

    /// <summary>Each writer begins and completes its share of requests; returns the time spent inside Begin and Complete, summed over writers.</summary>
    private static async Task<TimeSpan> WriteAsync(UsageLedger ledger, string prefix, int records, int writers, MeteringOptions metering, CancellationToken cancellationToken)
    {
        long inLedger = 0;
        var created = DateTimeOffset.UtcNow;
        await Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
        {
            for (var i = w; i < records; i += writers)
            {
                if (ledger.Pending > metering.JournalSlots / 2)
                {
                    // Back-pressure stands in for request time: never outrun the journal.
                    await ledger.FlushAsync(cancellationToken);
                }
                var id = $"{prefix}-{i:D9}";
                var provisional = Record(id, created, UsageStatuses.Interrupted, completionTokens: 0);
                var start = Stopwatch.GetTimestamp();
                var entry = ledger.Begin(provisional);
                // As the meter does: how the request ended, beside the provisional record (one record object per request).
                ledger.Complete(entry, End(completionTokens: 150 + (i % 500)));
                Interlocked.Add(ref inLedger, Stopwatch.GetTimestamp() - start);
            }
        }, cancellationToken)));
        await ledger.FlushAsync(cancellationToken);
        return Stopwatch.GetElapsedTime(0, inLedger);
    }

    /// <summary>The end of a request whose provisional record is <see cref="Record"/>'s: the same fields an ok final record has.</summary>
    private static UsageEnd End(long completionTokens) => new(ServedByKinds.Upstream, "off_0123456789abcdef", CapacityClasses.Hosted,
        UsageStatuses.Ok, 200, new Usage(1_200, completionTokens, 1_200 + completionTokens), 3_456_789_000, null, 180_000, 2_400_000);

    private static UsageRecord Record(string id, DateTimeOffset created, string status, long completionTokens) => new()
    {
        RequestId = id,
        CreatedAt = created,
        WorkspaceId = "ws_0123456789abcdef",
        KeyId = "key_0123456789abcdef",
        Task = "chat.completions",
        Model = "lovelace:bench",
        ServedBy = ServedByKinds.Upstream,
        ServedById = "off_0123456789abcdef",
        Capacity = CapacityClasses.Hosted,
        Stream = true,
        Status = status,
        HttpStatus = status == UsageStatuses.Ok ? 200 : 0,
        Usage = new Usage(1_200, completionTokens, 1_200 + completionTokens),
        CostPicoUsd = 3_456_789_000,
        TimeToFirstByteMicroseconds = 180_000,
        DurationMicroseconds = 2_400_000,
    };
}
