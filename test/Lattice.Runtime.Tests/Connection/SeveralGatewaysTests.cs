using System.Collections.Concurrent;
using System.Threading.Channels;
using Lattice.Protocol.Runtime;
using Lattice.Runtime.Config;
using Lattice.Runtime.Connection;
using Lattice.Runtime.Engines;
using Lattice.Runtime.Hosting;
using Lattice.Runtime.Telemetry;
using Lattice.Runtime.Tests.Telemetry;
using Microsoft.Extensions.Time.Testing;

namespace Lattice.Runtime.Tests.Connection;

/// <summary>
/// A daemon given several gateway nodes: it connects to one that is up, moves on to a survivor when its node dies,
/// and waits its backoff once per round of nodes, not per node. The nodes are real loopback HTTP servers; the
/// daemon's clock is fake and only moves when a test moves it, so a node is reached without any wait only if the
/// daemon tries it at once.
/// </summary>
public sealed class SeveralGatewaysTests
{
    private const string Chat = """{"model":"fixed","messages":[{"role":"user","content":"hi"}]}""";

    private static readonly RuntimeCredentials Credentials = new("http://127.0.0.1:1", "lat_test", GatewayNode.Credential);

    /// <summary>A daemon on a clock that never moves unless told, its status lines in order, running until disposed.</summary>
    private sealed class Daemon : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new();

        public Daemon(IReadOnlyList<string> gateways, TimeProvider time, RuntimeMetrics? metrics = null)
        {
            Client = new RuntimeClient(Credentials, gateways, new EngineSet([new FixedEngine()]), 2, time, metrics: metrics);
            Client.Status += line =>
            {
                Lines.Enqueue(line);
                StatusLines.Writer.TryWrite(line);
            };
            Run = Client.RunAsync(_stop.Token);
        }

        public RuntimeClient Client { get; }

        public Task<LinkExit> Run { get; }

        public ConcurrentQueue<string> Lines { get; } = new();

        public Channel<string> StatusLines { get; } = Channel.CreateUnbounded<string>();

        public async Task<string> NextLineStartingAsync(string prefix)
        {
            while (true)
            {
                var line = await StatusLines.Reader.ReadAsync().AsTask().WaitAsync(GatewaySide.Timeout);
                if (line.StartsWith(prefix, StringComparison.Ordinal))
                {
                    return line;
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            Assert.Equal(LinkExit.Stopped, await Run.WaitAsync(GatewaySide.Timeout));
            _stop.Dispose();
        }
    }

    /// <summary>A fake clock that reports each one-shot timer created on it (the backoff's delay), with its due time.</summary>
    private sealed class WatchedClock() : FakeTimeProvider(DateTimeOffset.UnixEpoch)
    {
        public Channel<TimeSpan> Delays { get; } = Channel.CreateUnbounded<TimeSpan>();

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            var timer = base.CreateTimer(callback, state, dueTime, period);
            if (period == Timeout.InfiniteTimeSpan)
            {
                Delays.Writer.TryWrite(dueTime);
            }
            return timer;
        }
    }

    /// <summary>The daemon answers a dispatch on <paramref name="link"/>: it is serving through that node.</summary>
    private static async Task AssertServesAsync(GatewayNode.Link link, uint id)
    {
        await link.DispatchAsync(id, Chat);
        ReceivedFrame frame;
        do
        {
            frame = await link.ReceiveAsync();
        }
        while (frame.Type is FrameType.ResponseStart or FrameType.Data);
        Assert.Equal(FrameType.End, frame.Type);
        Assert.Equal(id, frame.Id);
    }

    [Fact]
    public async Task A_daemon_whose_first_gateway_is_down_connects_to_the_second_without_waiting()
    {
        await using var b = await GatewayNode.StartAsync();
        var down = GatewayNode.DownUrl();
        await using var daemon = new Daemon([down, b.Url], new FakeTimeProvider(DateTimeOffset.UnixEpoch));

        var link = await b.NextLinkAsync();
        await AssertServesAsync(link, 1);

        Assert.Equal($"connected as lat_test to {b.Url}", await daemon.NextLineStartingAsync("connected"));
        Assert.True(daemon.Client.Connected);
        Assert.Equal(b.Url, daemon.Client.Gateway);
        var lines = daemon.Lines.ToArray();
        Assert.Equal($"connecting to {down}", lines[0]);
        Assert.StartsWith($"disconnected from {down} (", lines[1], StringComparison.Ordinal);
        Assert.EndsWith($"); trying {b.Url}", lines[1], StringComparison.Ordinal);
        Assert.Equal($"connecting to {b.Url}", lines[2]);
    }

    [Fact]
    public async Task A_daemon_whose_gateway_dies_reconnects_to_the_survivor_and_serves_there()
    {
        await using var a = await GatewayNode.StartAsync();
        await using var b = await GatewayNode.StartAsync();
        await using var daemon = new Daemon([a.Url, b.Url], new FakeTimeProvider(DateTimeOffset.UnixEpoch));
        await AssertServesAsync(await a.NextLinkAsync(), 1);
        Assert.Equal(0, b.Attempts);

        await a.KillAsync();

        // No clock moves: the survivor is tried at once after the drop.
        await AssertServesAsync(await b.NextLinkAsync(), 2);
        Assert.Equal(1, a.Attempts);
        Assert.Equal(1, b.Attempts);
        Assert.Equal(b.Url, daemon.Client.Gateway);
        Assert.Contains($"disconnected from {a.Url} (connection lost); trying {b.Url}", daemon.Lines);
    }

    [Fact]
    public async Task The_link_state_and_reconnects_are_in_the_daemons_metrics()
    {
        using var scraped = new ScrapedDaemon();
        await using var a = await GatewayNode.StartAsync();
        await using var b = await GatewayNode.StartAsync();
        var clock = new WatchedClock();
        await using var daemon = new Daemon([a.Url, b.Url], clock, scraped.Metrics);
        await AssertServesAsync(await a.NextLinkAsync(), 1);
        var first = await scraped.SamplesAsync();
        Assert.Contains("lattice_runtime_link_connected{} 1", first);
        Assert.DoesNotContain(first, l => l.StartsWith("lattice_runtime_link_reconnects_total", StringComparison.Ordinal));

        await a.KillAsync();
        await AssertServesAsync(await b.NextLinkAsync(), 2);
        var moved = await scraped.SamplesAsync();
        Assert.Contains("lattice_runtime_link_connected{} 1", moved);
        Assert.Contains("lattice_runtime_link_reconnects_total{} 1", moved);
        Assert.Contains("""lattice_runtime_dispatches_total{model="fixed",outcome="served",task="chat.completions"} 2""", moved);

        // Both nodes gone: the daemon is down and waits its backoff (the clock does not move, so it stays there).
        await b.KillAsync();
        await clock.Delays.Reader.ReadAsync().AsTask().WaitAsync(GatewaySide.Timeout);
        var down = await scraped.SamplesAsync();
        Assert.Contains("lattice_runtime_link_connected{} 0", down);
        Assert.Contains("lattice_runtime_link_reconnects_total{} 1", down);
    }

    [Fact]
    public async Task When_every_gateway_fails_the_daemon_waits_its_backoff_once_per_round_then_goes_on_round_robin()
    {
        await using var a = await GatewayNode.StartAsync();
        await using var b = await GatewayNode.StartAsync();
        a.RefuseWith = 503;
        b.RefuseWith = 503;
        var clock = new WatchedClock();
        await using var daemon = new Daemon([a.Url, b.Url], clock);

        // One delay after a and b have each been tried once; the daemon waits in it until the clock moves.
        var delay = await clock.Delays.Reader.ReadAsync().AsTask().WaitAsync(GatewaySide.Timeout);
        Assert.InRange(delay, TimeSpan.Zero, TimeSpan.FromSeconds(1));
        Assert.Equal((1, 1), (a.Attempts, b.Attempts));
        Assert.Equal($"disconnected from {a.Url} (HTTP 503); trying {b.Url}", daemon.Lines.ElementAt(1));
        Assert.StartsWith($"disconnected from {b.Url} (HTTP 503); retrying in ", daemon.Lines.ElementAt(3), StringComparison.Ordinal);

        // The next round starts again at a, where it is welcomed.
        a.RefuseWith = null;
        clock.Advance(TimeSpan.FromSeconds(1));
        await AssertServesAsync(await a.NextLinkAsync(), 1);
        Assert.Equal((2, 1), (a.Attempts, b.Attempts));
        Assert.Equal(0, clock.Delays.Reader.Count);
    }

    [Fact]
    public async Task Nodes_that_welcome_and_drop_at_once_still_get_the_backoff_between_rounds()
    {
        await using var a = await GatewayNode.StartAsync();
        await using var b = await GatewayNode.StartAsync();
        a.DropAfterWelcome = true;
        b.DropAfterWelcome = true;
        var clock = new WatchedClock();
        await using var daemon = new Daemon([a.Url, b.Url], clock);

        // Each link lasted no time on the daemon's clock: not a stable link, so the round goes on to its end and waits.
        var delay = await clock.Delays.Reader.ReadAsync().AsTask().WaitAsync(GatewaySide.Timeout);
        Assert.InRange(delay, TimeSpan.Zero, TimeSpan.FromSeconds(1));
        Assert.Equal((1, 1), (a.Attempts, b.Attempts));
        Assert.Equal(2, daemon.Lines.Count(l => l.StartsWith("connected as lat_test", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task The_daemon_status_names_the_gateway_it_is_connected_to_and_every_one_it_may_use()
    {
        await using var b = await GatewayNode.StartAsync();
        var down = GatewayNode.DownUrl();
        var dataDir = Path.Combine(Path.GetTempPath(), "lattice-status-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dataDir);
        try
        {
            var config = new DaemonConfig(2, dataDir, [down, b.Url], [], null);
            var connected = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            using var stop = new CancellationTokenSource();
            var run = DaemonRunner.RunAsync(Credentials, new EngineSet([]), config, line =>
            {
                if (line.StartsWith("connected", StringComparison.Ordinal))
                {
                    connected.TrySetResult(line);
                }
            }, stop.Token);

            Assert.Equal($"connected as lat_test to {b.Url}", await connected.Task.WaitAsync(GatewaySide.Timeout));
            var status = DaemonStatus.Load(dataDir);
            Assert.NotNull(status);
            Assert.True(status.Connected);
            Assert.Equal(b.Url, status.Gateway);
            Assert.Equal([down, b.Url], status.Gateways);
            Assert.Contains($"\"gateway\": \"{b.Url}\"", File.ReadAllText(DaemonStatus.PathIn(dataDir)), StringComparison.Ordinal);

            await stop.CancelAsync();
            Assert.Equal(LinkExit.Stopped, await run.WaitAsync(GatewaySide.Timeout));
        }
        finally
        {
            Directory.Delete(dataDir, recursive: true);
        }
    }

    [Fact]
    public async Task Pairing_goes_through_the_first_gateway_that_answers_and_keeps_them_all()
    {
        await using var b = await GatewayNode.StartAsync();
        var down = GatewayNode.DownUrl();

        var credentials = await RuntimeCredentials.PairAsync([new Uri(down), new Uri(b.Url + "/v1")], GatewayNode.BootstrapToken, CancellationToken.None);

        Assert.Equal(b.Url, credentials.Gateway);
        Assert.Equal([down, b.Url], credentials.Gateways);
        Assert.Equal([down, b.Url], credentials.Endpoints);
        var dataDir = Path.Combine(Path.GetTempPath(), "lattice-pair-" + Guid.NewGuid().ToString("N"));
        try
        {
            credentials.Save(dataDir);
            Assert.Equal([down, b.Url], RuntimeCredentials.Load(dataDir)!.Endpoints);
            // A file written before several gateways existed still loads, with its one gateway.
            File.WriteAllText(RuntimeCredentials.PathIn(dataDir), """{"gateway":"http://a:1","latticeId":"lat_x","credential":"lrt_x"}""");
            Assert.Equal(["http://a:1"], RuntimeCredentials.Load(dataDir)!.Endpoints);
        }
        finally
        {
            Directory.Delete(dataDir, recursive: true);
        }
    }

    [Fact]
    public async Task A_bootstrap_token_refused_by_a_gateway_is_not_tried_on_the_next()
    {
        await using var a = await GatewayNode.StartAsync();
        await using var b = await GatewayNode.StartAsync();

        var ex = await Assert.ThrowsAsync<PairingException>(() => RuntimeCredentials.PairAsync([new Uri(a.Url), new Uri(b.Url)], "lbt_wrong", CancellationToken.None));

        Assert.Equal("The gateway refused the bootstrap token (401): The bootstrap token is invalid, used or expired.", ex.Message);
        Assert.Equal((1, 0), (a.Pairings, b.Pairings));
    }
}
