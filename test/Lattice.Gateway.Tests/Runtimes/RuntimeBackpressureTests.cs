using System.Net.WebSockets;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Dispatch;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Runtimes;
using Lattice.Gateway.Tasks;
using Lattice.Protocol;
using Lattice.Protocol.Runtime;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Lattice.Gateway.Tests.Runtimes;

/// <summary>
/// A hostile runtime at the other end of the link (a test of our own speaking the protocol over an in-memory socket
/// pair, with a fake clock) cannot make the gateway hold more than the stated bounds: one window per dispatch, one
/// pending pong, frames no larger than the agreed maximum.
/// </summary>
public sealed class RuntimeBackpressureTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);
    private static readonly DispatchHeader Chat = new(BuiltInTaskClasses.ChatCompletions, "m", "application/json", true);

    private static RuntimeConnection Connection(WebSocket socket, TimeProvider time, params string[] features) =>
        new(socket, "lat_hostile", "ws_1", false, new HelloMessage("1", 4, [new CapabilityInfo(BuiltInTaskClasses.ChatCompletions, "m", "fixed", null)], features),
            time, NullLogger.Instance);

    private static Task SendAsync(WebSocket socket, byte[] frame, CancellationToken cancellationToken = default) =>
        socket.SendAsync(frame, WebSocketMessageType.Binary, true, cancellationToken).WaitAsync(Wait, cancellationToken);

    /// <summary>Waits on a counter of the gateway's (no clock involved: it is checked until it holds or the test gives up).</summary>
    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        using var giveUp = new CancellationTokenSource(Wait);
        while (!condition())
        {
            Assert.False(giveUp.IsCancellationRequested, "never: " + what);
            await Task.Delay(5, CancellationToken.None);
        }
    }

    /// <summary>The frames the gateway sent, up to its close; returns the close status and reason.</summary>
    private static async Task<(WebSocketCloseStatus? Status, string? Reason, List<FrameType> Frames)> ReceiveUntilCloseAsync(WebSocket socket)
    {
        var frames = new List<FrameType>();
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var result = await socket.ReceiveAsync(buffer.AsMemory(), CancellationToken.None).AsTask().WaitAsync(Wait);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                return (socket.CloseStatus, socket.CloseStatusDescription, frames);
            }
            if (result.Count >= Frame.HeaderSize)
            {
                frames.Add((FrameType)buffer[0]);
            }
        }
    }

    [Fact]
    public async Task A_runtime_that_floods_pings_and_data_and_never_reads_gets_one_window_and_one_pong_then_is_dropped()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using var registry = new RuntimeRegistry(time);
        var (gatewaySide, daemon) = SocketPair.Create();
        // An older daemon (no flow control): the gateway cannot ask it to wait, so it stops reading instead.
        var connection = Connection(gatewaySide, time);
        registry.Add(connection);
        var run = connection.RunAsync(CancellationToken.None);
        var before = GC.GetTotalMemory(forceFullCollection: true);
        // A dispatch whose client never reads: nothing takes its body.
        var dispatch = await connection.StartDispatchAsync(Chat, "{}"u8.ToArray(), CancellationToken.None);

        using var stop = new CancellationTokenSource();
        var flood = Task.Run(async () =>
        {
            var ping = Frame.Raw(FrameType.Ping, 0, new byte[8]);
            var data = Frame.Raw(FrameType.Data, dispatch.Id, new byte[16 * 1024]);
            // Enough pings that the pongs fill the socket the runtime never reads (64 KiB in the pipe), then 256 MiB of
            // data with pings between. Before bounds, the gateway read and held all of it.
            for (var i = 0; i < 100_000; i++)
            {
                await daemon.SendAsync(ping, WebSocketMessageType.Binary, true, stop.Token);
            }
            for (var i = 0; i < 16 * 1024; i++)
            {
                await daemon.SendAsync(data, WebSocketMessageType.Binary, true, stop.Token);
                await daemon.SendAsync(ping, WebSocketMessageType.Binary, true, stop.Token);
            }
        });

        await WaitUntilAsync(() => connection.ReadPaused || flood.IsCompleted, "the gateway stops reading");
        Assert.False(flood.IsCompleted, "the whole flood was read");
        Assert.Equal(RuntimeLinkLimits.WindowBytes, dispatch.BufferedBytes);
        Assert.Equal(RuntimeLinkLimits.WindowBytes, connection.BufferedBytes);
        // A hundred thousand pings, and at most the answer to the last one waits to be sent.
        var (frames, bytes) = connection.Queued;
        Assert.InRange(frames, 0, 1);
        Assert.InRange(bytes, 0, Frame.HeaderSize + 8);
        var grown = GC.GetTotalMemory(forceFullCollection: true) - before;
        Assert.True(grown < 128L * 1024 * 1024, $"the gateway's heap grew by {grown} bytes");

        // The runtime takes none of the gateway's frames: after 15 s of a send that does not leave, it is dropped
        // (the gateway's own pause of the read loop is not held against it).
        for (var i = 0; i < 4; i++)
        {
            time.Advance(RuntimeConnection.PingEvery);
        }
        await run.WaitAsync(Wait);
        Assert.True(connection.Closed.IsCancellationRequested);
        Assert.Null(registry.Find("lat_hostile"));
        // The dispatch began with data (an implicit start) and then lost its link.
        Assert.True((await dispatch.Events.ReadAsync().AsTask().WaitAsync(Wait)).Implicit);
        var closed = await Assert.ThrowsAsync<System.Threading.Channels.ChannelClosedException>(async () => await dispatch.Events.ReadAsync().AsTask().WaitAsync(Wait));
        Assert.IsType<RuntimeLinkLostException>(closed.InnerException);
        await Assert.ThrowsAsync<RuntimeLinkLostException>(async () => await dispatch.Body.ReadAsync().AsTask().WaitAsync(Wait));
        await stop.CancelAsync();
        daemon.Abort();
        await flood.ContinueWith(_ => { }, TaskScheduler.Default).WaitAsync(Wait);
    }

    [Fact]
    public async Task A_runtime_with_flow_control_may_fill_its_window_and_is_closed_with_1008_for_one_byte_more()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var (gatewaySide, daemon) = SocketPair.Create();
        var connection = Connection(gatewaySide, time, LinkFeatures.FlowControl);
        var run = connection.RunAsync(CancellationToken.None);
        var dispatch = await connection.StartDispatchAsync(Chat, "{}"u8.ToArray(), CancellationToken.None);

        var quarter = Frame.Raw(FrameType.Data, dispatch.Id, new byte[RuntimeLinkLimits.WindowBytes / 4]);
        for (var i = 0; i < 4; i++)
        {
            await SendAsync(daemon, quarter);
        }
        await WaitUntilAsync(() => dispatch.BufferedBytes == RuntimeLinkLimits.WindowBytes, "the window fills");
        Assert.False(connection.Closed.IsCancellationRequested);

        await SendAsync(daemon, Frame.Raw(FrameType.Data, dispatch.Id, [1]));
        var (status, reason, frames) = await ReceiveUntilCloseAsync(daemon);
        Assert.Equal(WebSocketCloseStatus.PolicyViolation, status);
        Assert.Equal("data beyond the dispatch's credit (window 262144 bytes)", reason);
        Assert.Equal([FrameType.Dispatch], frames);
        await run.WaitAsync(Wait);
        Assert.True(connection.Closed.IsCancellationRequested);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_frame_beyond_the_agreed_maximum_closes_the_link_with_1009(bool flowControl)
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var (gatewaySide, daemon) = SocketPair.Create();
        var connection = flowControl ? Connection(gatewaySide, time, LinkFeatures.FlowControl) : Connection(gatewaySide, time);
        var run = connection.RunAsync(CancellationToken.None);
        var dispatch = await connection.StartDispatchAsync(Chat, "{}"u8.ToArray(), CancellationToken.None);

        // One byte over: a data frame from a daemon that agreed to the limit; an error frame (held whole) from any daemon.
        var oversized = new byte[RuntimeLinkLimits.MaxFrameBytes - Frame.HeaderSize + 1];
        var send = SendAsync(daemon, Frame.Raw(flowControl ? FrameType.Data : FrameType.Error, dispatch.Id, oversized));
        var (status, reason, _) = await ReceiveUntilCloseAsync(daemon);
        Assert.Equal(WebSocketCloseStatus.MessageTooBig, status);
        Assert.Equal("frame exceeds max_frame_bytes (262144)", reason);
        await run.WaitAsync(Wait);
        await send.ContinueWith(_ => { }, TaskScheduler.Default);
        // What the gateway held of it: never more than the window.
        Assert.InRange(connection.BufferedBytes, 0, RuntimeLinkLimits.WindowBytes);
    }

    [Fact]
    public void The_welcome_states_the_frame_limit_and_gives_a_window_only_to_a_daemon_with_flow_control()
    {
        var (a, _) = SocketPair.Create();
        var time = new FakeTimeProvider();
        Assert.Equal(new WelcomeMessage("lat_hostile", 5, 262144, 262144), Connection(a, time, LinkFeatures.FlowControl).Welcome());
        Assert.Equal(new WelcomeMessage("lat_hostile", 5, 262144, null), Connection(a, time).Welcome());
        Assert.Equal("""{"lattice_id":"lat_hostile","heartbeat_seconds":5,"max_frame_bytes":262144}""",
            System.Text.Encoding.UTF8.GetString(Frame.Json(FrameType.Welcome, 0, Connection(a, time).Welcome(), ProtocolJsonContext.Default.WelcomeMessage).AsSpan(Frame.HeaderSize)));
    }

    [Fact]
    public async Task The_relay_gives_back_what_it_takes_as_credit_in_steps()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var (gatewaySide, daemon) = SocketPair.Create();
        var connection = Connection(gatewaySide, time, LinkFeatures.FlowControl);
        var run = connection.RunAsync(CancellationToken.None);
        var target = new RuntimeTarget(Options.Create(new GatewayOptions()), time);
        var candidate = new Candidate(ServedByKinds.PersonalRuntime, "lat_hostile", CapacityClasses.Personal, "m", Prices.Free, target,
            new RuntimeTarget.Link(connection, connection.Hello.Capabilities[0]));
        var body = """{"model":"lattice:personal:lat_hostile","messages":[{"role":"user","content":"hi"}],"stream":true}"""u8.ToArray();
        var request = new TaskRequest
        {
            Task = new TaskClass(BuiltInTaskClasses.ChatCompletions, InputSchema.TryCreate("{}", out _)!, true, TaskContentKind.Json,
                "/chat/completions", "usage", true, DateTimeOffset.UnixEpoch),
            Model = "lattice:personal:lat_hostile",
            Caller = new Caller(CredentialKind.ApiKey, "ws_1", "key_1", [Scopes.Inference]),
            Input = new TaskInput { Body = body, Length = body.Length, Model = "lattice:personal:lat_hostile", Stream = true, ContentType = "application/json" },
            RequestId = "req_credit",
            ReceivedAt = time.GetUtcNow(),
            StartTimestamp = time.GetTimestamp(),
        };
        var opening = target.OpenAsync(request, candidate, CancellationToken.None).AsTask();
        var buffer = new byte[64 * 1024];
        var received = await daemon.ReceiveAsync(buffer.AsMemory(), CancellationToken.None).AsTask().WaitAsync(Wait);
        Assert.True(Frame.TryRead(buffer.AsMemory(0, received.Count), out var type, out var id, out _));
        Assert.Equal(FrameType.Dispatch, type);

        // The whole window, in 4 KiB frames; the relay takes it a read at a time.
        var chunk = Frame.Raw(FrameType.Data, id, new byte[4096]);
        for (var i = 0; i < RuntimeLinkLimits.WindowBytes / 4096; i++)
        {
            await SendAsync(daemon, chunk);
        }
        var opened = await opening.WaitAsync(Wait);
        await using var response = opened.Response!;
        long taken = 0;
        while (taken < RuntimeLinkLimits.CreditStepBytes)
        {
            var read = await response.ReadAsync().AsTask().WaitAsync(Wait);
            Assert.False(read.Completed);
            taken += read.Data.Length;
        }
        // Bytes count as taken once the relay asks for more; a step's worth goes back to the daemon as one credit frame.
        var next = response.ReadAsync().AsTask();
        received = await daemon.ReceiveAsync(buffer.AsMemory(), CancellationToken.None).AsTask().WaitAsync(Wait);
        Assert.True(Frame.TryRead(buffer.AsMemory(0, received.Count), out type, out var creditedId, out var payload));
        Assert.Equal(FrameType.Credit, type);
        Assert.Equal(id, creditedId);
        Assert.True(Frame.TryReadCredit(payload.Span, out var credit));
        Assert.Equal(taken, credit);
        Assert.Equal(RuntimeLinkLimits.WindowBytes - taken, connection.BufferedBytes);
        await next.WaitAsync(Wait);
        connection.Abort();
        await run.WaitAsync(Wait);
    }
}
