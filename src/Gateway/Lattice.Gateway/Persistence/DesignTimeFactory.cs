using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace Lattice.Gateway.Persistence;

/// <summary>Lets <c>dotnet ef migrations add … --context LatticeDbContext</c> build the SQLite context without starting the host.</summary>
internal sealed class DesignTimeFactory : IDesignTimeDbContextFactory<LatticeDbContext>
{
    public LatticeDbContext CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<LatticeDbContext>().UseSqlite("Data Source=design.db").Options);
}

/// <summary>
/// Lets <c>dotnet ef migrations add … --context PostgresLatticeDbContext --output-dir Persistence/Migrations/Postgres</c>
/// build the PostgreSQL context; adding a migration connects to nothing.
/// </summary>
internal sealed class PostgresDesignTimeFactory : IDesignTimeDbContextFactory<PostgresLatticeDbContext>
{
    public PostgresLatticeDbContext CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<PostgresLatticeDbContext>().UseNpgsql("Host=localhost;Database=lattice_design").Options);
}
