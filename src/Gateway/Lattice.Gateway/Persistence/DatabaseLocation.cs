using System.Data.Common;
using Npgsql;

namespace Lattice.Gateway.Persistence;

/// <summary>Which database engine holds the gateway's state.</summary>
public enum DatabaseProvider
{
    /// <summary>An embedded SQLite file: one node (the default).</summary>
    Sqlite,

    /// <summary>A PostgreSQL server: the production store, shared by every node.</summary>
    Postgres,
}

/// <summary>The store the gateway uses: its engine and an ADO.NET connection string for that engine's provider.</summary>
public sealed record DatabaseLocation(DatabaseProvider Provider, string ConnectionString)
{
    /// <summary>
    /// Reads <c>Lattice:Database</c>: a <c>postgres://user:password@host:port/database?sslmode=require</c> URL or an Npgsql
    /// connection string (<c>Host=…;Database=…</c>) chooses PostgreSQL; a SQLite connection string (<c>Data Source=…</c>)
    /// chooses that file. Returns null and says why when the text is neither.
    /// </summary>
    public static DatabaseLocation? Parse(string text, out string? error)
    {
        error = null;
        text = text.Trim();
        if (text.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase) || text.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase))
        {
            var connectionString = FromUrl(text, out error);
            return connectionString is null ? null : new DatabaseLocation(DatabaseProvider.Postgres, connectionString);
        }
        DbConnectionStringBuilder keywords;
        try
        {
            keywords = new DbConnectionStringBuilder { ConnectionString = text };
        }
        catch (ArgumentException)
        {
            error = "is neither a postgres:// URL nor a connection string (Host=…;Database=… for PostgreSQL, Data Source=… for SQLite).";
            return null;
        }
        if (keywords.ContainsKey("Data Source") || keywords.ContainsKey("DataSource") || keywords.ContainsKey("Filename"))
        {
            return new DatabaseLocation(DatabaseProvider.Sqlite, text);
        }
        if (keywords.ContainsKey("Host") || keywords.ContainsKey("Server"))
        {
            try
            {
                return new DatabaseLocation(DatabaseProvider.Postgres, new NpgsqlConnectionStringBuilder(text).ConnectionString);
            }
            catch (ArgumentException e)
            {
                error = $"is not a valid PostgreSQL connection string: {e.Message}";
                return null;
            }
        }
        error = "names no server (Host=…) and no SQLite file (Data Source=…).";
        return null;
    }

    /// <summary>The libpq URL form (<c>postgres://user:password@host:port/database?key=value</c>) as an Npgsql connection string.</summary>
    private static string? FromUrl(string url, out string? error)
    {
        error = null;
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Host.Length == 0)
        {
            error = "is not a valid postgres:// URL (postgres://user:password@host:port/database).";
            return null;
        }
        var builder = new NpgsqlConnectionStringBuilder { Host = uri.Host };
        if (!uri.IsDefaultPort && uri.Port > 0)
        {
            builder.Port = uri.Port;
        }
        if (uri.UserInfo.Length > 0)
        {
            var colon = uri.UserInfo.IndexOf(':', StringComparison.Ordinal);
            builder.Username = Uri.UnescapeDataString(colon < 0 ? uri.UserInfo : uri.UserInfo[..colon]);
            if (colon >= 0)
            {
                builder.Password = Uri.UnescapeDataString(uri.UserInfo[(colon + 1)..]);
            }
        }
        var database = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/'));
        if (database.Length > 0)
        {
            builder.Database = database;
        }
        foreach (var pair in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            var key = Uri.UnescapeDataString(equals < 0 ? pair : pair[..equals]);
            var value = equals < 0 ? "" : Uri.UnescapeDataString(pair[(equals + 1)..]);
            try
            {
                // Npgsql's keywords, case-insensitive: sslmode, timeout, pooling, maximum pool size…
                builder[key] = value;
            }
            catch (Exception e) when (e is ArgumentException or FormatException)
            {
                error = $"has a parameter Npgsql does not take: '{key}={value}'.";
                return null;
            }
        }
        return builder.ConnectionString;
    }
}
