using Lattice.Gateway.Persistence;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Migrations;
using Microsoft.EntityFrameworkCore.Infrastructure;

namespace Lattice.Gateway.Tests.Persistence;

/// <summary>
/// Each provider's migrations build its schema on an empty database, and its snapshot is the model: a model change
/// without a migration for both SQLite and PostgreSQL fails here.
/// </summary>
public abstract class MigrationTests
{
    protected abstract Task<LatticeDbContext> OpenEmptyAsync();

    [Fact]
    public async Task Migrations_apply_on_an_empty_database_and_leave_no_model_change_pending()
    {
        await using var db = await OpenEmptyAsync();
        Assert.Empty(await db.Database.GetAppliedMigrationsAsync());

        await db.Database.MigrateAsync();

        var known = db.GetService<IMigrationsAssembly>().Migrations.Keys.ToList();
        Assert.NotEmpty(known);
        Assert.Equal(known, await db.Database.GetAppliedMigrationsAsync());
        Assert.False(db.Database.HasPendingModelChanges(), "The model has changed since this provider's last migration.");
        // Every table answers, the OpenIddict ones too.
        Assert.Equal(0, await db.UsageRecords.CountAsync());
        Assert.Equal(0, await db.Set<OpenIddict.EntityFrameworkCore.Models.OpenIddictEntityFrameworkCoreToken>().CountAsync());
    }

    [Fact]
    public async Task Each_provider_sees_only_its_own_migrations()
    {
        await using var db = await OpenEmptyAsync();
        var namespaces = db.GetService<IMigrationsAssembly>().Migrations.Values.Select(t => t.Namespace).Distinct().ToList();
        Assert.Equal([ExpectedNamespace], namespaces);
    }

    protected abstract string ExpectedNamespace { get; }
}

public sealed class SqliteMigrationTests : MigrationTests, IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "lattice-migrations-" + Guid.NewGuid().ToString("N"));

    protected override string ExpectedNamespace => "Lattice.Gateway.Persistence.Migrations.Sqlite";

    protected override Task<LatticeDbContext> OpenEmptyAsync()
    {
        Directory.CreateDirectory(_dir);
        return Task.FromResult(new LatticeDbContext(new DbContextOptionsBuilder<LatticeDbContext>()
            .UseSqlite($"Data Source={Path.Combine(_dir, "lattice.db")}").Options));
    }

    public void Dispose() => Hosts.DeleteDataDirectory(_dir);
}

[Collection(PostgresCollection.Name)]
public sealed class PostgresMigrationTests(PostgresFixture postgres) : MigrationTests
{
    protected override string ExpectedNamespace => "Lattice.Gateway.Persistence.Migrations.Postgres";

    protected override async Task<LatticeDbContext> OpenEmptyAsync() => PostgresFixture.Open(await postgres.DatabaseAsync(GetType()));
}
