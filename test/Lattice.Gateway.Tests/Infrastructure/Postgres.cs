using Lattice.Gateway.Persistence;
using Lattice.Testing;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Tests.Infrastructure;

/// <summary>
/// The PostgreSQL server of this test run, started once for every class in the <see cref="PostgresCollection"/> and
/// stopped (its directory deleted) after the last; each class makes its own database on it.
/// </summary>
public sealed class PostgresFixture : IAsyncLifetime
{
    private PostgresServer? _server;

    public PostgresServer Server => _server ?? throw new InvalidOperationException("The PostgreSQL server has not started.");

    /// <summary>A new database named after <paramref name="owner"/> (a test class), as a <c>postgres://</c> URL.</summary>
    public Task<string> DatabaseAsync(Type owner) => Server.CreateDatabaseAsync(owner.Name + "_" + Guid.NewGuid().ToString("N")[..8]);

    /// <summary>A context on <paramref name="url"/> the way the gateway opens one, without a gateway.</summary>
    public static LatticeDbContext Open(string url) =>
        new PostgresLatticeDbContext(new DbContextOptionsBuilder<PostgresLatticeDbContext>()
            .UseNpgsql(DatabaseLocation.Parse(url, out _)!.ConnectionString).Options);

    public async Task InitializeAsync() => _server = await PostgresServer.StartAsync();

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}

/// <summary>The test classes that run against PostgreSQL: one server for all of them.</summary>
[CollectionDefinition(Name)]
public sealed class PostgresCollection : ICollectionFixture<PostgresFixture>
{
    public const string Name = "postgres";
}
