using Lattice.Gateway.Metering;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Metering;

/// <summary>Reads a gateway's usage records the way an auditor would: from the table, after a flush.</summary>
public static class Ledger
{
    /// <summary>
    /// The one record of <paramref name="requestId"/>. A record is written when its dispatch ends, which for a client
    /// that went away may be after the client's call returned, so this waits for it (flushing each time).
    /// </summary>
    public static async Task<UsageRecord> RecordAsync(IServiceProvider services, string requestId)
    {
        var ledger = services.GetRequiredService<UsageLedger>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (true)
        {
            await ledger.FlushAsync().WaitAsync(timeout.Token);
            await using (var scope = services.CreateAsyncScope())
            {
                var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
                var rows = await db.UsageRecords.AsNoTracking().Where(r => r.RequestId == requestId).ToListAsync(timeout.Token);
                if (rows.Count > 0)
                {
                    return Assert.Single(rows).ToRecord();
                }
            }
            await Task.Delay(20, timeout.Token);
        }
    }

    public static async Task<int> CountAsync(IServiceProvider services, string requestId)
    {
        await services.GetRequiredService<UsageLedger>().FlushAsync();
        await using var scope = services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        return await db.UsageRecords.CountAsync(r => r.RequestId == requestId);
    }
}
