using Lattice.Protocol.Sealing;
using Lattice.Runtime.Config;
using Lattice.Runtime.Connection;
using Lattice.Runtime.Engines;
using Lattice.Runtime.Telemetry;

namespace Lattice.Runtime.Hosting;

/// <summary>Loads a daemon's engines and runs its link until stopped or refused; shared by <c>lattice daemon</c> and <c>lattice up</c>.</summary>
public static class DaemonRunner
{
    /// <summary>Builds and loads every configured engine, reporting progress per engine.</summary>
    public static async Task<EngineSet> LoadEnginesAsync(DaemonConfig config, Action<string> say, CancellationToken cancellationToken)
    {
        var engines = new List<IEngine>();
        try
        {
            foreach (var engineConfig in config.Engines)
            {
                var engine = EngineFactory.Create(engineConfig);
                var last = -1;
                var progress = new SyncProgress(p =>
                {
                    var percent = (int)(p * 100);
                    if (percent / 25 != last / 25)
                    {
                        last = percent;
                        say($"loading {engine.Kind}: {percent}%");
                    }
                });
                await engine.LoadAsync(progress, cancellationToken);
                engines.Add(engine);
                foreach (var c in engine.Capabilities)
                {
                    say($"ready: {c.Task} with {c.Model} ({engine.Kind})");
                }
            }
        }
        catch
        {
            foreach (var e in engines)
            {
                await e.DisposeAsync();
            }
            throw;
        }
        return new EngineSet(engines);
    }

    // Progress<T> posts to the thread pool, so reports could print after "ready"; this one reports in place.
    private sealed class SyncProgress(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }

    /// <summary>The gateways the daemon connects to: the config's <c>[gateway]</c> URLs, else the ones it was paired with.</summary>
    public static IReadOnlyList<string> GatewaysFor(DaemonConfig config, RuntimeCredentials credentials) =>
        config.GatewayUrls.Count > 0 ? config.GatewayUrls : credentials.Endpoints;

    /// <summary>Runs the link, keeping <c>daemon.status</c> current.</summary>
    public static async Task<LinkExit> RunAsync(RuntimeCredentials credentials, EngineSet engines, DaemonConfig config, Action<string> say, CancellationToken cancellationToken)
    {
        var gateways = GatewaysFor(config, credentials);
        // The work key for sealed dispatch: made on first start (or at pairing), kept in an owner-only file after.
        using var workKey = WorkKey.LoadOrCreate(config.DataDirectory);
        using var metrics = config.Metrics is null ? null : new RuntimeMetrics();
        using var endpoint = StartMetrics(config, metrics, say);
        var client = new RuntimeClient(credentials, gateways, engines, config.Concurrency, workKey: workKey, metrics: metrics);
        var capabilities = engines.Capabilities.Select(c => $"{c.Task}:{c.Model}").ToList();
        void Save(string state)
        {
            try
            {
                new DaemonStatus(Environment.ProcessId, state, credentials.LatticeId, client.Gateway, client.Connected, client.Served, DateTimeOffset.UtcNow, capabilities, gateways)
                    .Save(config.DataDirectory);
            }
            catch (IOException)
            {
                // Status is informational; serving goes on.
            }
        }
        client.Status += s =>
        {
            // The file first: whoever reads the line finds the state it reports.
            Save(s);
            say(s);
        };
        using var refresh = new PeriodicTimer(TimeSpan.FromSeconds(5));
        var refresher = Task.Run(async () =>
        {
            try
            {
                while (await refresh.WaitForNextTickAsync(cancellationToken))
                {
                    Save(client.Connected ? "connected" : "disconnected");
                }
            }
            catch (OperationCanceledException)
            {
            }
        }, CancellationToken.None);
        var exit = await client.RunAsync(cancellationToken);
        Save(exit == LinkExit.CredentialRejected ? "credential rejected" : "stopped");
        return exit;
    }

    /// <summary>The scrape endpoint when <c>[daemon] metrics</c> is set. One that cannot start is said, and the daemon serves without it.</summary>
    private static IDisposable? StartMetrics(DaemonConfig config, RuntimeMetrics? metrics, Action<string> say)
    {
        if (config.Metrics is not { } address || metrics is null)
        {
            return null;
        }
        try
        {
            var endpoint = MetricsEndpoint.Start(metrics, address);
            say($"metrics at http://{address}{MetricsEndpoint.Path}");
            return endpoint;
        }
        catch (MetricsEndpointException ex)
        {
            say(ex.Message + "; serving without metrics");
            return null;
        }
    }
}
