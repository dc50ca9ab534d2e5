using Lattice.Gateway.Metering;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Protocol.Metering;
using Lattice.Testing;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Tests.Metering;

/// <summary>
/// The ledger against a real database, SQLite and PostgreSQL: exactly once (across nodes too), crash recovery, group
/// commit, a full journal.
/// </summary>
public abstract class UsageLedgerTests : IAsyncLifetime
{
    protected static readonly TimeSpan Timeout = LedgerHarness.Timeout;
    private LedgerHarness _harness = null!;

    protected LedgerHarness Harness => _harness;

    protected abstract Task<LedgerHarness> CreateHarnessAsync();

    public async Task InitializeAsync() => _harness = await CreateHarnessAsync();

    public async Task DisposeAsync() => await _harness.DisposeAsync();

    [Fact]
    public async Task Flush_makes_every_record_visible_and_empties_the_journal()
    {
        var ledger = await _harness.OpenAsync();
        for (var i = 0; i < 100; i++)
        {
            ledger.Record(LedgerHarness.NewRecord($"req_{i:D3}"));
        }
        await ledger.FlushAsync().WaitAsync(Timeout);

        Assert.Equal(100, (await _harness.RowsAsync()).Count);
        Assert.Equal(100, ledger.Committed);
        Assert.Equal(0, ledger.Pending);
        Assert.Equal(0, ledger.Unjournaled);
        Assert.Equal(ledger.Journal.SlotCount, ledger.Journal.FreeSlots);
    }

    [Fact]
    public async Task One_batch_of_several_statements_mixing_slots_and_objects_keeps_the_first_row_of_each_request()
    {
        // 16 slots for 76 records queued before the loop starts, so its first batch takes them all: records in their
        // slots and records as objects (no slot left) side by side, more rows than one multi-row INSERT takes (SQLite: 32)
        // plus a remainder, and a request recorded twice within one statement.
        var ledger = await _harness.OpenAsync(new MeteringOptions { JournalSlots = 16 }, start: false);
        var expected = new List<UsageRecord>();
        for (var i = 0; i < 75; i++)
        {
            var record = LedgerHarness.NewRecord($"req_{i:D2}", promptTokens: i) with { Model = $"model-{i}", KeyId = i % 3 == 0 ? null : $"key_{i}" };
            ledger.Record(record);
            expected.Add(record);
            if (i == 34)
            {
                ledger.Record(LedgerHarness.NewRecord("req_33", promptTokens: 999));
            }
        }
        ledger.Start();
        await ledger.FlushAsync().WaitAsync(Timeout);

        Assert.Equal(expected, await _harness.RowsAsync());
        Assert.Equal(76, ledger.Committed);
        Assert.Equal(16, ledger.Journal.FreeSlots);
    }

    [Fact]
    public async Task A_committed_row_reads_back_through_ef_core_as_the_same_record()
    {
        // The ledger writes with hand-bound ADO.NET; the usage API reads with EF Core. They must agree on every column.
        var ledger = await _harness.OpenAsync();
        var full = LedgerHarness.NewRecord("req_full") with { AppId = "app_1", UserId = "usr_1", GrantId = "grant_1", Usage = new Usage(1, 2, 3, 4, 5, Estimated: true) };
        var sparse = LedgerHarness.NewRecord("req_sparse", status: "model_not_found") with
        {
            KeyId = null, ServedBy = null, ServedById = null, Capacity = null, Stream = false, HttpStatus = 404,
            Usage = Usage.None, CostPicoUsd = 0, TimeToFirstByteMicroseconds = null, DurationMicroseconds = 0,
        };
        ledger.Record(full);
        ledger.Record(sparse);
        await ledger.FlushAsync().WaitAsync(Timeout);

        Assert.Equal([full, sparse], await _harness.RowsAsync());
    }

    [Fact]
    public async Task Complete_twice_writes_one_row_with_the_first_final_record()
    {
        var ledger = await _harness.OpenAsync();
        var entry = ledger.Begin(LedgerHarness.Provisional("req_1"));
        Assert.True(entry.IsJournaled);
        var first = LedgerHarness.NewRecord("req_1", promptTokens: 1);
        ledger.Complete(entry, first);
        ledger.Complete(entry, LedgerHarness.NewRecord("req_1", promptTokens: 2));
        await ledger.FlushAsync().WaitAsync(Timeout);

        Assert.Equal(first, Assert.Single(await _harness.RowsAsync()));
        Assert.Equal(1, ledger.Committed);
    }

    [Fact]
    public async Task Complete_with_an_end_records_the_provisional_record_with_that_end_from_the_slot_or_as_an_object()
    {
        // The meter's path: how the request ended beside the provisional record the entry holds. The first end fits its
        // 2 KiB slot beside the provisional record and is committed from the slot; the second (a served-by id too long for
        // what is left of the slot) is committed as a record built from the two. Either way the row is the provisional
        // record with that end.
        var ledger = await _harness.OpenAsync();
        var fits = ledger.Begin(LedgerHarness.Provisional("req_1"));
        var tooLarge = ledger.Begin(LedgerHarness.Provisional("req_2"));
        var end = UsageEnd.Of(LedgerHarness.NewRecord("req_1", promptTokens: 7, completionTokens: 9) with { Prices = "{\"input_per_mtok\":1}" });
        var large = end with { ServedById = new string('o', 1900) };
        ledger.Complete(fits, end);
        ledger.Complete(tooLarge, large);
        ledger.Complete(fits, end with { Status = "late" });
        await ledger.FlushAsync().WaitAsync(Timeout);

        Assert.Equal([end.ApplyTo(LedgerHarness.Provisional("req_1")), large.ApplyTo(LedgerHarness.Provisional("req_2"))], await _harness.RowsAsync());
        Assert.Equal(LedgerHarness.NewRecord("req_1", promptTokens: 7, completionTokens: 9) with { Prices = "{\"input_per_mtok\":1}" },
            end.ApplyTo(LedgerHarness.Provisional("req_1")));
        Assert.Equal(1, ledger.Unjournaled);
        Assert.Equal(2, ledger.Committed);
        Assert.Equal(ledger.Journal.SlotCount, ledger.Journal.FreeSlots);
    }

    [Fact]
    public async Task The_same_request_recorded_again_keeps_its_first_row()
    {
        var ledger = await _harness.OpenAsync();
        var first = LedgerHarness.NewRecord("req_1", promptTokens: 1);
        ledger.Record(first);
        await ledger.FlushAsync().WaitAsync(Timeout);
        ledger.Record(LedgerHarness.NewRecord("req_1", promptTokens: 2));
        await ledger.FlushAsync().WaitAsync(Timeout);

        Assert.Equal(first, Assert.Single(await _harness.RowsAsync()));
    }

    [Fact]
    public void Complete_with_another_requests_record_is_a_bug()
    {
        var journal = UsageJournal.Open(_harness.DataDirectory, 16, 2048);
        using var ledger = new UsageLedger(journal, _harness.Database, new MeteringOptions(), Microsoft.Extensions.Logging.Abstractions.NullLogger<UsageLedger>.Instance);
        var entry = ledger.Begin(LedgerHarness.Provisional("req_1"));
        Assert.Throws<ArgumentException>(() => ledger.Complete(entry, LedgerHarness.NewRecord("req_2")));
    }

    [Fact]
    public async Task After_a_crash_finished_records_appear_once_and_requests_in_flight_as_interrupted()
    {
        // Nothing committed before the "kill": the loop never ran, as if the process died before its first group commit.
        var crashed = await _harness.OpenAsync(start: false);
        var done = new List<UsageRecord>();
        for (var i = 0; i < 5; i++)
        {
            var entry = crashed.Begin(LedgerHarness.Provisional($"req_done_{i}"));
            var final = LedgerHarness.NewRecord($"req_done_{i}", promptTokens: 100 + i);
            crashed.Complete(entry, final);
            done.Add(final);
        }
        var rejected = LedgerHarness.NewRecord("req_rejected", status: "invalid_api_key") with { HttpStatus = 401, Usage = Usage.None };
        crashed.Record(rejected);
        var inFlight = crashed.Begin(LedgerHarness.Provisional("req_in_flight"));
        Assert.True(inFlight.IsJournaled);
        await LedgerHarness.CrashAsync(crashed);
        Assert.Empty(await _harness.RowsAsync());

        // Keep the journal as the kill left it, to replay a second crash: one after the recovery committed but before it
        // freed the slots.
        var killed = File.ReadAllBytes(_harness.JournalPath);

        var restarted = await _harness.OpenAsync();
        await AssertRecoveredAsync();
        Assert.Equal(restarted.Journal.SlotCount, restarted.Journal.FreeSlots);
        await restarted.DisposeAsync();

        File.WriteAllBytes(_harness.JournalPath, killed);
        var again = await _harness.OpenAsync();
        await AssertRecoveredAsync();
        Assert.Contains(_harness.Logs.Entries, e => e.EventId == 8010);

        async Task AssertRecoveredAsync()
        {
            var rows = (await _harness.RowsAsync()).ToDictionary(r => r.RequestId);
            Assert.Equal(7, rows.Count);
            foreach (var final in done)
            {
                Assert.Equal(final, rows[final.RequestId]);
            }
            Assert.Equal(rejected, rows["req_rejected"]);
            Assert.Equal(LedgerHarness.Provisional("req_in_flight"), rows["req_in_flight"]);
            Assert.Equal(UsageStatuses.Interrupted, rows["req_in_flight"].Status);
        }
    }

    [Fact]
    public async Task Slots_are_reused_after_commit()
    {
        var ledger = await _harness.OpenAsync(new MeteringOptions { JournalSlots = 16 });
        for (var wave = 0; wave < 40; wave++)
        {
            for (var i = 0; i < 10; i++)
            {
                var id = $"req_{wave:D2}_{i}";
                var entry = ledger.Begin(LedgerHarness.Provisional(id));
                Assert.True(entry.IsJournaled);
                ledger.Complete(entry, LedgerHarness.NewRecord(id));
            }
            await ledger.FlushAsync().WaitAsync(Timeout);
        }

        Assert.Equal(400, (await _harness.RowsAsync()).Count);
        Assert.Equal(0, ledger.Unjournaled);
        Assert.Equal(16, ledger.Journal.FreeSlots);
    }

    [Fact]
    public async Task A_full_journal_falls_back_without_losing_records()
    {
        var ledger = await _harness.OpenAsync(new MeteringOptions { JournalSlots = 16 });
        var entries = Enumerable.Range(0, 20).Select(i => ledger.Begin(LedgerHarness.Provisional($"req_{i:D2}"))).ToList();
        Assert.Equal(16, entries.Count(e => e.IsJournaled));
        Assert.Equal(4, ledger.Unjournaled);
        ledger.Record(LedgerHarness.NewRecord("req_extra"));
        Assert.Equal(5, ledger.Unjournaled);

        foreach (var entry in entries)
        {
            ledger.Complete(entry, LedgerHarness.NewRecord(entry.RequestId));
        }
        await ledger.FlushAsync().WaitAsync(Timeout);

        var rows = await _harness.RowsAsync();
        Assert.Equal(21, rows.Count);
        Assert.All(rows, r => Assert.Equal(UsageStatuses.Ok, r.Status));
        Assert.Equal(16, ledger.Journal.FreeSlots);
    }

    [Fact]
    public async Task A_graceful_stop_commits_everything_queued()
    {
        // A long linger, so that the stop, not the timer, has to end the batch.
        var ledger = await _harness.OpenAsync(new MeteringOptions { MaxBatchDelay = TimeSpan.FromMilliseconds(50) });
        for (var i = 0; i < 1000; i++)
        {
            ledger.Record(LedgerHarness.NewRecord($"req_{i:D4}"));
        }
        await ledger.StopAsync().WaitAsync(Timeout);

        Assert.Equal(1000, (await _harness.RowsAsync()).Count);
        Assert.Equal(0, ledger.Pending);
        Assert.Equal(ledger.Journal.SlotCount, ledger.Journal.FreeSlots);

        // A request that outlives the stop is not lost: journaled, it waits for the next start…
        ledger.Record(LedgerHarness.NewRecord("req_late"));
        Assert.Equal(ledger.Journal.SlotCount - 1, ledger.Journal.FreeSlots);
        await ledger.FlushAsync().WaitAsync(Timeout);
        await ledger.DisposeAsync();
        await _harness.OpenAsync();
        Assert.Equal(1001, (await _harness.RowsAsync()).Count);
    }

    [Fact]
    public async Task A_graceful_stop_while_a_sealed_answers_usage_signature_is_being_checked_records_it_ok_with_its_usage()
    {
        var ledger = await _harness.OpenAsync();
        var meter = new UsageMeter(ledger, new TokenEstimator(), TimeProvider.System, Options.Create(new MeteringOptions()));
        // The daemon's signed usage: its signature check runs off the client's path, and is held here until the stop is
        // under way — the answer has ended, its record is not yet written.
        var checking = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var verdict = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        var usage = new Usage(17, 29, 46);
        var (request, outcome) = LedgerHarness.SealedCall("req_sealed", usage, () =>
        {
            checking.TrySetResult();
            return verdict.Task.GetAwaiter().GetResult();
        });
        var cost = meter.Finish(meter.Begin(request), request, outcome);
        await checking.Task.WaitAsync(Timeout);

        var stopping = ledger.StopAsync();
        verdict.SetResult(true);
        await stopping.WaitAsync(Timeout);

        // Committed by the stop as it ended: ok, the signed usage exactly (not estimated), its cost; not interrupted.
        var row = Assert.Single(await _harness.RowsAsync());
        Assert.Equal(("req_sealed", UsageStatuses.Ok, 200, usage, cost), (row.RequestId, row.Status, row.HttpStatus, row.Usage, row.CostPicoUsd));
        Assert.Equal(2_000_000_000L + 17_000_000 + 87_000_000, cost);
        Assert.Equal(ledger.Journal.SlotCount, ledger.Journal.FreeSlots);
    }

    [Fact]
    public async Task Concurrent_requests_each_get_exactly_one_row()
    {
        var ledger = await _harness.OpenAsync(new MeteringOptions { JournalSlots = 64, MaxBatch = 32 });
        await Task.WhenAll(Enumerable.Range(0, 4).Select(t => Task.Run(() =>
        {
            for (var i = 0; i < 500; i++)
            {
                var id = $"req_{t}_{i:D3}";
                var entry = ledger.Begin(LedgerHarness.Provisional(id));
                ledger.Complete(entry, LedgerHarness.NewRecord(id));
                ledger.Complete(entry, LedgerHarness.NewRecord(id, promptTokens: 999));
            }
        }))).WaitAsync(Timeout);
        await ledger.FlushAsync().WaitAsync(Timeout);

        var rows = await _harness.RowsAsync();
        Assert.Equal(2000, rows.Count);
        Assert.All(rows, r => Assert.Equal(12, r.Usage.PromptTokens));
        Assert.Equal(64, ledger.Journal.FreeSlots);
    }

    [Fact]
    public async Task Two_nodes_recording_the_same_requests_leave_one_row_each()
    {
        // Two gateways, each with its own journal, on one database: a record both write (a retry that landed on both,
        // or a journal replayed after a crash) is stored once, with the first writer's values.
        var otherNode = Path.Combine(_harness.DataDirectory, "node-b");
        Directory.CreateDirectory(otherNode);
        var a = await _harness.OpenAsync(new MeteringOptions { MaxBatch = 16 });
        var b = await _harness.OpenAsync(new MeteringOptions { MaxBatch = 16 }, journalDirectory: otherNode);
        for (var i = 0; i < 200; i++)
        {
            a.Record(LedgerHarness.NewRecord($"req_{i:D3}"));
        }
        await a.FlushAsync().WaitAsync(Timeout);
        await Task.WhenAll(Enumerable.Range(0, 2).Select(n => Task.Run(() =>
        {
            var ledger = n == 0 ? a : b;
            for (var i = 100; i < 300; i++)
            {
                ledger.Record(LedgerHarness.NewRecord($"req_{i:D3}", promptTokens: i < 200 ? 999 : 12));
            }
        }))).WaitAsync(Timeout);
        await Task.WhenAll(a.FlushAsync(), b.FlushAsync()).WaitAsync(Timeout);

        var rows = await _harness.RowsAsync();
        Assert.Equal(300, rows.Count);
        Assert.Equal(Enumerable.Range(0, 300).Select(i => $"req_{i:D3}"), rows.Select(r => r.RequestId));
        Assert.All(rows, r => Assert.Equal(12, r.Usage.PromptTokens));
        Assert.Equal(a.Journal.SlotCount, a.Journal.FreeSlots);
        Assert.Equal(b.Journal.SlotCount, b.Journal.FreeSlots);
    }
}

public sealed class SqliteUsageLedgerTests : UsageLedgerTests
{
    protected override Task<LedgerHarness> CreateHarnessAsync() => LedgerHarness.CreateAsync();

    [Fact]
    public async Task A_locked_database_is_retried_until_the_records_are_in()
    {
        // A short busy timeout so that the lock surfaces as a failed commit quickly, rather than inside SQLite's own wait.
        var ledger = await Harness.OpenAsync(connectionString: Harness.ConnectionString + ";Default Timeout=1");
        await using var blocker = new SqliteConnection(Harness.ConnectionString);
        await blocker.OpenAsync();
        await using (var begin = blocker.CreateCommand())
        {
            begin.CommandText = "BEGIN EXCLUSIVE";
            await begin.ExecuteNonQueryAsync();
        }

        ledger.Record(LedgerHarness.NewRecord("req_1"));
        var flushed = ledger.FlushAsync();
        await Harness.Logs.WaitForAsync(8011).WaitAsync(Timeout);
        Assert.False(flushed.IsCompleted);
        Assert.Equal(1, ledger.Pending);
        Assert.Equal(ledger.Journal.SlotCount - 1, ledger.Journal.FreeSlots);

        await using (var rollback = blocker.CreateCommand())
        {
            rollback.CommandText = "ROLLBACK";
            await rollback.ExecuteNonQueryAsync();
        }
        await flushed.WaitAsync(Timeout);
        Assert.Equal("req_1", Assert.Single(await Harness.RowsAsync()).RequestId);
    }
}

[Collection(PostgresCollection.Name)]
public sealed class PostgresUsageLedgerTests(PostgresFixture postgres) : UsageLedgerTests
{
    protected override async Task<LedgerHarness> CreateHarnessAsync() => await LedgerHarness.CreateAsync(await postgres.DatabaseAsync(GetType()));

    [Fact]
    public async Task A_postgresql_restart_holds_the_records_until_it_is_back_and_loses_none()
    {
        // A server of its own: this test stops it.
        await using var server = await PostgresServer.StartAsync();
        await using var harness = await LedgerHarness.CreateAsync(await server.CreateDatabaseAsync("ledger_restart"));
        var ledger = await harness.OpenAsync();
        for (var i = 0; i < 50; i++)
        {
            ledger.Record(LedgerHarness.NewRecord($"req_{i:D3}"));
        }
        await ledger.FlushAsync().WaitAsync(Timeout);

        await server.StopServerAsync();
        for (var i = 50; i < 100; i++)
        {
            ledger.Record(LedgerHarness.NewRecord($"req_{i:D3}"));
        }
        var flushed = ledger.FlushAsync();
        await harness.Logs.WaitForAsync(8011).WaitAsync(Timeout);
        Assert.False(flushed.IsCompleted);
        Assert.Equal(50, ledger.Pending);
        Assert.Equal(ledger.Journal.SlotCount - 50, ledger.Journal.FreeSlots);

        await server.StartServerAsync();
        await flushed.WaitAsync(Timeout);
        Assert.Equal(Enumerable.Range(0, 100).Select(i => $"req_{i:D3}"), (await harness.RowsAsync()).Select(r => r.RequestId));
        Assert.Equal(0, ledger.Pending);
        Assert.Equal(ledger.Journal.SlotCount, ledger.Journal.FreeSlots);
    }

    [Fact]
    public async Task A_model_name_longer_than_its_column_is_cut_rather_than_failing_the_batch()
    {
        var ledger = await Harness.OpenAsync();
        var longName = LedgerHarness.NewRecord("req_long") with { Model = "lovelace:" + new string('m', 400) };
        ledger.Record(longName);
        ledger.Record(LedgerHarness.NewRecord("req_next"));
        await ledger.FlushAsync().WaitAsync(Timeout);

        var rows = await Harness.RowsAsync();
        Assert.Equal(["req_long", "req_next"], rows.Select(r => r.RequestId));
        Assert.Equal(longName.Model[..300], rows[0].Model);
    }
}
