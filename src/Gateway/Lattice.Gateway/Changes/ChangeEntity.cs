using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Lattice.Gateway.Changes;

/// <summary>
/// One row of the change feed: "this entity changed", written in the same transaction as the change itself by the
/// store that owns it. Every node reads the rows after the last it saw and refreshes what they name from the database,
/// so a row carries no data of its own — only what to look at again.
/// </summary>
public sealed class ChangeEntity
{
    /// <summary>Monotonic (SQLite <c>AUTOINCREMENT</c>: never reused, even after the newest rows are pruned).</summary>
    public long Id { get; set; }

    /// <summary>One of <see cref="ChangeKinds"/>.</summary>
    public required string Kind { get; set; }

    /// <summary>The key id, model id, task class name, lattice id, budget id, or limits subject (see <see cref="ChangeKinds"/>).</summary>
    public required string EntityId { get; set; }

    public string? WorkspaceId { get; set; }

    public DateTimeOffset At { get; set; }
}

/// <summary>What a change row names; each kind is applied by the one store that owns it.</summary>
public static class ChangeKinds
{
    /// <summary>A developer key (its id): created, revoked, or its scopes changed.</summary>
    public const string Key = "key";

    /// <summary>A catalog model (its id) and its offers.</summary>
    public const string Model = "model";

    /// <summary>A task class (its name).</summary>
    public const string TaskClass = "task_class";

    /// <summary>A runtime record (its lattice id): created or revoked. A revoked runtime's link is cut on every node.</summary>
    public const string Runtime = "runtime";

    /// <summary>Rate limits of a workspace, key or app; the entity id is <c>workspace:</c>, <c>key:</c> or <c>app:</c> and the id.</summary>
    public const string Limits = "limits";

    /// <summary>A budget (its id): created, changed or deleted.</summary>
    public const string Budget = "budget";

    /// <summary>What a workspace's personal runtimes charge (the workspace id).</summary>
    public const string WorkspacePrices = "workspace_prices";
}

internal sealed class ChangeEntityConfiguration : IEntityTypeConfiguration<ChangeEntity>
{
    public void Configure(EntityTypeBuilder<ChangeEntity> b)
    {
        b.ToTable("changes");
        b.HasKey(x => x.Id);
        b.Property(x => x.Id).ValueGeneratedOnAdd();
        b.Property(x => x.Kind).HasMaxLength(32);
        b.Property(x => x.EntityId).HasMaxLength(300);
        b.Property(x => x.WorkspaceId).HasMaxLength(64);
        // Pruning deletes by age.
        b.HasIndex(x => x.At);
    }
}
