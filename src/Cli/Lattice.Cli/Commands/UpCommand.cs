using System.CommandLine;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Persistence;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Lattice.Cli.Commands;

/// <summary><c>lattice up</c>: the whole stack on this machine with embedded defaults (SQLite under the data directory).</summary>
internal static class UpCommand
{
    public static Command Create()
    {
        var port = new Option<int>("--port") { Description = "Port to listen on (127.0.0.1); 0 picks a free one.", DefaultValueFactory = _ => 8080 };
        var dataDir = new Option<string>("--data-dir") { Description = "Where the database and the env file live.", DefaultValueFactory = _ => EnvFile.DefaultDataDirectory };
        var command = new Command("up", "Start Lattice on this machine with embedded defaults.") { port, dataDir };
        command.SetAction((parse, cancellationToken) => RunAsync(parse.GetValue(port), Path.GetFullPath(parse.GetValue(dataDir)!), cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(int port, string dataDirectory, CancellationToken cancellationToken)
    {
        if (port is < 0 or > 65535)
        {
            await Console.Error.WriteLineAsync($"--port must be between 0 and 65535, not {port}.");
            return 2;
        }
        Directory.CreateDirectory(dataDirectory);

        var builder = GatewayApp.CreateBuilder([]);
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            [$"{GatewayOptions.Section}:{nameof(GatewayOptions.DataDirectory)}"] = dataDirectory,
        });
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        var app = GatewayApp.Build(builder);
        await app.StartAsync(cancellationToken);

        DevBootstrap? created;
        await using (var scope = app.Services.CreateAsyncScope())
        {
            created = await scope.ServiceProvider.GetRequiredService<DatabaseInitializer>().BootstrapDevAsync(cancellationToken);
        }

        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var baseUrl = address.TrimEnd('/') + "/v1";

        var env = EnvFile.Read(dataDirectory);
        if (created is not null)
        {
            env["LATTICE_API_KEY"] = created.ApiKey;
            env["LATTICE_ADMIN_KEY"] = created.AdminKey;
            env["LATTICE_WORKSPACE_ID"] = created.WorkspaceId;
        }
        env["LATTICE_BASE_URL"] = baseUrl;
        EnvFile.Write(dataDirectory, env);

        var apiKey = env.GetValueOrDefault("LATTICE_API_KEY", "(see `lattice keys create`)");
        Console.WriteLine();
        Console.WriteLine("  Lattice is running.");
        Console.WriteLine();
        Console.WriteLine($"  Base URL   {baseUrl}");
        Console.WriteLine($"  API key    {apiKey}{(created is null ? "" : "   (new: shown here and kept in the env file)")}");
        Console.WriteLine($"  Data       {dataDirectory}");
        Console.WriteLine($"  Env file   {EnvFile.PathIn(dataDirectory)}   (set -a; . {EnvFile.PathIn(dataDirectory)}; set +a)");
        Console.WriteLine();
        Console.WriteLine($"  curl {baseUrl}/models -H \"Authorization: Bearer $LATTICE_API_KEY\"");
        Console.WriteLine();
        Console.WriteLine("  Press Ctrl-C to stop.");
        Console.WriteLine($"LATTICE_BASE_URL={baseUrl}");
        Console.WriteLine($"LATTICE_API_KEY={apiKey}");
        Console.Out.Flush();

        await app.WaitForShutdownAsync(cancellationToken);
        await app.DisposeAsync();
        Console.WriteLine("  Lattice stopped.");
        return 0;
    }
}
