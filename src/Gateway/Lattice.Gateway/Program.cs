using Lattice.Gateway.Hosting;

Gen0Budget.EnsureConfigured();
var app = GatewayApp.Build(GatewayApp.CreateBuilder(args));
await app.RunAsync();
