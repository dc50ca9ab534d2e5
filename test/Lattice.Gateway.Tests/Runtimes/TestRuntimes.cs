using System.Text.Json.Nodes;
using Lattice.Runtime.Connection;
using Lattice.Runtime.Engines;

namespace Lattice.Gateway.Tests.Runtimes;

/// <summary>Runtimes for tests: records created over the API, paired, and connected with a real <see cref="RuntimeClient"/>.</summary>
public static class TestRuntimes
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    public sealed record Runtime(string LatticeId, RuntimeClient Client, Task<LinkExit> Run, CancellationTokenSource Stop) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await Stop.CancelAsync();
            await Run.WaitAsync(Timeout);
        }
    }

    public static async Task<(string LatticeId, string Token)> CreateAsync(LiveGateway gateway, string key, string name = "laptop")
    {
        using var http = gateway.Client(key);
        var created = await LiveGateway.PostAsync(http, "v1/personal-runtimes", new JsonObject { ["displayName"] = name, ["executionBackend"] = "local-model" });
        return (created["runtime"]!["latticeId"]!.GetValue<string>(), created["bootstrapToken"]!.GetValue<string>());
    }

    public static async Task<Runtime> ConnectAsync(LiveGateway gateway, string key, params IEngine[] engines)
    {
        var (id, token) = await CreateAsync(gateway, key);
        var credentials = await RuntimeCredentials.PairAsync(new Uri(gateway.Origin), token, CancellationToken.None);
        Assert.Equal(id, credentials.LatticeId);
        return await StartAsync(credentials, engines);
    }

    /// <summary>A hosted runtime (operator capacity) created through the admin API, paired and connected.</summary>
    public static async Task<Runtime> ConnectHostedAsync(LiveGateway gateway, params IEngine[] engines)
    {
        var hosted = await LiveGateway.PostAsync(gateway.Admin, "admin/v1/runtimes", new JsonObject { ["display_name"] = "rack" });
        var credentials = await RuntimeCredentials.PairAsync(new Uri(gateway.Origin), hosted["bootstrap_token"]!.GetValue<string>(), CancellationToken.None);
        return await StartAsync(credentials, engines);
    }

    public static Task<Runtime> StartAsync(RuntimeCredentials credentials, params IEngine[] engines) => StartAsync(credentials, null, engines);

    /// <summary>A daemon with <paramref name="workKey"/>: it announces the key and takes sealed dispatches.</summary>
    public static async Task<Runtime> StartAsync(RuntimeCredentials credentials, Lattice.Protocol.Sealing.WorkKey? workKey, params IEngine[] engines)
    {
        var client = new RuntimeClient(credentials, new EngineSet(engines), 8, workKey: workKey);
        var connected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        client.Status += s =>
        {
            if (s.StartsWith("connected", StringComparison.Ordinal))
            {
                connected.TrySetResult();
            }
        };
        var stop = new CancellationTokenSource();
        var run = client.RunAsync(stop.Token);
        await connected.Task.WaitAsync(Timeout);
        return new Runtime(credentials.LatticeId, client, run, stop);
    }
}
