using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace Lattice.Gateway.Persistence;

/// <summary>Lets <c>dotnet ef migrations add</c> build the context without starting the host.</summary>
internal sealed class DesignTimeFactory : IDesignTimeDbContextFactory<LatticeDbContext>
{
    public LatticeDbContext CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<LatticeDbContext>().UseSqlite("Data Source=design.db").Options);
}
