using Microsoft.AspNetCore.Builder;

namespace Lattice.Gateway.Tests.Infrastructure;

/// <summary>Tearing down what the gateway tests start: hosts and their data directories.</summary>
public static class Hosts
{
    /// <summary>Stops a host gracefully (its background services end) and frees it.</summary>
    public static async Task ShutDownAsync(this WebApplication? app)
    {
        if (app is not null)
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    /// <summary>Deletes a test's data directory once SQLite has let go of the database files in it.</summary>
    public static void DeleteDataDirectory(string directory)
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        try
        {
            Directory.Delete(directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
