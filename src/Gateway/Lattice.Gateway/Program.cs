using Lattice.Gateway.Hosting;

var app = GatewayApp.Build(GatewayApp.CreateBuilder(args));
await app.RunAsync();
