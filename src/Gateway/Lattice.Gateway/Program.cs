using System.Reflection;
using Lattice.Gateway.Hosting;

// Only when this program is the process (not when a test host runs this entry point to build the app in-process).
if (Assembly.GetEntryAssembly() == typeof(Gen0Budget).Assembly)
{
    Gen0Budget.EnsureConfigured();
}
var app = GatewayApp.Build(GatewayApp.CreateBuilder(args));
await app.RunAsync();
