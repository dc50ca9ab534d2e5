using System.Buffers;
using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Threading.Channels;
using Lattice.Protocol.Runtime;

namespace Lattice.Gateway.Runtimes;

/// <summary>An event of one dispatch, as the runtime reports it.</summary>
public readonly record struct DispatchEvent(FrameType Type, ReadOnlyMemory<byte> Payload);

/// <summary>One request in flight over a runtime link: its events arrive in order on <see cref="Events"/>.</summary>
public sealed class RuntimeDispatch(uint id, RuntimeConnection connection)
{
    private readonly Channel<DispatchEvent> _events = Channel.CreateUnbounded<DispatchEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });

    public uint Id { get; } = id;
    public RuntimeConnection Connection { get; } = connection;
    public ChannelReader<DispatchEvent> Events => _events.Reader;

    internal void Post(DispatchEvent e) => _events.Writer.TryWrite(e);

    /// <summary>The link went away: the reader sees the channel complete without an End.</summary>
    internal void Fail() => _events.Writer.TryComplete(new RuntimeLinkLostException());
}

/// <summary>The link dropped while a dispatch was in flight.</summary>
public sealed class RuntimeLinkLostException() : Exception("The runtime's connection was lost.");

/// <summary>
/// One daemon's live WebSocket: a reader that demultiplexes frames by dispatch id, a single writer that sends
/// frames in order, and a heartbeat that declares the peer dead after <see cref="DeadAfter"/> of silence.
/// </summary>
public sealed partial class RuntimeConnection
{
    public static readonly TimeSpan PingEvery = TimeSpan.FromSeconds(5);
    public static readonly TimeSpan DeadAfter = TimeSpan.FromSeconds(15);

    private readonly WebSocket _socket;
    private readonly Channel<byte[]> _outbound = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = true });
    private readonly ConcurrentDictionary<uint, RuntimeDispatch> _dispatches = new();
    private readonly CancellationTokenSource _closed = new();
    private readonly SemaphoreSlim _slots;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private long _lastHeard;
    private uint _nextId;

    public RuntimeConnection(WebSocket socket, string latticeId, string workspaceId, bool hosted, HelloMessage hello, TimeProvider time, ILogger logger)
    {
        _socket = socket;
        LatticeId = latticeId;
        WorkspaceId = workspaceId;
        Hosted = hosted;
        Hello = hello;
        _time = time;
        _logger = logger;
        _slots = new SemaphoreSlim(Math.Clamp(hello.MaxConcurrency, 1, 1024));
        _lastHeard = time.GetTimestamp();
    }

    public string LatticeId { get; }
    public string WorkspaceId { get; }
    public bool Hosted { get; }
    public HelloMessage Hello { get; }
    public CancellationToken Closed => _closed.Token;
    public int InFlight => _dispatches.Count;

    /// <summary>The runtime's model for <paramref name="task"/>: the named one if it serves it, else its first (default) one.</summary>
    public CapabilityInfo? FindCapability(string task, string? model = null)
    {
        foreach (var c in Hello.Capabilities)
        {
            if (c.Task == task && (model is null || c.Model == model))
            {
                return c;
            }
        }
        return null;
    }

    /// <summary>Waits for a free slot (the runtime's advertised concurrency), then sends the dispatch.</summary>
    public async ValueTask<RuntimeDispatch> StartDispatchAsync(DispatchHeader header, ReadOnlyMemory<byte> body, CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _closed.Token);
        try
        {
            await _slots.WaitAsync(linked.Token);
        }
        catch (OperationCanceledException) when (_closed.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new RuntimeLinkLostException();
        }
        var id = Interlocked.Increment(ref _nextId);
        var dispatch = new RuntimeDispatch(id, this);
        _dispatches[id] = dispatch;
        if (_closed.IsCancellationRequested)
        {
            Complete(id);
            throw new RuntimeLinkLostException();
        }
        _outbound.Writer.TryWrite(Frame.Dispatch(id, header, body.Span));
        return dispatch;
    }

    /// <summary>Tells the runtime to stop a dispatch (the client went away) and forgets it.</summary>
    public void Cancel(RuntimeDispatch dispatch)
    {
        if (_dispatches.ContainsKey(dispatch.Id))
        {
            _outbound.Writer.TryWrite(Frame.Raw(FrameType.Cancel, dispatch.Id, default));
            Complete(dispatch.Id);
        }
    }

    /// <summary>Releases the dispatch's slot once its reader is done with it.</summary>
    public void Complete(uint id)
    {
        if (_dispatches.TryRemove(id, out _))
        {
            _slots.Release();
        }
    }

    /// <summary>Cuts the link now (revocation, replacement by a newer connection, shutdown).</summary>
    public void Abort()
    {
        _closed.Cancel();
        _socket.Abort();
    }

    /// <summary>Runs the link until it ends; every dispatch still in flight then fails.</summary>
    public async Task RunAsync(CancellationToken stopping)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(stopping, _closed.Token);
        var writer = WriteLoopAsync(linked.Token);
        var heartbeat = HeartbeatAsync(linked.Token);
        try
        {
            await ReadLoopAsync(linked.Token);
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException)
        {
            LogLinkEnded(_logger, LatticeId, ex.GetType().Name);
        }
        finally
        {
            _closed.Cancel();
            _outbound.Writer.TryComplete();
            foreach (var (_, dispatch) in _dispatches)
            {
                dispatch.Fail();
            }
            _socket.Abort();
            await Task.WhenAll(writer, heartbeat).ContinueWith(_ => { }, TaskScheduler.Default);
        }
    }

    // An idle link holds only a small receive buffer: a thousand connected runtimes must stay cheap. A larger
    // message grows it for as long as that message takes, then it shrinks back.
    private const int IdleBufferBytes = 4 * 1024;

    private async Task ReadLoopAsync(CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(IdleBufferBytes);
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                var length = 0;
                ValueWebSocketReceiveResult result;
                do
                {
                    if (length == buffer.Length)
                    {
                        if (buffer.Length >= Frame.MaxFrameBytes)
                        {
                            await _socket.CloseOutputAsync(WebSocketCloseStatus.MessageTooBig, "frame too large", CancellationToken.None);
                            return;
                        }
                        var bigger = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                        buffer.AsSpan(0, length).CopyTo(bigger);
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = bigger;
                    }
                    result = await _socket.ReceiveAsync(buffer.AsMemory(length), cancellationToken);
                    if (result.MessageType == WebSocketMessageType.Close)
                    {
                        return;
                    }
                    length += result.Count;
                }
                while (!result.EndOfMessage);

                Interlocked.Exchange(ref _lastHeard, _time.GetTimestamp());
                if (!Frame.TryRead(buffer.AsMemory(0, length), out var type, out var id, out var payload))
                {
                    continue;
                }
                Dispatch(type, id, payload);
                if (buffer.Length > IdleBufferBytes * 4)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = ArrayPool<byte>.Shared.Rent(IdleBufferBytes);
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void Dispatch(FrameType type, uint id, ReadOnlyMemory<byte> payload)
    {
        switch (type)
        {
            case FrameType.Ping:
                _outbound.Writer.TryWrite(Frame.Raw(FrameType.Pong, 0, payload.Span));
                break;
            case FrameType.Pong:
                break;
            case FrameType.ResponseStart or FrameType.Data or FrameType.End or FrameType.Error:
                if (_dispatches.TryGetValue(id, out var dispatch))
                {
                    // The receive buffer is reused, so the payload is copied once for the reader.
                    dispatch.Post(new DispatchEvent(type, payload.ToArray()));
                }
                break;
        }
    }

    private async Task WriteLoopAsync(CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var frame in _outbound.Reader.ReadAllAsync(cancellationToken))
            {
                await _socket.SendAsync(frame, WebSocketMessageType.Binary, true, cancellationToken);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException)
        {
            _closed.Cancel();
        }
    }

    private async Task HeartbeatAsync(CancellationToken cancellationToken)
    {
        try
        {
            using var timer = new PeriodicTimer(PingEvery, _time);
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                if (_time.GetElapsedTime(Interlocked.Read(ref _lastHeard)) > DeadAfter)
                {
                    LogPeerDead(_logger, LatticeId);
                    Abort();
                    return;
                }
                var stamp = new byte[8];
                System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(stamp, _time.GetTimestamp());
                _outbound.Writer.TryWrite(Frame.Raw(FrameType.Ping, 0, stamp));
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    [LoggerMessage(EventId = 4001, Level = LogLevel.Information, Message = "Runtime {LatticeId} link ended ({Reason})")]
    private static partial void LogLinkEnded(ILogger logger, string latticeId, string reason);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Warning, Message = "Runtime {LatticeId} sent nothing for 15 s; dropping its link")]
    private static partial void LogPeerDead(ILogger logger, string latticeId);
}
