using Lattice.Protocol.Runtime;
using Lattice.Runtime.Engines;

namespace Lattice.Runtime.Tests.Connection;

/// <summary>
/// What the daemon answers on the link when the gateway cancels a dispatch: exactly one End, with the usage so far and
/// <c>cancelled</c> set, wherever the cancel finds the dispatch. Engines here are hand-written and paced by the test.
/// </summary>
public sealed class CancelledDispatchTests
{
    private const string Chat = """{"model":"held","messages":[{"role":"user","content":"hi"}],"stream":true}""";

    [Fact]
    public async Task Hello_says_the_daemon_ends_cancelled_dispatches()
    {
        await using var gateway = await GatewaySide.ConnectAsync(1, new HeldEngine());
        Assert.Contains(LinkFeatures.EndAfterCancel, gateway.Hello.Features ?? []);
    }

    [Fact]
    public async Task A_cancelled_stream_ends_with_what_the_engine_reported_and_cancelled_set()
    {
        var engine = new HeldEngine();
        await using var gateway = await GatewaySide.ConnectAsync(1, engine);
        await gateway.DispatchAsync(1, "chat.completions", "held", Chat, stream: true);
        await engine.Holding.WaitAsync(GatewaySide.Timeout);

        await gateway.CancelAsync(1);
        var frames = await gateway.ReceiveUntilDoneAsync(1);

        Assert.Equal([FrameType.ResponseStart, FrameType.Data, FrameType.End], frames.Select(f => f.Type));
        Assert.Equal(new DispatchEnd(7, 3, 0, Cancelled: true), GatewaySide.ReadEnd(frames[^1]));
        Assert.Equal("""{"prompt_tokens":7,"completion_tokens":3,"audio_seconds":0,"cancelled":true}""", frames[^1].Text);
    }

    [Fact]
    public async Task A_dispatch_cancelled_while_it_waits_for_a_slot_ends_with_no_usage()
    {
        var engine = new HeldEngine();
        await using var gateway = await GatewaySide.ConnectAsync(1, engine);
        await gateway.DispatchAsync(1, "chat.completions", "held", Chat, stream: true);
        await engine.Holding.WaitAsync(GatewaySide.Timeout);
        await gateway.DispatchAsync(2, "chat.completions", "held", Chat, stream: true);

        await gateway.CancelAsync(2);
        var frames = await gateway.ReceiveUntilDoneAsync(2);

        Assert.DoesNotContain(frames, f => f.Id == 2 && f.Type != FrameType.End);
        Assert.Equal(new DispatchEnd(0, 0, 0, Cancelled: true), GatewaySide.ReadEnd(frames[^1]));
        Assert.Equal(1, engine.Started);
        await gateway.CancelAsync(1);
        Assert.True(GatewaySide.ReadEnd((await gateway.ReceiveUntilDoneAsync(1))[^1]).Cancelled);
    }

    [Fact]
    public async Task A_completed_dispatch_ends_once_without_cancelled_and_a_late_cancel_is_not_answered()
    {
        await using var gateway = await GatewaySide.ConnectAsync(1, new FixedEngine("held", streamChunks: 2));
        await gateway.DispatchAsync(1, "chat.completions", "held", Chat, stream: true);
        var end = (await gateway.ReceiveUntilDoneAsync(1))[^1];
        // The End of a dispatch nobody cancelled is byte for byte what older gateways read.
        Assert.Equal("""{"prompt_tokens":1,"completion_tokens":2,"audio_seconds":0}""", end.Text);

        await gateway.CancelAsync(1);
        // The link is FIFO: had the late cancel been answered, its frame would come before the next dispatch's.
        await gateway.DispatchAsync(2, "chat.completions", "held", Chat, stream: false);
        var frames = await gateway.ReceiveUntilDoneAsync(2);
        Assert.All(frames, f => Assert.Equal(2u, f.Id));
        Assert.False(GatewaySide.ReadEnd(frames[^1]).Cancelled);
    }

    [Fact]
    public async Task A_failing_engine_still_answers_with_an_error_and_no_end()
    {
        await using var gateway = await GatewaySide.ConnectAsync(1, new FailingEngine());
        await gateway.DispatchAsync(1, "chat.completions", "held", Chat, stream: true);
        var frames = await gateway.ReceiveUntilDoneAsync(1);
        Assert.Equal(FrameType.Error, frames[^1].Type);
        Assert.DoesNotContain(frames, f => f.Type == FrameType.End);
    }

    /// <summary>Reports 7 prompt and 3 completion tokens, writes one event, then holds until cancelled.</summary>
    internal sealed class HeldEngine : IEngine
    {
        private readonly TaskCompletionSource _holding = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _started;

        public Task Holding => _holding.Task;
        public int Started => Volatile.Read(ref _started);
        public string Kind => "held";
        public IReadOnlyList<EngineCapability> Capabilities { get; } = [new("chat.completions", "held", null)];

        public Task LoadAsync(IProgress<double>? progress, CancellationToken cancellationToken) => Task.CompletedTask;

        public async Task<EngineUsage> ExecuteAsync(EngineRequest request, IEngineOutput output, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _started);
            await output.StartAsync(200, "text/event-stream", cancellationToken);
            output.ReportUsage(new EngineUsage(7, 3));
            await output.WriteAsync("data: {}\n\n"u8.ToArray(), cancellationToken);
            _holding.TrySetResult();
            await Task.Delay(Timeout.Infinite, cancellationToken);
            throw new InvalidOperationException("unreachable");
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    internal sealed class FailingEngine(string model = "held") : IEngine
    {
        public string Kind => "failing";
        public IReadOnlyList<EngineCapability> Capabilities { get; } = [new("chat.completions", model, null)];

        public Task LoadAsync(IProgress<double>? progress, CancellationToken cancellationToken) => Task.CompletedTask;

        public Task<EngineUsage> ExecuteAsync(EngineRequest request, IEngineOutput output, CancellationToken cancellationToken)
        {
            output.ReportUsage(new EngineUsage(7, 3));
            throw new InvalidOperationException("the engine broke");
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
