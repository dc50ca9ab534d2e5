using Lattice.Cli.Commands;

namespace Lattice.Cli.Tests.Commands;

/// <summary><c>lattice up --database</c>: a value that names no database stops it before anything starts, saying why.</summary>
[Collection(ConsoleCollection.Name)]
public sealed class UpDatabaseTests
{
    [Theory]
    [InlineData("mysql://db/lattice", "--database is neither a postgres:// URL nor a connection string (Host=…;Database=… for PostgreSQL, Data Source=… for SQLite).")]
    [InlineData("postgres://db/lattice?colour=blue", "--database has a parameter Npgsql does not take: 'colour=blue'.")]
    public async Task A_value_that_is_no_database_exits_with_2_and_the_reason(string value, string expected)
    {
        var dataDir = Path.Combine(Path.GetTempPath(), "lattice-up-db-" + Guid.NewGuid().ToString("N"));
        var error = new StringWriter();
        var original = Console.Error;
        Console.SetError(error);
        int exit;
        try
        {
            exit = await UpCommand.Create().Parse(["--database", value, "--no-daemon", "--data-dir", dataDir]).InvokeAsync();
        }
        finally
        {
            Console.SetError(original);
        }

        Assert.Equal(2, exit);
        Assert.Equal(expected, error.ToString().TrimEnd());
        // Refused before the data directory was made.
        Assert.False(Directory.Exists(dataDir));
    }

    [Fact]
    public async Task A_server_that_cannot_be_reached_exits_with_1_and_says_so()
    {
        // A port nothing listens on: the connection is refused at once.
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        var dataDir = Path.Combine(Path.GetTempPath(), "lattice-up-db-" + Guid.NewGuid().ToString("N"));
        var error = new StringWriter();
        var original = Console.Error;
        Console.SetError(error);
        int exit;
        try
        {
            exit = await UpCommand.Create().Parse(["--database", $"postgres://lattice@127.0.0.1:{port}/lattice", "--no-daemon", "--port", "0", "--data-dir", dataDir])
                .InvokeAsync().WaitAsync(TimeSpan.FromSeconds(60));
        }
        finally
        {
            Console.SetError(original);
            try
            {
                Directory.Delete(dataDir, recursive: true);
            }
            catch (IOException)
            {
            }
        }

        Assert.Equal(1, exit);
        Assert.StartsWith("Could not open the PostgreSQL database: ", error.ToString(), StringComparison.Ordinal);
    }
}
