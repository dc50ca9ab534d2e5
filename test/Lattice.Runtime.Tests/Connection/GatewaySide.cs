using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using Lattice.Protocol.Runtime;
using Lattice.Runtime.Connection;
using Lattice.Runtime.Engines;
using Lattice.Runtime.Telemetry;
using Microsoft.Extensions.Time.Testing;

namespace Lattice.Runtime.Tests.Connection;

/// <summary>One frame as the gateway reads it.</summary>
public sealed record ReceivedFrame(FrameType Type, uint Id, byte[] Payload)
{
    public string Text => Encoding.UTF8.GetString(Payload);
}

/// <summary>
/// The gateway's end of a link to a <see cref="RuntimeClient"/>, over a loopback TCP connection with WebSockets on
/// both ends (no HTTP upgrade): it welcomes the daemon, sends dispatches and cancels, and reads frames. The daemon's
/// clock is fake and never advanced, so no heartbeat frame interleaves with the dispatches.
/// </summary>
public sealed class GatewaySide : IAsyncDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private readonly WebSocket _socket;
    private readonly WebSocket _daemonSocket;
    private readonly TcpClient[] _connections;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task<string?> _serve;
    private readonly byte[] _buffer = new byte[1 << 20];

    private GatewaySide(WebSocket socket, WebSocket daemonSocket, RuntimeClient client, TcpClient[] connections)
    {
        Client = client;
        _socket = socket;
        _daemonSocket = daemonSocket;
        _connections = connections;
        _serve = client.ServeAsync(daemonSocket, _stop.Token);
    }

    /// <summary>The daemon.</summary>
    public RuntimeClient Client { get; }

    /// <summary>What the daemon said first.</summary>
    public HelloMessage Hello { get; private set; } = null!;

    /// <summary>Connects a daemon serving <paramref name="engines"/> and completes the handshake.</summary>
    public static Task<GatewaySide> ConnectAsync(int maxConcurrency, params IEngine[] engines) =>
        ConnectAsync(new WelcomeMessage("lat_test", 5), maxConcurrency, engines);

    /// <summary>Connects a daemon serving <paramref name="engines"/> and welcomes it with <paramref name="welcome"/>.</summary>
    public static Task<GatewaySide> ConnectAsync(WelcomeMessage welcome, int maxConcurrency, params IEngine[] engines) =>
        ConnectAsync(welcome, null, maxConcurrency, engines);

    /// <summary>Connects a daemon that counts into <paramref name="metrics"/>.</summary>
    public static Task<GatewaySide> ConnectAsync(RuntimeMetrics metrics, int maxConcurrency, params IEngine[] engines) =>
        ConnectAsync(new WelcomeMessage("lat_test", 5), metrics, maxConcurrency, engines);

    private static async Task<GatewaySide> ConnectAsync(WelcomeMessage welcome, RuntimeMetrics? metrics, int maxConcurrency, IEngine[] engines)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var daemonTcp = new TcpClient();
        var accepting = listener.AcceptTcpClientAsync();
        await daemonTcp.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port).WaitAsync(Timeout);
        var gatewayTcp = await accepting.WaitAsync(Timeout);
        var gateway = WebSocket.CreateFromStream(gatewayTcp.GetStream(), new WebSocketCreationOptions { IsServer = true, KeepAliveInterval = TimeSpan.Zero });
        var daemon = WebSocket.CreateFromStream(daemonTcp.GetStream(), new WebSocketCreationOptions { IsServer = false, KeepAliveInterval = TimeSpan.Zero });

        var client = new RuntimeClient(new RuntimeCredentials("http://127.0.0.1:1", "lat_test", "lrt_test"), new EngineSet(engines), maxConcurrency,
            new FakeTimeProvider(DateTimeOffset.UnixEpoch), metrics: metrics);
        var side = new GatewaySide(gateway, daemon, client, [gatewayTcp, daemonTcp]);
        var hello = await side.ReceiveAsync();
        Assert.Equal(FrameType.Hello, hello.Type);
        side.Hello = Frame.ReadJson(hello.Payload, ProtocolJsonContext.Default.HelloMessage)!;
        await side.SendAsync(Frame.Json(FrameType.Welcome, 0, welcome, ProtocolJsonContext.Default.WelcomeMessage));
        return side;
    }

    public Task DispatchAsync(uint id, string task, string model, string json, bool stream) =>
        SendAsync(Frame.Dispatch(id, new DispatchHeader(task, model, "application/json", stream), Encoding.UTF8.GetBytes(json)));

    public Task CancelAsync(uint id) => SendAsync(Frame.Raw(FrameType.Cancel, id, default));

    public Task CreditAsync(uint id, uint bytes) => SendAsync(Frame.Credit(id, bytes));

    public Task PingAsync() => SendAsync(Frame.Raw(FrameType.Ping, 0, new byte[8]));

    public Task<ReceivedFrame> ReceiveAsync() => ReceiveAsync(_socket, _buffer, CancellationToken.None);

    /// <summary>The next frame the daemon sent on <paramref name="socket"/> (read into <paramref name="buffer"/>).</summary>
    public static async Task<ReceivedFrame> ReceiveAsync(WebSocket socket, byte[] buffer, CancellationToken cancellationToken)
    {
        var length = 0;
        ValueWebSocketReceiveResult result;
        do
        {
            result = await socket.ReceiveAsync(buffer.AsMemory(length), cancellationToken).AsTask().WaitAsync(Timeout, cancellationToken);
            Assert.NotEqual(WebSocketMessageType.Close, result.MessageType);
            length += result.Count;
        }
        while (!result.EndOfMessage);
        Assert.True(Frame.TryRead(buffer.AsMemory(0, length), out var type, out var id, out var payload));
        return new ReceivedFrame(type, id, payload.ToArray());
    }

    /// <summary>Frames until (and with) the End or Error of dispatch <paramref name="id"/>; frames of other dispatches included.</summary>
    public async Task<List<ReceivedFrame>> ReceiveUntilDoneAsync(uint id)
    {
        var frames = new List<ReceivedFrame>();
        while (true)
        {
            var frame = await ReceiveAsync();
            frames.Add(frame);
            if (frame.Id == id && frame.Type is FrameType.End or FrameType.Error)
            {
                return frames;
            }
        }
    }

    public static DispatchEnd ReadEnd(ReceivedFrame frame)
    {
        Assert.Equal(FrameType.End, frame.Type);
        return Frame.ReadJson(frame.Payload, ProtocolJsonContext.Default.DispatchEnd)!;
    }

    private Task SendAsync(byte[] frame) =>
        _socket.SendAsync(frame, WebSocketMessageType.Binary, true, CancellationToken.None).WaitAsync(Timeout);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _serve.WaitAsync(Timeout);
        _socket.Dispose();
        _daemonSocket.Dispose();
        foreach (var connection in _connections)
        {
            connection.Dispose();
        }
        _stop.Dispose();
    }
}
