using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Billing.Invoices;

/// <summary>
/// Invoices are statements built from the ledger: one per workspace per calendar month (UTC). A month's invoice is a
/// draft, computed on every read, until <see cref="InvoiceOptions.GracePeriod"/> after the month ends; then it is
/// written once to <c>invoices</c> (its lines as JSON) and served from there, whatever the ledger says later.
/// Finalising is idempotent: the id is deterministic and (workspace, month) unique, so two nodes or a read racing
/// the background finaliser write one row.
/// </summary>
public sealed class InvoiceBook(LatticeDbContext db, TimeProvider time, IOptions<InvoiceOptions> options)
{
    private const string IdPrefix = "in_";

    /// <summary>The deterministic id of <paramref name="workspaceId"/>'s invoice for the month starting at <paramref name="periodStart"/>.</summary>
    public static string IdFor(string workspaceId, DateTimeOffset periodStart) =>
        IdPrefix + periodStart.ToString("yyyyMM", CultureInfo.InvariantCulture) + "_" + WorkspaceTag(workspaceId);

    /// <summary>
    /// The month an id names, when it is one of <paramref name="workspaceId"/>'s invoice ids; null for anything else —
    /// another workspace's id included, which is then as unknown as a made-up one.
    /// </summary>
    public static DateTimeOffset? PeriodOf(string id, string workspaceId)
    {
        var tag = WorkspaceTag(workspaceId);
        if (id.Length != IdPrefix.Length + 6 + 1 + tag.Length || !id.StartsWith(IdPrefix, StringComparison.Ordinal)
            || id[IdPrefix.Length + 6] != '_' || !id.EndsWith(tag, StringComparison.Ordinal)
            || !DateTime.TryParseExact(id.AsSpan(IdPrefix.Length, 6), "yyyyMM", CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var month)
            || month.Year < 2000)
        {
            return null;
        }
        return new DateTimeOffset(month.Year, month.Month, 1, 0, 0, 0, TimeSpan.Zero);
    }

    /// <summary>12 hex digits of SHA-256 over the workspace id: stable, and not the id itself.</summary>
    private static string WorkspaceTag(string workspaceId) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(workspaceId)).AsSpan(0, 6));

    /// <summary>The first instant (UTC) of the calendar month holding <paramref name="at"/>.</summary>
    public static DateTimeOffset MonthOf(DateTimeOffset at)
    {
        var utc = at.ToUniversalTime();
        return new DateTimeOffset(utc.Year, utc.Month, 1, 0, 0, 0, TimeSpan.Zero);
    }

    /// <summary>When a month's invoice becomes final: its end plus the grace period.</summary>
    private DateTimeOffset FinalAt(DateTimeOffset periodStart) => periodStart.AddMonths(1) + options.Value.GracePeriod;

    /// <summary>The invoice for the month starting at <paramref name="periodStart"/>, finalising it first when it is due.</summary>
    public async Task<InvoiceDto> GetAsync(string workspaceId, DateTimeOffset periodStart, CancellationToken cancellationToken)
    {
        var id = IdFor(workspaceId, periodStart);
        if (await db.Invoices.AsNoTracking().FirstOrDefaultAsync(i => i.Id == id, cancellationToken) is { } stored)
        {
            return FromStored(stored);
        }
        var lines = await ComputeLinesAsync(workspaceId, periodStart, cancellationToken);
        var now = time.GetUtcNow();
        if (now < FinalAt(periodStart))
        {
            return ToDto(id, workspaceId, periodStart, InvoiceStatuses.Draft, lines.Dtos, lines.SubtotalPicoUsd, null);
        }
        return FromStored(await FinalizeAsync(id, workspaceId, periodStart, lines, now, cancellationToken));
    }

    /// <summary>
    /// Every invoice of the workspace, newest first: each month from its first charged record (or first final
    /// invoice) to the current month, which is always there as a draft.
    /// </summary>
    public async Task<List<InvoiceDto>> ListAsync(string workspaceId, CancellationToken cancellationToken)
    {
        var current = MonthOf(time.GetUtcNow());
        var first = await FirstMonthAsync(workspaceId, cancellationToken) ?? current;
        var invoices = new List<InvoiceDto>();
        for (var month = current; month >= first; month = month.AddMonths(-1))
        {
            invoices.Add(await GetAsync(workspaceId, month, cancellationToken));
        }
        return invoices;
    }

    /// <summary>Finalises every invoice of every workspace that is due and not yet written; returns how many it wrote.</summary>
    public async Task<int> FinalizeDueAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        // The newest month whose grace period is over.
        var lastDue = MonthOf(now - options.Value.GracePeriod).AddMonths(-1);
        var workspaces = await db.Workspaces.AsNoTracking().Select(w => w.Id).ToListAsync(cancellationToken);
        var written = 0;
        foreach (var workspaceId in workspaces)
        {
            if (await FirstMonthAsync(workspaceId, cancellationToken) is not { } first)
            {
                continue;
            }
            var stored = (await db.Invoices.AsNoTracking().Where(i => i.WorkspaceId == workspaceId).Select(i => i.Id).ToListAsync(cancellationToken)).ToHashSet(StringComparer.Ordinal);
            for (var month = first; month <= lastDue; month = month.AddMonths(1))
            {
                var id = IdFor(workspaceId, month);
                if (!stored.Contains(id))
                {
                    var lines = await ComputeLinesAsync(workspaceId, month, cancellationToken);
                    await FinalizeAsync(id, workspaceId, month, lines, now, cancellationToken);
                    written++;
                }
            }
        }
        return written;
    }

    private async Task<DateTimeOffset?> FirstMonthAsync(string workspaceId, CancellationToken cancellationToken)
    {
        var firstRecord = await Charged(workspaceId).OrderBy(r => r.CreatedAt).Select(r => (DateTimeOffset?)r.CreatedAt).FirstOrDefaultAsync(cancellationToken);
        var firstInvoice = await db.Invoices.AsNoTracking().Where(i => i.WorkspaceId == workspaceId).OrderBy(i => i.PeriodStart).Select(i => (DateTimeOffset?)i.PeriodStart).FirstOrDefaultAsync(cancellationToken);
        DateTimeOffset? first = firstRecord is { } r && (firstInvoice is null || r < firstInvoice) ? r : firstInvoice;
        return first is { } f ? MonthOf(f) : null;
    }

    /// <summary>
    /// The records an invoice counts: those charged at a price, or with a cost. Free records (no prices, no cost) are
    /// not billing, and appear only in the usage API.
    /// </summary>
    private IQueryable<UsageRecordEntity> Charged(string workspaceId) =>
        db.UsageRecords.AsNoTracking().Where(r => r.WorkspaceId == workspaceId && (r.CostPicoUsd > 0 || r.Prices != null));

    private sealed record Lines(List<InvoiceLineDto> Dtos, long SubtotalPicoUsd);

    /// <summary>The month's lines, summed in the database over integer columns: the subtotal is the ledger's sum, exactly.</summary>
    private async Task<Lines> ComputeLinesAsync(string workspaceId, DateTimeOffset periodStart, CancellationToken cancellationToken)
    {
        var periodEnd = periodStart.AddMonths(1);
        var groups = await Charged(workspaceId)
            .Where(r => r.CreatedAt >= periodStart && r.CreatedAt < periodEnd)
            .GroupBy(r => new { r.Model, r.Task, r.Prices })
            .Select(g => new
            {
                g.Key.Model,
                g.Key.Task,
                g.Key.Prices,
                Requests = g.LongCount(),
                InputTokens = g.Sum(r => r.PromptTokens),
                CachedInputTokens = g.Sum(r => r.CachedTokens),
                OutputTokens = g.Sum(r => r.CompletionTokens),
                AudioMilliseconds = g.Sum(r => r.AudioMilliseconds),
                CostPicoUsd = g.Sum(r => r.CostPicoUsd),
            })
            .ToListAsync(cancellationToken);
        var ordered = groups
            .OrderBy(g => g.Model, StringComparer.Ordinal).ThenBy(g => g.Task, StringComparer.Ordinal).ThenBy(g => g.Prices, StringComparer.Ordinal)
            .ToList();
        var lines = ordered.Select(g => new InvoiceLineDto(
                g.Model,
                g.Task,
                new InvoiceQuantitiesDto(g.Requests, g.InputTokens, g.CachedInputTokens, g.OutputTokens, g.AudioMilliseconds / 1000m),
                PricesJson.TryFromStored(g.Prices, out var prices) ? prices : null,
                CostCalculator.FormatUsd(g.CostPicoUsd)))
            .ToList();
        return new Lines(lines, ordered.Sum(g => g.CostPicoUsd));
    }

    private async Task<InvoiceEntity> FinalizeAsync(string id, string workspaceId, DateTimeOffset periodStart, Lines lines, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var entity = new InvoiceEntity
        {
            Id = id,
            WorkspaceId = workspaceId,
            PeriodStart = periodStart,
            PeriodEnd = periodStart.AddMonths(1),
            SubtotalPicoUsd = lines.SubtotalPicoUsd,
            Lines = JsonSerializer.Serialize(lines.Dtos, InvoiceJsonContext.Default.ListInvoiceLineDto),
            FinalizedAt = now,
        };
        db.Invoices.Add(entity);
        try
        {
            await db.SaveChangesAsync(cancellationToken);
            return entity;
        }
        catch (DbUpdateException)
        {
            // Another node, or the finaliser, wrote it first: theirs is the invoice.
            db.Entry(entity).State = EntityState.Detached;
            return await db.Invoices.AsNoTracking().FirstAsync(i => i.Id == id, cancellationToken);
        }
    }

    private static InvoiceDto FromStored(InvoiceEntity stored) => ToDto(
        stored.Id, stored.WorkspaceId, stored.PeriodStart, InvoiceStatuses.Final,
        JsonSerializer.Deserialize(stored.Lines, InvoiceJsonContext.Default.ListInvoiceLineDto) ?? [],
        stored.SubtotalPicoUsd, stored.FinalizedAt);

    private static InvoiceDto ToDto(string id, string workspaceId, DateTimeOffset periodStart, string status, List<InvoiceLineDto> lines, long subtotalPicoUsd, DateTimeOffset? finalizedAt)
    {
        var subtotal = CostCalculator.FormatUsd(subtotalPicoUsd);
        return new InvoiceDto(id, workspaceId, periodStart.ToUnixTimeSeconds(), periodStart.AddMonths(1).ToUnixTimeSeconds(), status, lines,
            subtotal, subtotal, finalizedAt?.ToUnixTimeSeconds());
    }
}
