using Lattice.Cli.Commands;

namespace Lattice.Cli.Tests.Commands;

/// <summary><c>lattice up --database</c>: a value that names no database stops it before anything starts, saying why.</summary>
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
}
