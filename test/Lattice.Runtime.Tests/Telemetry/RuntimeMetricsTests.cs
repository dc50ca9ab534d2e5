using Lattice.Protocol.Runtime;
using Lattice.Runtime.Engines;
using Lattice.Runtime.Tests.Connection;

namespace Lattice.Runtime.Tests.Telemetry;

/// <summary>
/// The daemon's own metrics, scraped over HTTP from its endpoint on 127.0.0.1 after real dispatches on a link: exact
/// counts by task, model and outcome, the running dispatches, and no request text anywhere in them.
/// </summary>
public sealed class RuntimeMetricsTests
{
    private const string Chat = """{"model":"fixed-a","messages":[{"role":"user","content":"tell me about the platypus"}],"stream":true}""";

    [Fact]
    public async Task Dispatches_are_counted_by_task_model_and_outcome()
    {
        using var daemon = new ScrapedDaemon();
        await using var gateway = await GatewaySide.ConnectAsync(daemon.Metrics, 2,
            new FixedEngine("fixed-a", streamChunks: 2), new FixedEngine("fixed-b"), new CancelledDispatchTests.FailingEngine("broken"));

        for (uint id = 1; id <= 3; id++)
        {
            await gateway.DispatchAsync(id, "chat.completions", "fixed-a", Chat, stream: true);
            Assert.Equal(FrameType.End, (await gateway.ReceiveUntilDoneAsync(id))[^1].Type);
        }
        await gateway.DispatchAsync(4, "chat.completions", "fixed-b", Chat, stream: false);
        Assert.Equal(FrameType.End, (await gateway.ReceiveUntilDoneAsync(4))[^1].Type);
        await gateway.DispatchAsync(5, "chat.completions", "broken", Chat, stream: true);
        Assert.Equal(FrameType.Error, (await gateway.ReceiveUntilDoneAsync(5))[^1].Type);
        await gateway.DispatchAsync(6, "chat.completions", "made-up-model", Chat, stream: true);
        Assert.Equal(FrameType.Error, (await gateway.ReceiveUntilDoneAsync(6))[^1].Type);

        var samples = await daemon.SamplesAsync();
        Assert.Equal(
        [
            """lattice_runtime_dispatches_total{model="broken",outcome="engine_error",task="chat.completions"} 1""",
            """lattice_runtime_dispatches_total{model="fixed-a",outcome="served",task="chat.completions"} 3""",
            """lattice_runtime_dispatches_total{model="fixed-b",outcome="served",task="chat.completions"} 1""",
            """lattice_runtime_dispatches_total{model="unsupported",outcome="refused",task="unsupported"} 1""",
        ], Matching(samples, "lattice_runtime_dispatches_total{"));
        Assert.Equal(
        [
            """lattice_runtime_dispatches_active{model="broken",task="chat.completions"} 0""",
            """lattice_runtime_dispatches_active{model="fixed-a",task="chat.completions"} 0""",
            """lattice_runtime_dispatches_active{model="fixed-b",task="chat.completions"} 0""",
        ], Matching(samples, "lattice_runtime_dispatches_active{"));
        // Served and failed dispatches have a duration; those that wrote an answer, a time to first chunk.
        Assert.Contains("""lattice_runtime_dispatch_duration_seconds_count{model="fixed-a",outcome="served",task="chat.completions"} 3""", samples);
        Assert.Contains("""lattice_runtime_dispatch_duration_seconds_count{model="broken",outcome="engine_error",task="chat.completions"} 1""", samples);
        Assert.Contains("""lattice_runtime_dispatch_time_to_first_chunk_seconds_count{model="fixed-a",task="chat.completions"} 3""", samples);
        Assert.Contains("""lattice_runtime_dispatch_time_to_first_chunk_seconds_count{model="fixed-b",task="chat.completions"} 1""", samples);
        Assert.DoesNotContain(samples, l => l.Contains("model=\"broken\"", StringComparison.Ordinal) && l.Contains("first_chunk", StringComparison.Ordinal));
        Assert.Contains("lattice_runtime_link_connected{} 1", samples);

        var text = await daemon.ScrapeAsync();
        Assert.DoesNotContain("platypus", text, StringComparison.Ordinal);
        Assert.DoesNotContain("made-up-model", text, StringComparison.Ordinal);
        Assert.DoesNotContain("Hello from the fixed engine", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_running_dispatch_is_active_until_the_gateway_cancels_it()
    {
        using var daemon = new ScrapedDaemon();
        var engine = new CancelledDispatchTests.HeldEngine();
        await using var gateway = await GatewaySide.ConnectAsync(daemon.Metrics, 1, engine);
        await gateway.DispatchAsync(1, "chat.completions", "held", Chat, stream: true);
        await engine.Holding.WaitAsync(GatewaySide.Timeout);

        var running = await daemon.SamplesAsync();
        Assert.Contains("""lattice_runtime_dispatches_active{model="held",task="chat.completions"} 1""", running);
        Assert.Contains("""lattice_runtime_dispatch_time_to_first_chunk_seconds_count{model="held",task="chat.completions"} 1""", running);
        Assert.Empty(Matching(running, "lattice_runtime_dispatches_total{"));

        await gateway.CancelAsync(1);
        Assert.True(GatewaySide.ReadEnd((await gateway.ReceiveUntilDoneAsync(1))[^1]).Cancelled);

        var ended = await daemon.SamplesAsync();
        Assert.Contains("""lattice_runtime_dispatches_active{model="held",task="chat.completions"} 0""", ended);
        Assert.Equal(["""lattice_runtime_dispatches_total{model="held",outcome="cancelled",task="chat.completions"} 1"""],
            Matching(ended, "lattice_runtime_dispatches_total{"));
    }

    [Fact]
    public async Task The_endpoint_answers_only_its_path_and_serves_dotnet_metrics_beside_the_daemons()
    {
        using var daemon = new ScrapedDaemon();
        var text = await daemon.ScrapeAsync();
        Assert.Contains("lattice_runtime_link_connected{} 0", text.Split('\n'));
        Assert.Contains("# TYPE lattice_runtime_link_connected gauge", text, StringComparison.Ordinal);
        Assert.Contains("dotnet_", text, StringComparison.Ordinal);

        using var http = new HttpClient();
        using var other = await http.GetAsync(new Uri($"http://{daemon.Address}/other"));
        Assert.Equal(System.Net.HttpStatusCode.NotFound, other.StatusCode);
    }

    [Fact]
    public void A_port_already_taken_is_a_clear_error()
    {
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var address = (System.Net.IPEndPoint)taken.LocalEndpoint;
        using var metrics = new Lattice.Runtime.Telemetry.RuntimeMetrics("Lattice.Runtime.Test." + Guid.NewGuid().ToString("N"));

        var ex = Assert.Throws<Lattice.Runtime.Telemetry.MetricsEndpointException>(() => Lattice.Runtime.Telemetry.MetricsEndpoint.Start(metrics, address));
        Assert.StartsWith($"cannot serve metrics on 127.0.0.1:{address.Port}: ", ex.Message, StringComparison.Ordinal);
    }

    internal static string[] Matching(IEnumerable<string> samples, string prefix) =>
        samples.Where(l => l.StartsWith(prefix, StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToArray();
}
