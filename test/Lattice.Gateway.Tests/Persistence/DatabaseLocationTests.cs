using Lattice.Gateway.Hosting;
using Lattice.Gateway.Persistence;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lattice.Gateway.Tests.Persistence;

/// <summary><c>Lattice:Database</c>: the forms that choose PostgreSQL or SQLite, and what is refused at start-up.</summary>
public sealed class DatabaseLocationTests
{
    [Fact]
    public void A_postgres_url_becomes_an_npgsql_connection_string()
    {
        var location = DatabaseLocation.Parse("postgres://lattice:p%40ss%3Aword@db.internal:6543/lattice_prod?sslmode=require&Maximum%20Pool%20Size=50", out var error);

        Assert.Null(error);
        Assert.Equal(DatabaseProvider.Postgres, location!.Provider);
        var builder = new NpgsqlConnectionStringBuilder(location.ConnectionString);
        Assert.Equal("db.internal", builder.Host);
        Assert.Equal(6543, builder.Port);
        Assert.Equal("lattice", builder.Username);
        Assert.Equal("p@ss:word", builder.Password);
        Assert.Equal("lattice_prod", builder.Database);
        Assert.Equal(SslMode.Require, builder.SslMode);
        Assert.Equal(50, builder.MaxPoolSize);
    }

    [Fact]
    public void A_postgresql_url_without_port_or_password_takes_the_defaults()
    {
        var location = DatabaseLocation.Parse("postgresql://app@127.0.0.1/usage", out _);

        var builder = new NpgsqlConnectionStringBuilder(location!.ConnectionString);
        Assert.Equal(DatabaseProvider.Postgres, location.Provider);
        Assert.Equal(5432, builder.Port);
        Assert.Equal("app", builder.Username);
        Assert.Null(builder.Password);
        Assert.Equal("usage", builder.Database);
    }

    [Theory]
    [InlineData("Host=127.0.0.1;Port=5433;Database=lattice;Username=lattice", DatabaseProvider.Postgres)]
    [InlineData("Server=db;Database=lattice", DatabaseProvider.Postgres)]
    [InlineData("Data Source=/var/lib/lattice/lattice.db", DatabaseProvider.Sqlite)]
    public void Connection_strings_choose_their_provider(string text, DatabaseProvider provider)
    {
        Assert.Equal(provider, DatabaseLocation.Parse(text, out _)!.Provider);
    }

    [Theory]
    [InlineData("postgres://", "is not a valid postgres:// URL (postgres://user:password@host:port/database).")]
    [InlineData("postgres://db/lattice?color=blue", "has a parameter Npgsql does not take: 'color=blue'.")]
    [InlineData("Database=lattice", "names no server (Host=…) and no SQLite file (Data Source=…).")]
    [InlineData("mysql://db/lattice", "is neither a postgres:// URL nor a connection string (Host=…;Database=… for PostgreSQL, Data Source=… for SQLite).")]
    public void Anything_else_is_refused_with_the_reason(string text, string expected)
    {
        Assert.Null(DatabaseLocation.Parse(text, out var error));
        Assert.Equal(expected, error);
    }

    [Fact]
    public void Unset_is_sqlite_in_the_data_directory()
    {
        var location = new GatewayOptions { DataDirectory = "/srv/lattice" }.ResolveDatabase();

        Assert.Equal(new DatabaseLocation(DatabaseProvider.Sqlite, "Data Source=/srv/lattice/lattice.db"), location);
    }

    [Fact]
    public async Task A_bad_setting_stops_the_gateway_at_start_naming_it()
    {
        var builder = GatewayApp.CreateBuilder([]);
        var dataDir = Path.Combine(Path.GetTempPath(), "lattice-dbsetting-" + Guid.NewGuid().ToString("N"));
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Lattice:DataDirectory"] = dataDir,
            ["Lattice:Database"] = "postgres://db/lattice?color=blue",
        });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        WebApplication? app = null;
        try
        {
            // Refused when the options are first read: while the host is built, or at the latest when it starts.
            var error = await Assert.ThrowsAsync<OptionsValidationException>(async () =>
            {
                app = GatewayApp.Build(builder);
                await app.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
            });
            Assert.Contains("Lattice:Database has a parameter Npgsql does not take: 'color=blue'.", error.Message, StringComparison.Ordinal);
        }
        finally
        {
            if (app is not null)
            {
                await app.DisposeAsync();
            }
            Infrastructure.Hosts.DeleteDataDirectory(dataDir);
        }
    }
}
