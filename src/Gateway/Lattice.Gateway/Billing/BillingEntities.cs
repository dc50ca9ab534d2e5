using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Lattice.Gateway.Billing;

/// <summary>What a budget caps: a workspace, one key, one OAuth app, or each end-user of an app separately.</summary>
public static class BudgetScopes
{
    public const string Workspace = "workspace";
    public const string Key = "key";
    public const string App = "app";
    /// <summary>Every user of one app has the amount to themselves: a developer paying for their users' traffic caps each one.</summary>
    public const string AppUser = "app_user";

    public static readonly string[] All = [Workspace, Key, App, AppUser];
}

/// <summary>A spend limit in USD per calendar month (UTC) on a workspace, a key, an app, or each user of an app.</summary>
public sealed class BudgetEntity
{
    /// <summary><c>bud_…</c>.</summary>
    public required string Id { get; set; }
    public required string WorkspaceId { get; set; }
    /// <summary><see cref="BudgetScopes"/>.</summary>
    public required string Scope { get; set; }
    /// <summary>The workspace id, key id or app client id the budget is on.</summary>
    public required string SubjectId { get; set; }
    public long AmountPicoUsd { get; set; }
    /// <summary><c>month</c> (calendar month, UTC).</summary>
    public string Period { get; set; } = "month";
    /// <summary>Where the 50 %, 80 % and 100 % alerts are <c>POST</c>ed; null: no alerts.</summary>
    public string? AlertUrl { get; set; }
    /// <summary>The alert signing secret (<c>whsec_…</c>), protected with ASP.NET Core Data Protection: it signs, so it cannot be a hash.</summary>
    public string? AlertSecret { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
}

/// <summary>
/// A budget alert to deliver (an outbox row): written once per budget, period, user and threshold, and retried
/// with backoff until the receiver acknowledges it with a 2xx.
/// </summary>
public sealed class BudgetAlertEntity
{
    public long Id { get; set; }
    public required string BudgetId { get; set; }
    public required string WorkspaceId { get; set; }
    public DateTimeOffset PeriodStart { get; set; }
    /// <summary>For <see cref="BudgetScopes.AppUser"/> budgets: the user whose spend crossed; empty otherwise.</summary>
    public string UserId { get; set; } = "";
    /// <summary>50, 80 or 100.</summary>
    public int Threshold { get; set; }
    /// <summary>The JSON body sent, fixed when the alert is raised.</summary>
    public required string Payload { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public int Attempts { get; set; }
    public DateTimeOffset NextAttemptAt { get; set; }
    public DateTimeOffset? DeliveredAt { get; set; }
    public string? LastError { get; set; }
}

/// <summary>
/// An idempotency key's first answer, kept 24 h per caller (Stripe's semantics): replayed for the same body,
/// refused for another; <see cref="State"/> <c>running</c> while the first request is in flight.
/// </summary>
public sealed class IdempotencyRecordEntity
{
    /// <summary>The credential that sent it (key id, or grant id for access tokens): keys of one caller are invisible to another.</summary>
    public required string CallerId { get; set; }
    public required string Key { get; set; }
    /// <summary>Lowercase hex SHA-256 over the method, path and body.</summary>
    public required string RequestHash { get; set; }
    /// <summary><c>running</c>, <c>done</c>, or <c>unreplayable</c> (the answer was larger than can be kept).</summary>
    public required string State { get; set; }
    public int Status { get; set; }
    /// <summary>The response headers that matter, as a JSON object.</summary>
    public string? Headers { get; set; }
    public byte[]? Body { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset ExpiresAt { get; set; }
    /// <summary>While <c>running</c>: when the claim lapses if the node that holds it died.</summary>
    public DateTimeOffset LockedUntil { get; set; }
}

/// <summary>A finalised invoice: one per workspace per calendar month (UTC), immutable once written. Drafts are computed, not stored.</summary>
public sealed class InvoiceEntity
{
    /// <summary><c>in_…</c>.</summary>
    public required string Id { get; set; }
    public required string WorkspaceId { get; set; }
    public DateTimeOffset PeriodStart { get; set; }
    public DateTimeOffset PeriodEnd { get; set; }
    public long SubtotalPicoUsd { get; set; }
    /// <summary>The lines as JSON, as they were when the invoice was finalised.</summary>
    public required string Lines { get; set; }
    public DateTimeOffset FinalizedAt { get; set; }
}

/// <summary>How far an exporter (e.g. <c>stripe</c>) has read the ledger, so a restart resumes where it stopped.</summary>
public sealed class ExportCursorEntity
{
    public required string Name { get; set; }
    /// <summary>The ledger position (SQLite rowid of <c>usage_records</c>) of the last record exported.</summary>
    public long Position { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
}

internal sealed class BillingEntityConfiguration :
    IEntityTypeConfiguration<BudgetEntity>,
    IEntityTypeConfiguration<BudgetAlertEntity>,
    IEntityTypeConfiguration<IdempotencyRecordEntity>,
    IEntityTypeConfiguration<InvoiceEntity>,
    IEntityTypeConfiguration<ExportCursorEntity>
{
    public void Configure(EntityTypeBuilder<BudgetEntity> b)
    {
        b.ToTable("budgets");
        b.HasKey(x => x.Id);
        b.Property(x => x.Id).HasMaxLength(64);
        b.Property(x => x.Scope).HasMaxLength(16);
        b.Property(x => x.SubjectId).HasMaxLength(100);
        b.HasIndex(x => new { x.WorkspaceId, x.Scope, x.SubjectId }).IsUnique();
        b.HasOne<Persistence.WorkspaceEntity>().WithMany().HasForeignKey(x => x.WorkspaceId);
    }

    public void Configure(EntityTypeBuilder<BudgetAlertEntity> b)
    {
        b.ToTable("budget_alerts");
        b.HasKey(x => x.Id);
        b.Property(x => x.Id).ValueGeneratedOnAdd();
        b.HasIndex(x => new { x.BudgetId, x.PeriodStart, x.UserId, x.Threshold }).IsUnique();
        b.HasIndex(x => new { x.DeliveredAt, x.NextAttemptAt });
    }

    public void Configure(EntityTypeBuilder<IdempotencyRecordEntity> b)
    {
        b.ToTable("idempotency_keys");
        b.HasKey(x => new { x.CallerId, x.Key });
        b.Property(x => x.CallerId).HasMaxLength(100);
        b.Property(x => x.Key).HasMaxLength(255);
        b.HasIndex(x => x.ExpiresAt);
    }

    public void Configure(EntityTypeBuilder<InvoiceEntity> b)
    {
        b.ToTable("invoices");
        b.HasKey(x => x.Id);
        b.Property(x => x.Id).HasMaxLength(64);
        b.HasIndex(x => new { x.WorkspaceId, x.PeriodStart }).IsUnique();
    }

    public void Configure(EntityTypeBuilder<ExportCursorEntity> b)
    {
        b.ToTable("export_cursors");
        b.HasKey(x => x.Name);
        b.Property(x => x.Name).HasMaxLength(64);
    }
}
