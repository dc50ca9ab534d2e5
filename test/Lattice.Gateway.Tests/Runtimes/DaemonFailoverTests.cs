using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Lattice.Gateway.Runtimes;
using Lattice.Gateway.Tests.Identity;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Runtime.Connection;
using Lattice.Runtime.Engines;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Runtimes;

/// <summary>
/// A daemon given two nodes of one deployment (one database): paired through the first that answers, linked to one,
/// and linked to the other — with the same credential, without pairing again — as soon as its node stops.
/// </summary>
[Trait("Category", "ScaleOut")]
public sealed class DaemonFailoverTests(OAuthGateway gateway) : IClassFixture<OAuthGateway>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_daemon_whose_node_stops_links_to_the_surviving_node_and_serves_there()
    {
        var (node2, origin2) = await gateway.StartNodeAsync();
        var node2Running = true;
        using var stop = new CancellationTokenSource();
        Task<LinkExit>? run = null;
        try
        {
            using var owner = gateway.Client(gateway.A.Key);
            var created = await OAuthGateway.PostAsync(owner, "v1/personal-runtimes", new JsonObject { ["displayName"] = "laptop", ["executionBackend"] = "local-model" });
            var credentials = await RuntimeCredentials.PairAsync([new Uri(origin2), new Uri(gateway.Origin)], created["bootstrapToken"]!.GetValue<string>(), CancellationToken.None);
            Assert.Equal([origin2, gateway.Origin], credentials.Endpoints);

            var client = new RuntimeClient(credentials, new EngineSet([new FixedEngine()]), 4);
            var connected = Channel.CreateUnbounded<string>();
            client.Status += line =>
            {
                if (line.StartsWith("connected", StringComparison.Ordinal))
                {
                    connected.Writer.TryWrite(line);
                }
            };
            run = client.RunAsync(stop.Token);
            Assert.Equal($"connected as {credentials.LatticeId} to {origin2}", await connected.Reader.ReadAsync().AsTask().WaitAsync(Timeout));
            Assert.NotNull(node2.Services.GetRequiredService<RuntimeRegistry>().Find(credentials.LatticeId));

            await node2.ShutDownAsync();
            node2Running = false;

            Assert.Equal($"connected as {credentials.LatticeId} to {gateway.Origin}", await connected.Reader.ReadAsync().AsTask().WaitAsync(Timeout));
            Assert.Equal(gateway.Origin, client.Gateway);
            using var response = await owner.PostAsync("v1/chat/completions", new StringContent(
                $$"""{"model":"lattice:personal:{{credentials.LatticeId}}","messages":[{"role":"user","content":"hi"}]}""", Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Contains("Hello from the fixed engine.", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        finally
        {
            await stop.CancelAsync();
            if (run is not null)
            {
                Assert.Equal(LinkExit.Stopped, await run.WaitAsync(Timeout));
            }
            if (node2Running)
            {
                await node2.ShutDownAsync();
            }
        }
    }
}
