using System.CommandLine;
using Lattice.Cli.Commands;
using Lattice.Gateway.Hosting;

// `lattice up` is a long-running gateway: fix its GC gen-0 budget before anything starts (may re-execute this process).
if (args is ["up", ..])
{
    Gen0Budget.EnsureConfigured();
}

var root = new RootCommand("Lattice: an OpenAI-compatible control plane for AI compute.")
{
    UpCommand.Create(),
    KeysCommand.Create(),
    AppsCommand.Create(),
    MembersCommand.Create(),
    UsageCommand.Create(),
    InvoicesCommand.Create(),
    LimitsCommand.Create(),
    BudgetsCommand.Create(),
    LoginCommands.CreateLogin(),
    LoginCommands.CreateLogout(),
    DaemonCommands.CreateRelay(),
    DaemonCommands.CreateDaemon(),
    DaemonCommands.CreateStatus(),
    DaemonCommands.CreatePing(),
};
var parse = root.Parse(args);
var exit = await parse.InvokeAsync();
// A command line that does not parse is bad input, like a bad value a command checks itself: exit code 2.
return parse.Errors.Count > 0 ? 2 : exit;
