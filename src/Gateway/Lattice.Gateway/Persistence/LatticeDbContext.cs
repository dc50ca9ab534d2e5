using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage.ValueConversion;

namespace Lattice.Gateway.Persistence;

/// <summary>
/// The gateway's one DbContext. Provider-neutral: timestamps are stored as Unix milliseconds. This type carries the
/// SQLite migrations (Migrations/Sqlite); <see cref="PostgresLatticeDbContext"/>, the same model, carries PostgreSQL's.
/// </summary>
public class LatticeDbContext : DbContext
{
    public LatticeDbContext(DbContextOptions<LatticeDbContext> options)
        : base(options)
    {
    }

    /// <summary>For a provider's subclass, whose own type selects its migrations.</summary>
    protected LatticeDbContext(DbContextOptions options)
        : base(options)
    {
    }

    public DbSet<WorkspaceEntity> Workspaces => Set<WorkspaceEntity>();
    public DbSet<ApiKeyEntity> ApiKeys => Set<ApiKeyEntity>();
    public DbSet<TaskClassEntity> TaskClasses => Set<TaskClassEntity>();
    public DbSet<CatalogModelEntity> Models => Set<CatalogModelEntity>();
    public DbSet<ModelOfferEntity> ModelOffers => Set<ModelOfferEntity>();
    public DbSet<RuntimeEntity> Runtimes => Set<RuntimeEntity>();
    public DbSet<UserEntity> Users => Set<UserEntity>();
    public DbSet<WorkspaceMemberEntity> WorkspaceMembers => Set<WorkspaceMemberEntity>();
    public DbSet<OAuthAppEntity> OAuthApps => Set<OAuthAppEntity>();
    public DbSet<OAuthGrantEntity> OAuthGrants => Set<OAuthGrantEntity>();
    public DbSet<RevocationEntity> Revocations => Set<RevocationEntity>();
    public DbSet<InvitationEntity> Invitations => Set<InvitationEntity>();
    public DbSet<Metering.UsageRecordEntity> UsageRecords => Set<Metering.UsageRecordEntity>();
    public DbSet<Billing.BudgetEntity> Budgets => Set<Billing.BudgetEntity>();
    public DbSet<Billing.BudgetAlertEntity> BudgetAlerts => Set<Billing.BudgetAlertEntity>();
    public DbSet<Billing.IdempotencyRecordEntity> IdempotencyKeys => Set<Billing.IdempotencyRecordEntity>();
    public DbSet<Billing.InvoiceEntity> Invoices => Set<Billing.InvoiceEntity>();
    public DbSet<Billing.ExportCursorEntity> ExportCursors => Set<Billing.ExportCursorEntity>();
    public DbSet<Responses.StoredResponseEntity> StoredResponses => Set<Responses.StoredResponseEntity>();
    public DbSet<Changes.ChangeEntity> Changes => Set<Changes.ChangeEntity>();

    protected override void ConfigureConventions(ModelConfigurationBuilder configurationBuilder)
    {
        configurationBuilder.Properties<DateTimeOffset>().HaveConversion<UnixMillisecondsConverter>();
    }

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<WorkspaceEntity>(b =>
        {
            b.ToTable("workspaces");
            b.HasKey(x => x.Id);
            b.Property(x => x.Id).HasMaxLength(64);
            b.Property(x => x.Name).HasMaxLength(200);
        });

        modelBuilder.Entity<ApiKeyEntity>(b =>
        {
            b.ToTable("api_keys");
            b.HasKey(x => x.Id);
            b.Property(x => x.Id).HasMaxLength(64);
            b.Property(x => x.Hash).HasMaxLength(64);
            b.HasIndex(x => x.Hash).IsUnique();
            b.HasIndex(x => x.WorkspaceId);
            b.HasOne<WorkspaceEntity>().WithMany().HasForeignKey(x => x.WorkspaceId);
        });

        modelBuilder.Entity<TaskClassEntity>(b =>
        {
            b.ToTable("task_classes");
            b.HasKey(x => x.Name);
            b.Property(x => x.Name).HasMaxLength(128);
        });

        modelBuilder.Entity<CatalogModelEntity>(b =>
        {
            b.ToTable("catalog_models");
            b.HasKey(x => x.Id);
            b.Property(x => x.Id).HasMaxLength(256);
            b.HasMany(x => x.Offers).WithOne().HasForeignKey(x => x.ModelId).OnDelete(DeleteBehavior.Cascade);
        });

        modelBuilder.Entity<RuntimeEntity>(b =>
        {
            b.ToTable("runtimes");
            b.HasKey(x => x.LatticeId);
            b.Property(x => x.LatticeId).HasMaxLength(64);
            b.HasIndex(x => x.WorkspaceId);
            b.HasIndex(x => x.CredentialHash).IsUnique();
            b.HasIndex(x => x.BootstrapTokenHash).IsUnique();
            b.HasIndex(x => x.OwnerUserId);
            b.HasOne<WorkspaceEntity>().WithMany().HasForeignKey(x => x.WorkspaceId);
        });

        modelBuilder.Entity<UserEntity>(b =>
        {
            b.ToTable("users");
            b.HasKey(x => x.Id);
            b.Property(x => x.Id).HasMaxLength(64);
            b.Property(x => x.Email).HasMaxLength(320);
            b.HasIndex(x => x.Email).IsUnique();
        });

        modelBuilder.Entity<WorkspaceMemberEntity>(b =>
        {
            b.ToTable("workspace_members");
            b.HasKey(x => new { x.WorkspaceId, x.UserId });
            b.HasIndex(x => x.UserId);
            b.HasOne<WorkspaceEntity>().WithMany().HasForeignKey(x => x.WorkspaceId);
            b.HasOne<UserEntity>().WithMany().HasForeignKey(x => x.UserId).OnDelete(DeleteBehavior.Cascade);
        });

        modelBuilder.Entity<OAuthAppEntity>(b =>
        {
            b.ToTable("oauth_apps");
            b.HasKey(x => x.ClientId);
            b.Property(x => x.ClientId).HasMaxLength(100);
            b.HasIndex(x => x.WorkspaceId);
            b.HasOne<WorkspaceEntity>().WithMany().HasForeignKey(x => x.WorkspaceId);
        });

        modelBuilder.Entity<OAuthGrantEntity>(b =>
        {
            b.ToTable("oauth_grants");
            b.HasKey(x => x.Id);
            b.Property(x => x.Id).HasMaxLength(100);
            b.HasIndex(x => new { x.WorkspaceId, x.UserId });
            b.HasIndex(x => x.ClientId);
        });

        modelBuilder.Entity<RevocationEntity>(b =>
        {
            b.ToTable("revocations");
            b.HasKey(x => x.Seq);
            b.Property(x => x.Seq).ValueGeneratedOnAdd();
        });

        modelBuilder.Entity<InvitationEntity>(b =>
        {
            b.ToTable("invitations");
            b.HasKey(x => x.Id);
            b.Property(x => x.Id).HasMaxLength(64);
            b.Property(x => x.TokenHash).HasMaxLength(64);
            b.HasIndex(x => x.TokenHash).IsUnique();
            b.HasIndex(x => x.WorkspaceId);
            b.HasOne<WorkspaceEntity>().WithMany().HasForeignKey(x => x.WorkspaceId);
        });

        modelBuilder.ApplyConfiguration(new Metering.UsageRecordEntityConfiguration());
        var billing = new Billing.BillingEntityConfiguration();
        modelBuilder.ApplyConfiguration<Billing.BudgetEntity>(billing);
        modelBuilder.ApplyConfiguration<Billing.BudgetAlertEntity>(billing);
        modelBuilder.ApplyConfiguration<Billing.IdempotencyRecordEntity>(billing);
        modelBuilder.ApplyConfiguration<Billing.InvoiceEntity>(billing);
        modelBuilder.ApplyConfiguration<Billing.ExportCursorEntity>(billing);
        modelBuilder.ApplyConfiguration(new Responses.StoredResponseEntityConfiguration());
        modelBuilder.ApplyConfiguration(new Changes.ChangeEntityConfiguration());

        // OpenIddict's applications, authorizations, scopes and tokens, with string keys.
        modelBuilder.UseOpenIddict();

        modelBuilder.Entity<ModelOfferEntity>(b =>
        {
            b.ToTable("model_offers");
            b.HasKey(x => x.Id);
            b.Property(x => x.Id).HasMaxLength(64);
        });
    }

    private sealed class UnixMillisecondsConverter() : ValueConverter<DateTimeOffset, long>(
        v => v.ToUnixTimeMilliseconds(),
        v => DateTimeOffset.FromUnixTimeMilliseconds(v));
}
