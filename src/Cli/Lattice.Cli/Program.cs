using System.CommandLine;
using Lattice.Cli.Commands;

var root = new RootCommand("Lattice: an OpenAI-compatible control plane for AI compute.")
{
    UpCommand.Create(),
    KeysCommand.Create(),
    AppsCommand.Create(),
    MembersCommand.Create(),
    UsageCommand.Create(),
    InvoicesCommand.Create(),
    LoginCommands.CreateLogin(),
    LoginCommands.CreateLogout(),
    DaemonCommands.CreateRelay(),
    DaemonCommands.CreateDaemon(),
    DaemonCommands.CreateStatus(),
    DaemonCommands.CreatePing(),
};
return await root.Parse(args).InvokeAsync();
