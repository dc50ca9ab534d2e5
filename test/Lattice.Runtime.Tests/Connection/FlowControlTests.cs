using Lattice.Protocol.Runtime;
using Lattice.Runtime.Engines;

namespace Lattice.Runtime.Tests.Connection;

/// <summary>
/// The daemon's side of flow control: it says in its hello that it keeps credit, sends a dispatch's data only within
/// the credit the gateway gave, waits for a credit frame for more, and keeps its frames within the gateway's limit.
/// </summary>
public sealed class FlowControlTests
{
    private const string Chat = """{"model":"endless","messages":[{"role":"user","content":"hi"}],"stream":true}""";

    /// <summary>Writes 1000-byte events without end.</summary>
    private sealed class EndlessEngine : IEngine
    {
        public static readonly byte[] Event = new byte[1000];

        public string Kind => "endless";
        public IReadOnlyList<EngineCapability> Capabilities { get; } = [new("chat.completions", "endless", null)];

        public Task LoadAsync(IProgress<double>? progress, CancellationToken cancellationToken) => Task.CompletedTask;

        public async Task<EngineUsage> ExecuteAsync(EngineRequest request, IEngineOutput output, CancellationToken cancellationToken)
        {
            await output.StartAsync(200, "text/event-stream", cancellationToken);
            while (true)
            {
                await output.WriteAsync(Event, cancellationToken);
            }
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        using var giveUp = new CancellationTokenSource(GatewaySide.Timeout);
        while (!condition())
        {
            Assert.False(giveUp.IsCancellationRequested, "never: " + what);
            await Task.Delay(5, CancellationToken.None);
        }
    }

    /// <summary>Data bytes of dispatch 1 until the pong that answers a ping sent once the engine waits: all it sent on its credit.</summary>
    private static async Task<(int Bytes, int LargestFrame)> DataUntilBlockedAsync(GatewaySide gateway)
    {
        await WaitUntilAsync(() => gateway.Client.WaitingForCredit == 1, "the engine waits for credit");
        // The daemon sends nothing more of the dispatch: the pong is the next frame after the data already sent.
        await gateway.PingAsync();
        var bytes = 0;
        var largest = 0;
        while (true)
        {
            var frame = await gateway.ReceiveAsync();
            if (frame.Type == FrameType.Pong)
            {
                return (bytes, largest);
            }
            if (frame.Type == FrameType.Data)
            {
                Assert.Equal(1u, frame.Id);
                bytes += frame.Payload.Length;
                largest = Math.Max(largest, Frame.HeaderSize + frame.Payload.Length);
            }
        }
    }

    [Fact]
    public async Task Hello_offers_flow_control_and_states_the_largest_frame_the_daemon_takes()
    {
        await using var gateway = await GatewaySide.ConnectAsync(1, new EndlessEngine());
        Assert.Contains(LinkFeatures.FlowControl, gateway.Hello.Features ?? []);
        Assert.Equal(Frame.MaxFrameBytes, gateway.Hello.MaxFrameBytes);
    }

    [Fact]
    public async Task The_daemon_sends_exactly_its_credit_in_frames_within_the_limit_then_waits_for_a_credit_frame()
    {
        await using var gateway = await GatewaySide.ConnectAsync(new WelcomeMessage("lat_test", 5, MaxFrameBytes: 4096, WindowBytes: 10_000), 1, new EndlessEngine());
        await gateway.DispatchAsync(1, "chat.completions", "endless", Chat, stream: true);
        Assert.Equal(FrameType.ResponseStart, (await gateway.ReceiveAsync()).Type);

        var (bytes, largest) = await DataUntilBlockedAsync(gateway);
        Assert.Equal(10_000, bytes);
        Assert.InRange(largest, 1, 4096);

        await gateway.CreditAsync(1, 2_500);
        (bytes, largest) = await DataUntilBlockedAsync(gateway);
        Assert.Equal(2_500, bytes);
        Assert.InRange(largest, 1, 4096);

        // A cancel reaches an engine that waits for credit: one end, cancelled.
        await gateway.CancelAsync(1);
        var frames = await gateway.ReceiveUntilDoneAsync(1);
        Assert.True(GatewaySide.ReadEnd(frames[^1]).Cancelled);
        Assert.Equal(0, gateway.Client.WaitingForCredit);
    }
}
