using Lattice.Gateway.Hosting;

var app = GatewayApp.Build(GatewayApp.CreateBuilder(args));
await GatewayApp.InitializeAsync(app);
await app.RunAsync();

/// <summary>Entry point, visible to functional tests.</summary>
public partial class Program;
