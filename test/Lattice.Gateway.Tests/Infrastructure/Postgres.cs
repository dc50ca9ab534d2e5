using Lattice.Gateway.Persistence;
using Lattice.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

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

    /// <summary>Fails unless <paramref name="services"/> (a gateway's) store on PostgreSQL: a test meant for it must not pass on SQLite.</summary>
    public static void AssertOnPostgres(IServiceProvider services)
    {
        using var scope = services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        Assert.True(db.Database.IsNpgsql(), $"The gateway stores on {db.Database.ProviderName}, not PostgreSQL.");
        Assert.IsType<PostgresLatticeDbContext>(db);
    }

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

/// <summary>The gateway of <see cref="GatewayFixture"/> on a PostgreSQL database of its own.</summary>
public sealed class PostgresGatewayFixture(PostgresFixture postgres) : GatewayFixture
{
    protected override async Task<string?> DatabaseAsync() => await postgres.DatabaseAsync(GetType());

    protected override void Started() => PostgresFixture.AssertOnPostgres(Factory.Services);
}

/// <summary>The gateway of <see cref="Identity.OAuthGateway"/> on a PostgreSQL database of its own.</summary>
public sealed class PostgresOAuthGateway(PostgresFixture postgres) : IAsyncLifetime
{
    private Identity.OAuthGateway? _gateway;

    public Identity.OAuthGateway Gateway => _gateway ?? throw new InvalidOperationException("Not started.");

    public async Task InitializeAsync()
    {
        _gateway = Identity.OAuthGateway.With(new() { ["Lattice:Database"] = await postgres.DatabaseAsync(typeof(Identity.OAuthGateway)) });
        await _gateway.InitializeAsync();
        PostgresFixture.AssertOnPostgres(_gateway.Services);
    }

    public async Task DisposeAsync()
    {
        if (_gateway is not null)
        {
            await _gateway.DisposeAsync();
        }
    }
}
