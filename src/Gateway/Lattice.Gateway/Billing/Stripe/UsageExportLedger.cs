using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Billing.Stripe;

/// <summary>One ledger record as an exporter needs it, with its position in the ledger and its workspace's Stripe customer.</summary>
public sealed class ExportRecord
{
    public long Position { get; set; }
    public required string RequestId { get; set; }
    /// <summary>Unix milliseconds.</summary>
    public long CreatedAt { get; set; }
    public long CostPicoUsd { get; set; }
    public string? StripeCustomerId { get; set; }
}

/// <summary>
/// Every query an exporter makes: the ledger in order after a position, and the persisted cursor. The one place that
/// knows what a position is, so a store with another notion of order (PostgreSQL, for the scale-out) replaces this
/// class and nothing else.
/// </summary>
public interface IUsageExportLedger
{
    Task<long> GetCursorAsync(string name, CancellationToken cancellationToken);

    /// <summary>At most <paramref name="limit"/> records after <paramref name="position"/>, in ledger order.</summary>
    Task<List<ExportRecord>> ReadAfterAsync(long position, int limit, CancellationToken cancellationToken);

    Task SaveCursorAsync(string name, long position, CancellationToken cancellationToken);
}

/// <summary>
/// SQLite: a record's position is its rowid. SQLite has one writer and never reuses a rowid while the table's largest
/// row stays (records are never deleted), so rows committed later always have larger rowids than any row a reader
/// has already seen: reading after the cursor misses nothing.
/// </summary>
internal sealed class SqliteUsageExportLedger(LatticeDbContext db, TimeProvider time) : IUsageExportLedger
{
    public async Task<long> GetCursorAsync(string name, CancellationToken cancellationToken) =>
        await db.ExportCursors.AsNoTracking().Where(c => c.Name == name).Select(c => (long?)c.Position).FirstOrDefaultAsync(cancellationToken) ?? 0;

    public Task<List<ExportRecord>> ReadAfterAsync(long position, int limit, CancellationToken cancellationToken) =>
        db.Database.SqlQueryRaw<ExportRecord>(
            "SELECT r.rowid AS \"Position\", r.\"RequestId\", r.\"CreatedAt\", r.\"CostPicoUsd\", w.\"StripeCustomerId\" "
            + "FROM \"usage_records\" AS r LEFT JOIN \"workspaces\" AS w ON w.\"Id\" = r.\"WorkspaceId\" "
            + "WHERE r.rowid > {0} ORDER BY r.rowid LIMIT {1}",
            position, limit).ToListAsync(cancellationToken);

    public async Task SaveCursorAsync(string name, long position, CancellationToken cancellationToken)
    {
        var cursor = await db.ExportCursors.FirstOrDefaultAsync(c => c.Name == name, cancellationToken);
        if (cursor is null)
        {
            db.ExportCursors.Add(new ExportCursorEntity { Name = name, Position = position, UpdatedAt = time.GetUtcNow() });
        }
        else
        {
            cursor.Position = position;
            cursor.UpdatedAt = time.GetUtcNow();
        }
        await db.SaveChangesAsync(cancellationToken);
    }
}
