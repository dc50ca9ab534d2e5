using System.Net.WebSockets;
using Lattice.Gateway.Runtimes;
using Lattice.Protocol.Runtime;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace Lattice.Gateway.Tests.Runtimes;

/// <summary>The registry's one heartbeat timer: every link is pinged every 5 s and dropped after 15 s of silence.</summary>
public sealed class HeartbeatTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private static (WebSocket Gateway, WebSocket Daemon) Pair() => SocketPair.Create();

    private static RuntimeConnection Connection(WebSocket socket, TimeProvider time) =>
        new(socket, "lat_heartbeat", "ws_1", false, new HelloMessage("1", 1, []), time, NullLogger.Instance);

    private static async Task<FrameType> ReceiveAsync(WebSocket socket)
    {
        var buffer = new byte[64];
        var result = await socket.ReceiveAsync(buffer.AsMemory(), CancellationToken.None).AsTask().WaitAsync(Timeout);
        Assert.True(Frame.TryRead(buffer.AsMemory(0, result.Count), out var type, out _, out _));
        return type;
    }

    [Fact]
    public async Task A_silent_peer_is_pinged_every_5_s_and_dropped_after_15_s()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using var registry = new RuntimeRegistry(time);
        var (gatewaySide, daemonSide) = Pair();
        var connection = Connection(gatewaySide, time);
        registry.Add(connection);
        var run = connection.RunAsync(CancellationToken.None);

        for (var i = 0; i < 3; i++)
        {
            time.Advance(RuntimeConnection.PingEvery);
            Assert.Equal(FrameType.Ping, await ReceiveAsync(daemonSide));
            Assert.False(connection.Closed.IsCancellationRequested);
        }
        // 15 s of silence is not yet "more than 15 s"; the next tick (20 s) drops the link.
        time.Advance(RuntimeConnection.PingEvery);
        await run.WaitAsync(Timeout);
        Assert.True(connection.Closed.IsCancellationRequested);
        Assert.Null(registry.Find("lat_heartbeat"));
    }

    [Fact]
    public async Task A_peer_that_answers_stays_connected()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using var registry = new RuntimeRegistry(time);
        var (gatewaySide, daemonSide) = Pair();
        var connection = Connection(gatewaySide, time);
        registry.Add(connection);
        var run = connection.RunAsync(CancellationToken.None);

        for (var i = 0; i < 8; i++)
        {
            time.Advance(RuntimeConnection.PingEvery);
            Assert.Equal(FrameType.Ping, await ReceiveAsync(daemonSide));
            await daemonSide.SendAsync(Frame.Raw(FrameType.Pong, 0, new byte[8]), WebSocketMessageType.Binary, true, CancellationToken.None);
            // The gateway has read the pong before the clock moves on.
            await daemonSide.SendAsync(Frame.Raw(FrameType.Ping, 0, new byte[8]), WebSocketMessageType.Binary, true, CancellationToken.None);
            Assert.Equal(FrameType.Pong, await ReceiveAsync(daemonSide));
        }
        Assert.False(connection.Closed.IsCancellationRequested);
        Assert.Same(connection, registry.Find("lat_heartbeat"));
        connection.Abort();
        await run.WaitAsync(Timeout);
    }
}
