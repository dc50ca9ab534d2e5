using System.CommandLine;
using Lattice.Gateway.Console;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Identity;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Runtimes;
using Lattice.Runtime.Config;
using Lattice.Runtime.Connection;
using Lattice.Runtime.Engines;
using Lattice.Runtime.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Lattice.Cli.Commands;

/// <summary>
/// <c>lattice up</c>: the whole stack on this machine with embedded defaults — the gateway (SQLite under the data
/// directory) and a local daemon paired to it as a personal runtime of the dev workspace, serving the bundled models.
/// </summary>
internal static class UpCommand
{
    public static Command Create()
    {
        var port = new Option<int>("--port") { Description = "Port to listen on (127.0.0.1); 0 picks a free one.", DefaultValueFactory = _ => 8080 };
        var dataDir = new Option<string>("--data-dir") { Description = "Where the database, the env file and the runtime credential live.", DefaultValueFactory = _ => EnvFile.DefaultDataDirectory };
        var config = new Option<string?>("--config") { Description = "Daemon config (engines and models); default: LATTICE_CONFIG_PATH, ~/.lattice/config.toml, else the bundled models." };
        var noDaemon = new Option<bool>("--no-daemon") { Description = "Run the gateway only." };
        var database = new Option<string?>("--database")
        {
            Description = "The store: postgres://user:password@host:port/database (or Host=…;Database=…) for PostgreSQL; default: SQLite in the data directory.",
        };
        var command = new Command("up", "Start Lattice on this machine: the gateway and a local runtime serving real models.") { port, dataDir, config, noDaemon, database };
        command.SetAction((parse, cancellationToken) => RunAsync(parse.GetValue(port), Path.GetFullPath(parse.GetValue(dataDir)!), parse.GetValue(config), parse.GetValue(noDaemon), parse.GetValue(database), cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(int port, string dataDirectory, string? configPath, bool noDaemon, string? database, CancellationToken cancellationToken)
    {
        if (port is < 0 or > 65535)
        {
            await Console.Error.WriteLineAsync($"--port must be between 0 and 65535, not {port}.");
            return 2;
        }
        if (database is not null && DatabaseLocation.Parse(database, out var databaseError) is null)
        {
            await Console.Error.WriteLineAsync($"--database {databaseError}");
            return 2;
        }
        Directory.CreateDirectory(dataDirectory);

        DaemonConfig? daemonConfig = null;
        if (!noDaemon)
        {
            daemonConfig = DaemonCommands.LoadConfig(configPath, dataDirectory);
            if (daemonConfig is null)
            {
                return 2;
            }
            if (daemonConfig.Engines.Count == 0)
            {
                daemonConfig = daemonConfig with { Engines = BundledModels.Engines };
            }
        }

        var builder = GatewayApp.CreateBuilder([]);
        var settings = new Dictionary<string, string?>
        {
            [$"{GatewayOptions.Section}:{nameof(GatewayOptions.DataDirectory)}"] = dataDirectory,
        };
        if (database is not null)
        {
            settings[$"{GatewayOptions.Section}:{nameof(GatewayOptions.Database)}"] = database;
        }
        // The issuer and invitation links name the address the gateway listens on, unless the environment names
        // another (Lattice__PublicUrl); with --port 0 the gateway derives it from the port it was given.
        var publicUrlKey = $"{GatewayOptions.Section}:{nameof(GatewayOptions.PublicUrl)}";
        if (port != 0 && string.IsNullOrEmpty(builder.Configuration[publicUrlKey]))
        {
            settings[publicUrlKey] = $"http://127.0.0.1:{port}";
        }
        // Metrics for whoever is on this machine (a local Prometheus or curl), unless the environment says otherwise.
        const string metricsLoopbackKey = "Lattice:Metrics:AllowLoopback";
        if (string.IsNullOrEmpty(builder.Configuration[metricsLoopbackKey]))
        {
            settings[metricsLoopbackKey] = "true";
        }
        builder.Configuration.AddInMemoryCollection(settings);
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        var app = GatewayApp.Build(builder);
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch (Npgsql.NpgsqlException ex)
        {
            // A server that is down or refuses us: say so plainly rather than with a stack trace.
            await Console.Error.WriteLineAsync("Could not open the PostgreSQL database: " + ex.Message);
            await app.DisposeAsync();
            return 1;
        }

        DevBootstrap? created;
        await using (var scope = app.Services.CreateAsyncScope())
        {
            created = await scope.ServiceProvider.GetRequiredService<DatabaseInitializer>().BootstrapDevAsync(cancellationToken);
        }

        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');
        var baseUrl = address + "/v1";
        var env = EnvFile.Read(dataDirectory);
        if (created is not null)
        {
            env["LATTICE_API_KEY"] = created.ApiKey;
            env["LATTICE_ADMIN_KEY"] = created.AdminKey;
            env["LATTICE_WORKSPACE_ID"] = created.WorkspaceId;
            env["LATTICE_USER_EMAIL"] = created.UserEmail;
            env["LATTICE_USER_PASSWORD"] = created.UserPassword;
        }
        env["LATTICE_BASE_URL"] = baseUrl;

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, app.Lifetime.ApplicationStopping);
        Task<LinkExit>? daemon = null;
        EngineSet? engines = null;
        string? runtimeModel = null;
        if (daemonConfig is not null && env.TryGetValue("LATTICE_WORKSPACE_ID", out var workspaceId))
        {
            static void Say(string line) => Console.WriteLine($"  {line}");
            Console.WriteLine("  Loading models…");
            try
            {
                engines = await DaemonRunner.LoadEnginesAsync(daemonConfig, Say, stop.Token);
            }
            catch (Exception ex) when (ex is ConfigException or IOException or InvalidOperationException or ArgumentException)
            {
                await Console.Error.WriteLineAsync("Could not load the models: " + ex.Message);
                await app.StopAsync(CancellationToken.None);
                return 2;
            }
            var credentials = await EnsurePairedAsync(app, address, workspaceId, dataDirectory, stop.Token);
            runtimeModel = "lattice:personal:" + credentials.LatticeId;
            env["LATTICE_RUNTIME_MODEL"] = runtimeModel;
            var connected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            // The daemon serves this gateway, whatever nodes the config file names.
            daemon = DaemonRunner.RunAsync(credentials, engines, daemonConfig with { GatewayUrls = [] }, line =>
            {
                if (line.StartsWith("connected", StringComparison.Ordinal))
                {
                    connected.TrySetResult();
                }
                else if (!line.StartsWith("connecting", StringComparison.Ordinal))
                {
                    Say("runtime: " + line);
                }
            }, stop.Token);
            await Task.WhenAny(connected.Task, daemon, Task.Delay(TimeSpan.FromSeconds(30), stop.Token));
        }
        EnvFile.Write(dataDirectory, env);

        var apiKey = env.GetValueOrDefault("LATTICE_API_KEY", "(see `lattice keys create`)");
        Console.WriteLine();
        Console.WriteLine("  Lattice is running.");
        Console.WriteLine();
        Console.WriteLine($"  Base URL   {baseUrl}");
        Console.WriteLine($"  Public URL {app.Services.GetRequiredService<PublicUrl>().Value.AbsoluteUri.TrimEnd('/')}");
        Console.WriteLine($"  API key    {apiKey}{(created is null ? "" : "   (new: shown here and kept in the env file)")}");
        Console.WriteLine($"  Data       {dataDirectory}");
        Console.WriteLine($"  Env file   {EnvFile.PathIn(dataDirectory)}   (set -a; . {EnvFile.PathIn(dataDirectory)}; set +a)");
        var consoleUrl = app.Services.GetRequiredService<PublicUrl>().Combine(ConsoleClient.BasePath);
        string? signInLink = null;
        if (env.TryGetValue("LATTICE_USER_EMAIL", out var userEmail) && env.TryGetValue("LATTICE_USER_PASSWORD", out var userPassword))
        {
            signInLink = await SignInLinkAsync(app, userEmail, userPassword, cancellationToken);
            Console.WriteLine();
            Console.WriteLine($"  Console    {consoleUrl}");
            if (signInLink is not null)
            {
                Console.WriteLine($"             {signInLink}   (signs {userEmail} in with one click; works once)");
            }
            Console.WriteLine($"  Sign in    {address}/account/login");
            Console.WriteLine($"  E-mail     {userEmail}");
            Console.WriteLine($"  Password   {userPassword}   (kept in the env file)");
            Console.WriteLine("             From a terminal: lattice login");
        }
        else
        {
            Console.WriteLine();
            Console.WriteLine($"  Console    {consoleUrl}");
        }
        if (runtimeModel is not null && engines is not null)
        {
            Console.WriteLine();
            Console.WriteLine($"  Model      {runtimeModel}   (this machine)");
            foreach (var c in engines.Capabilities)
            {
                Console.WriteLine($"             {c.Task,-22} {c.Model} ({c.Engine})");
            }
            Console.WriteLine();
            Console.WriteLine("  Try it:");
            Console.WriteLine($"    curl {baseUrl}/chat/completions -H \"Authorization: Bearer {apiKey}\" -H 'content-type: application/json' \\");
            Console.WriteLine($"      -d '{{\"model\":\"{runtimeModel}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Once upon a time\"}}],\"max_tokens\":40}}'");
            Console.WriteLine();
            Console.WriteLine("    # Python: pip install openai");
            Console.WriteLine($"    from openai import OpenAI");
            Console.WriteLine($"    client = OpenAI(base_url=\"{baseUrl}\", api_key=\"{apiKey}\")");
            Console.WriteLine($"    print(client.chat.completions.create(model=\"{runtimeModel}\", messages=[{{\"role\": \"user\", \"content\": \"Once upon a time\"}}]).choices[0].message.content)");
        }
        else
        {
            Console.WriteLine();
            Console.WriteLine($"  curl {baseUrl}/models -H \"Authorization: Bearer {apiKey}\"");
        }
        Console.WriteLine();
        Console.WriteLine("  Press Ctrl-C to stop.");
        Console.WriteLine($"LATTICE_BASE_URL={baseUrl}");
        Console.WriteLine($"LATTICE_API_KEY={apiKey}");
        if (runtimeModel is not null)
        {
            Console.WriteLine($"LATTICE_RUNTIME_MODEL={runtimeModel}");
        }
        Console.WriteLine($"LATTICE_CONSOLE_URL={consoleUrl}");
        if (signInLink is not null)
        {
            Console.WriteLine($"LATTICE_CONSOLE_SIGN_IN_URL={signInLink}");
        }
        Console.Out.Flush();

        await app.WaitForShutdownAsync(cancellationToken);
        await stop.CancelAsync();
        if (daemon is not null)
        {
            await daemon.ContinueWith(_ => { }, TaskScheduler.Default);
        }
        if (engines is not null)
        {
            await engines.DisposeAsync();
        }
        await app.DisposeAsync();
        Console.WriteLine("  Lattice stopped.");
        return 0;
    }

    /// <summary>
    /// A one-click sign-in link for the dev user (<see cref="SignInLinks"/>: single use, in this process's memory), or null
    /// when the env file's password no longer signs that user in (someone changed it).
    /// </summary>
    private static async Task<string?> SignInLinkAsync(WebApplication app, string email, string password, CancellationToken cancellationToken)
    {
        await using var scope = app.Services.CreateAsyncScope();
        var user = await scope.ServiceProvider.GetRequiredService<UserService>().VerifyAsync(email, password, cancellationToken);
        return user is null ? null : app.Services.GetRequiredService<PublicUrl>().Combine(app.Services.GetRequiredService<SignInLinks>().Issue(user.Id));
    }

    /// <summary>The dev workspace's local runtime: reuses the stored credential while its record is live, else creates and pairs a new one.</summary>
    private static async Task<RuntimeCredentials> EnsurePairedAsync(WebApplication app, string origin, string workspaceId, string dataDirectory, CancellationToken cancellationToken)
    {
        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        var existing = RuntimeCredentials.Load(dataDirectory);
        if (existing is not null)
        {
            var record = await db.Runtimes.AsNoTracking().FirstOrDefaultAsync(r => r.LatticeId == existing.LatticeId, cancellationToken);
            if (record is { RevokedAt: null } && record.WorkspaceId == workspaceId)
            {
                var moved = existing with { Gateway = origin, Gateways = null };
                moved.Save(dataDirectory);
                return moved;
            }
        }
        var (entity, token, error) = await RuntimeEndpoints.CreateRecordAsync(app.Services.GetRequiredService<RuntimeStore>(),
            app.Services.GetRequiredService<TimeProvider>(), workspaceId, new CreateRuntimeRequest(Environment.MachineName + " (lattice up)", "local-model"), hosted: false);
        if (entity is null)
        {
            throw new InvalidOperationException(error?.Message);
        }
        var credentials = await RuntimeCredentials.PairAsync(new Uri(origin), token!, cancellationToken);
        credentials.Save(dataDirectory);
        return credentials;
    }
}
