using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Npgsql;

namespace Lattice.Testing;

/// <summary>
/// A real PostgreSQL server from the machine's packages (Debian's <c>postgresql</c>), made for a test run: a cluster
/// initialised in a temporary directory, listening on a free port on 127.0.0.1 only (its socket in that directory), and
/// deleted when disposed. Each test class asks for a database of its own (<see cref="CreateDatabaseAsync"/>).
/// </summary>
/// <remarks>
/// PostgreSQL refuses to run as root, and tests run as root here and in CI: then the cluster belongs to the
/// <c>postgres</c> user (which Debian's package creates) and its programs run as that user. Missing binaries fail the
/// test with what to install; nothing is skipped.
/// </remarks>
public sealed class PostgresServer : IAsyncDisposable
{
    private const string Superuser = "lattice";
    private const string ServiceUser = "postgres";
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(90);

    private readonly ConcurrentDictionary<string, Lazy<Task<string>>> _databases = new(StringComparer.Ordinal);
    private ProcessHost? _postgres;
    private string _bin = "";

    private PostgresServer(string directory, int port, bool asServiceUser)
    {
        Directory = directory;
        Port = port;
        AsServiceUser = asServiceUser;
    }

    /// <summary>The temporary directory: the cluster in <c>data/</c>, the server's socket beside it.</summary>
    public string Directory { get; }

    public int Port { get; }

    private bool AsServiceUser { get; }

    private string DataDirectory => Path.Combine(Directory, "data");

    /// <summary>A connection string to <paramref name="database"/> as the cluster's superuser (no password: trust on loopback).</summary>
    public string ConnectionString(string database = "postgres") =>
        new NpgsqlConnectionStringBuilder { Host = "127.0.0.1", Port = Port, Username = Superuser, Database = database }.ConnectionString;

    /// <summary>The same database as a <c>postgres://</c> URL, the form <c>Lattice:Database</c> and <c>--database</c> take.</summary>
    public string Url(string database) => $"postgres://{Superuser}@127.0.0.1:{Port.ToString(CultureInfo.InvariantCulture)}/{database}";

    /// <summary>initdb in a new temporary directory, then the server on a free loopback port; returns once it accepts connections.</summary>
    public static async Task<PostgresServer> StartAsync()
    {
        var bin = FindBinDirectory();
        var directory = Path.Combine(Path.GetTempPath(), "lattice-pg-" + Guid.NewGuid().ToString("N")[..12]);
        System.IO.Directory.CreateDirectory(directory);
        var server = new PostgresServer(directory, ProcessHost.FreeTcpPort(), Environment.IsPrivilegedProcess);
        try
        {
            if (server.AsServiceUser)
            {
                await RunAsync("chown", [$"{ServiceUser}:{ServiceUser}", directory]);
            }
            var (initdb, initdbArgs) = server.Invocation(Path.Combine(bin, "initdb"),
                "-D", server.DataDirectory, "-U", Superuser, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync");
            await RunAsync(initdb, initdbArgs, directory);
            server._bin = bin;
            await server.StartServerAsync();
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>The server on the cluster, as at the start: for a test that stops it (<see cref="StopServerAsync"/>) and brings it back.</summary>
    public async Task StartServerAsync()
    {
        if (_postgres is { HasExited: false })
        {
            throw new InvalidOperationException("The server is running.");
        }
        if (_postgres is not null)
        {
            await _postgres.DisposeAsync();
        }
        // fsync off: durability against an operating-system crash is not what these tests are about, and they share two cores.
        // Ready is the server's own log line (it logs to stderr; the shell folds that into stdout, which ProcessHost watches).
        string[] postgres =
        [
            Path.Combine(_bin, "postgres"), "-D", DataDirectory, "-k", Directory, "-h", "127.0.0.1",
            "-p", Port.ToString(CultureInfo.InvariantCulture),
            "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=300", "-c", "shared_buffers=32MB",
            "-c", "dynamic_shared_memory_type=mmap",
        ];
        // In the directory (the service user may not enter the test's own working directory).
        var (shell, shellArgs) = Invocation("/bin/sh", ["-c", $"cd '{Directory}' && exec \"$0\" \"$@\" 2>&1", .. postgres]);
        _postgres = await ProcessHost.StartAsync(shell, shellArgs, null,
            line => line.Contains("database system is ready to accept connections", StringComparison.Ordinal), StartTimeout);
    }

    /// <summary>
    /// Stops the server: a fast shutdown (clients are disconnected, the cluster is checkpointed), as an operator's
    /// restart does; a kill if it lingers. The cluster stays for <see cref="StartServerAsync"/>.
    /// </summary>
    public async Task StopServerAsync()
    {
        if (_postgres is not { HasExited: false } postgres)
        {
            return;
        }
        try
        {
            // SIGINT: PostgreSQL's fast shutdown.
            await RunAsync("kill", ["-INT", postgres.ProcessId.ToString(CultureInfo.InvariantCulture)]);
            await postgres.WaitForExitAsync(TimeSpan.FromSeconds(30));
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException)
        {
            // Killed with its whole tree.
        }
        await postgres.DisposeAsync();
    }

    /// <summary>Creates a database for one test class (once per <paramref name="name"/>) and returns its <c>postgres://</c> URL.</summary>
    public Task<string> CreateDatabaseAsync(string name)
    {
        var database = Sanitize(name);
        return _databases.GetOrAdd(database, d => new Lazy<Task<string>>(() => CreateAsync(d))).Value;
    }

    private async Task<string> CreateAsync(string database)
    {
        await using var connection = new NpgsqlConnection(ConnectionString());
        await connection.OpenAsync();
        await using var create = new NpgsqlCommand($"CREATE DATABASE \"{database}\"", connection);
        await create.ExecuteNonQueryAsync();
        return Url(database);
    }

    /// <summary>A database name PostgreSQL keeps as given: lowercase letters, digits and underscores, at most 63 bytes.</summary>
    private static string Sanitize(string name)
    {
        var builder = new StringBuilder(name.Length);
        foreach (var c in name.ToLowerInvariant())
        {
            builder.Append(c is >= 'a' and <= 'z' or >= '0' and <= '9' ? c : '_');
        }
        var text = builder.ToString();
        return text.Length > 63 ? text[..63] : text;
    }

    /// <summary>Where initdb and postgres are: <c>pg_config --bindir</c>, else the newest <c>/usr/lib/postgresql/*/bin</c>, else PATH.</summary>
    private static string FindBinDirectory()
    {
        static bool HasServer(string? dir) => dir is not null && File.Exists(Path.Combine(dir, "initdb")) && File.Exists(Path.Combine(dir, "postgres"));

        string? fromPgConfig = null;
        try
        {
            using var pgConfig = Process.Start(new ProcessStartInfo("pg_config", "--bindir") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false });
            if (pgConfig is not null)
            {
                fromPgConfig = pgConfig.StandardOutput.ReadToEnd().Trim();
                pgConfig.WaitForExit();
            }
        }
        catch (System.ComponentModel.Win32Exception)
        {
            // No pg_config (it comes with libpq-dev, not with the server): look where Debian puts the server.
        }
        if (HasServer(fromPgConfig))
        {
            return fromPgConfig!;
        }
        if (System.IO.Directory.Exists("/usr/lib/postgresql"))
        {
            var newest = System.IO.Directory.GetDirectories("/usr/lib/postgresql")
                .Select(d => Path.Combine(d, "bin"))
                .Where(HasServer)
                .OrderByDescending(d => int.TryParse(Path.GetFileName(Path.GetDirectoryName(d)), NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : 0)
                .FirstOrDefault();
            if (newest is not null)
            {
                return newest;
            }
        }
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            if (HasServer(dir))
            {
                return dir;
            }
        }
        throw new InvalidOperationException(
            "PostgreSQL's server programs (initdb, postgres) were not found (pg_config --bindir, /usr/lib/postgresql/*/bin, PATH). "
            + "The storage tests run against PostgreSQL too: install Debian's package (apt-get install postgresql), as .ci/run does.");
    }

    /// <summary>
    /// How to run <paramref name="program"/>: as it is, or as the service user through <c>setpriv</c> (runuser's sibling
    /// that execs instead of forking, so the process the test holds is the server itself and stopping it stops the server).
    /// </summary>
    private (string FileName, string[] Args) Invocation(string program, params string[] args) => AsServiceUser
        ? ("setpriv", ["--reuid", ServiceUser, "--regid", ServiceUser, "--init-groups", "--", program, .. args])
        : (program, args);

    private static async Task RunAsync(string program, IEnumerable<string> args, string? workingDirectory = null)
    {
        var start = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? "",
        };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {program}.");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(StartTimeout);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', start.ArgumentList)} exited with {process.ExitCode}:\n{await stdout}{await stderr}");
        }
    }

    /// <summary>Stops the server (a fast shutdown, then a kill if it lingers) and deletes the directory.</summary>
    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        await StopServerAsync();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
