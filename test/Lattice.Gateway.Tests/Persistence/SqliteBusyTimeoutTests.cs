using Lattice.Gateway.Persistence;
using Lattice.Gateway.Tests.Runtimes;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Persistence;

/// <summary>
/// The gateway's SQLite connections wait out another writer's lock inside SQLite, not in Microsoft.Data.Sqlite's
/// 150 ms sleeps: with those, an idempotency claim that met the previous request's write stalled 150 ms before
/// dispatch (the ≈150 ms streamed chat of docs/benchmarks.md, "Sealed vs unsealed chat").
/// </summary>
public sealed class SqliteBusyTimeoutTests(LiveGateway gateway) : IClassFixture<LiveGateway>
{
    [Fact]
    public async Task A_context_connection_has_sqlites_own_busy_timeout()
    {
        await using var scope = gateway.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        Assert.True(db.Database.IsSqlite());
        await db.Database.OpenConnectionAsync();
        try
        {
            await using var pragma = db.Database.GetDbConnection().CreateCommand();
            pragma.CommandText = "PRAGMA busy_timeout;";
            Assert.Equal((long)SqliteBusyTimeout.Milliseconds, Convert.ToInt64(await pragma.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture));
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }
}
