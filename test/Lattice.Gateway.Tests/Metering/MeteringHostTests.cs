using Lattice.Gateway.Hosting;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Protocol.Metering;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Tests.Metering;

/// <summary>The ledger inside the real gateway host: recovery before serving, the commit loop's lifetime, options validation.</summary>
public sealed class MeteringHostTests : IDisposable
{
    private static readonly TimeSpan Timeout = LedgerHarness.Timeout;
    private readonly string _dataDir = Path.Combine(Path.GetTempPath(), "lattice-metering-" + Guid.NewGuid().ToString("N"));

    public void Dispose() => Hosts.DeleteDataDirectory(_dataDir);

    private WebApplication Build(Dictionary<string, string?>? extra = null, LogSink? logs = null)
    {
        var builder = GatewayApp.CreateBuilder([]);
        var settings = new Dictionary<string, string?> { ["Lattice:DataDirectory"] = _dataDir };
        foreach (var (k, v) in extra ?? [])
        {
            settings[k] = v;
        }
        builder.Configuration.AddInMemoryCollection(settings);
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        if (logs is not null)
        {
            builder.Logging.AddFilter(typeof(UsageLedger).FullName, LogLevel.Information);
            builder.Logging.AddProvider(new SinkProvider(logs));
        }
        return GatewayApp.Build(builder);
    }

    [Fact]
    public async Task The_gateway_recovers_the_journal_before_serving_and_flushes_on_a_graceful_stop()
    {
        // What a killed gateway left: one request finished but not committed, one in flight.
        using (var journal = UsageJournal.Open(_dataDir, new MeteringOptions().JournalSlots, new MeteringOptions().JournalSlotBytes))
        {
            Assert.True(journal.TryRecord(LedgerHarness.NewRecord("req_finished"), out _));
            Assert.True(journal.TryBegin(LedgerHarness.Provisional("req_in_flight"), out _));
        }

        var app = Build();
        await app.StartAsync().WaitAsync(Timeout);
        try
        {
            await using (var scope = app.Services.CreateAsyncScope())
            {
                var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
                var rows = await db.UsageRecords.AsNoTracking().OrderBy(r => r.RequestId).Select(r => new { r.RequestId, r.Status }).ToListAsync();
                Assert.Equal([new { RequestId = "req_finished", Status = UsageStatuses.Ok }, new { RequestId = "req_in_flight", Status = UsageStatuses.Interrupted }], rows);
            }

            // Records queued just before the stop are committed by it.
            var ledger = app.Services.GetRequiredService<UsageLedger>();
            for (var i = 0; i < 50; i++)
            {
                var entry = ledger.Begin(LedgerHarness.Provisional($"req_{i:D2}"));
                ledger.Complete(entry, LedgerHarness.NewRecord($"req_{i:D2}"));
            }
        }
        finally
        {
            await app.StopAsync().WaitAsync(Timeout);
            await app.DisposeAsync();
        }

        var options = new DbContextOptionsBuilder<LatticeDbContext>().UseSqlite(new GatewayOptions { DataDirectory = _dataDir }.ResolveConnectionString()).Options;
        await using var after = new LatticeDbContext(options);
        Assert.Equal(52, await after.UsageRecords.CountAsync());
    }

    [Fact]
    public async Task A_graceful_stop_of_the_host_while_a_sealed_answers_usage_signature_is_being_checked_commits_it_ok()
    {
        var logs = new LogSink();
        var app = Build(logs: logs);
        await app.StartAsync().WaitAsync(Timeout);
        var verdict = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        var usage = new Usage(5, 8, 13);
        // The answer has ended; the signature check of its usage is held until the stop is waiting for it.
        var meter = app.Services.GetRequiredService<UsageMeter>();
        var (request, outcome) = LedgerHarness.SealedCall("req_sealed_host", usage, () => verdict.Task.GetAwaiter().GetResult());
        var cost = meter.Finish(meter.Begin(request), request, outcome);

        // SIGTERM: the host's graceful stop. The ledger says it waits for the check (8014); the check then ends.
        var stopping = app.StopAsync();
        await logs.WaitForAsync(8014).WaitAsync(Timeout);
        verdict.SetResult(true);
        await stopping.WaitAsync(Timeout);
        await app.DisposeAsync();

        var options = new DbContextOptionsBuilder<LatticeDbContext>().UseSqlite(new GatewayOptions { DataDirectory = _dataDir }.ResolveConnectionString()).Options;
        await using var after = new LatticeDbContext(options);
        var row = (await after.UsageRecords.AsNoTracking().SingleAsync(r => r.RequestId == "req_sealed_host")).ToRecord();
        Assert.Equal((UsageStatuses.Ok, usage, cost), (row.Status, row.Usage, row.CostPicoUsd));
    }

    private sealed class SinkProvider(LogSink sink) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => sink.CreateLogger(categoryName);

        public void Dispose()
        {
        }
    }

    [Fact]
    public async Task Bad_metering_options_stop_the_gateway_at_start()
    {
        var app = Build(new() { ["Lattice:Metering:JournalSlotBytes"] = "1001" });
        try
        {
            var error = await Assert.ThrowsAsync<OptionsValidationException>(() => app.StartAsync().WaitAsync(Timeout));
            Assert.Contains("JournalSlotBytes", error.Message, StringComparison.Ordinal);
        }
        finally
        {
            await app.DisposeAsync();
        }
    }
}
