using System.Buffers;
using System.Net.WebSockets;
using System.Threading.Channels;
using Lattice.Protocol.Runtime;

namespace Lattice.Gateway.Runtimes;

/// <summary>An event of one dispatch, as the runtime reports it.</summary>
/// <remarks>
/// The payload of a relayed frame lives in a pooled array (<see cref="Rented"/>); the reader hands it back with
/// <see cref="Release"/> once it has copied the bytes on. An event that is never released is simply collected.
/// </remarks>
public readonly record struct DispatchEvent(FrameType Type, ReadOnlyMemory<byte> Payload, byte[]? Rented = null)
{
    public void Release()
    {
        if (Rented is not null)
        {
            ArrayPool<byte>.Shared.Return(Rented);
        }
    }
}

/// <summary>One request in flight over a runtime link: its events arrive in order on <see cref="Events"/>.</summary>
public sealed class RuntimeDispatch(uint id, RuntimeConnection connection, long startedAt)
{
    private readonly Channel<DispatchEvent> _events = Channel.CreateUnbounded<DispatchEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private long _lastFrameAt = startedAt;

    public uint Id { get; } = id;
    public RuntimeConnection Connection { get; } = connection;
    public ChannelReader<DispatchEvent> Events => _events.Reader;

    /// <summary>When (a <see cref="TimeProvider"/> timestamp) the last frame of this dispatch arrived, else when it was sent.</summary>
    public long LastFrameAt => Volatile.Read(ref _lastFrameAt);

    internal void Post(DispatchEvent e, long receivedAt)
    {
        // Progress is noted on arrival, not when the relay gets to it: a slow client does not make the runtime idle.
        Volatile.Write(ref _lastFrameAt, receivedAt);
        if (!_events.Writer.TryWrite(e))
        {
            e.Release();
        }
    }

    /// <summary>The link went away: the reader sees the channel complete without an End.</summary>
    internal void Fail() => _events.Writer.TryComplete(new RuntimeLinkLostException());
}

/// <summary>The link dropped while a dispatch was in flight.</summary>
public sealed class RuntimeLinkLostException() : Exception("The runtime's connection was lost.");

/// <summary>
/// One daemon's live WebSocket: a reader that demultiplexes frames by dispatch id, a sender that sends queued
/// frames in order, and a heartbeat (driven by <see cref="RuntimeRegistry"/>'s one timer for all links) that
/// declares the peer dead after <see cref="DeadAfter"/> of silence.
/// </summary>
/// <remarks>
/// A thousand idle links must stay cheap, so an idle link holds no receive buffer (it waits with a zero-byte
/// read), no timer, no send loop and no dispatch table: the sender runs only while frames are queued, and the
/// table exists only while dispatches are in flight.
/// </remarks>
public sealed partial class RuntimeConnection
{
    public static readonly TimeSpan PingEvery = TimeSpan.FromSeconds(5);
    public static readonly TimeSpan DeadAfter = TimeSpan.FromSeconds(15);

    private readonly WebSocket _socket;
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _closed = new();
    private readonly SemaphoreSlim _slots;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    // Under _gate: frames waiting to be sent; whether a sender is running (or the link has not started yet);
    // the dispatches in flight. The queue and the table are created on first use (a link never dispatched to
    // has no table).
    private Queue<byte[]>? _outbound;
    private bool _sending = true;
    private bool _ended;
    private Dictionary<uint, RuntimeDispatch>? _dispatches;
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

    public int InFlight
    {
        get
        {
            lock (_gate)
            {
                return _dispatches?.Count ?? 0;
            }
        }
    }

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
        // A free slot is taken without allocating; only a caller that has to queue links the two tokens.
        if (!_slots.Wait(0))
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
        }
        var id = Interlocked.Increment(ref _nextId);
        var dispatch = new RuntimeDispatch(id, this, _time.GetTimestamp());
        bool tracked;
        lock (_gate)
        {
            tracked = !_ended;
            if (tracked)
            {
                (_dispatches ??= []).Add(id, dispatch);
            }
        }
        if (!tracked)
        {
            _slots.Release();
            throw new RuntimeLinkLostException();
        }
        if (_closed.IsCancellationRequested)
        {
            Complete(id);
            throw new RuntimeLinkLostException();
        }
        Send(Frame.Dispatch(id, header, body.Span));
        return dispatch;
    }

    private bool IsTracked(uint id)
    {
        lock (_gate)
        {
            return _dispatches is not null && _dispatches.ContainsKey(id);
        }
    }

    /// <summary>Tells the runtime to stop a dispatch (the client went away) and forgets it.</summary>
    public void Cancel(RuntimeDispatch dispatch)
    {
        if (IsTracked(dispatch.Id))
        {
            Send(Frame.Raw(FrameType.Cancel, dispatch.Id, default));
            Complete(dispatch.Id);
        }
    }

    /// <summary>Tells the runtime to stop a dispatch but keeps listening: it answers with an end frame counting what it generated.</summary>
    public void SendCancel(RuntimeDispatch dispatch)
    {
        if (IsTracked(dispatch.Id))
        {
            Send(Frame.Raw(FrameType.Cancel, dispatch.Id, default));
        }
    }

    /// <summary>Releases the dispatch's slot once its reader is done with it.</summary>
    public void Complete(uint id)
    {
        bool removed;
        lock (_gate)
        {
            removed = _dispatches is not null && _dispatches.Remove(id);
        }
        if (removed)
        {
            _slots.Release();
        }
    }

    /// <summary>Cuts the link now (revocation, replacement by a newer connection, shutdown).</summary>
    public void Abort()
    {
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
        _socket.Abort();
    }

    /// <summary>
    /// One heartbeat tick (every <see cref="PingEvery"/>, from the registry's timer): drops the link when the peer
    /// has been silent for more than <see cref="DeadAfter"/>, else pings it.
    /// </summary>
    internal void Heartbeat()
    {
        if (_closed.IsCancellationRequested)
        {
            return;
        }
        if (_time.GetElapsedTime(Interlocked.Read(ref _lastHeard)) > DeadAfter)
        {
            LogPeerDead(_logger, LatticeId);
            Abort();
            return;
        }
        var frame = new byte[Frame.HeaderSize + 8];
        Frame.WriteHeader(frame, FrameType.Ping, 0);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(frame.AsSpan(Frame.HeaderSize), _time.GetTimestamp());
        Send(frame);
    }

    /// <summary>Runs the link until it ends; every dispatch still in flight then fails.</summary>
    public async Task RunAsync(CancellationToken stopping)
    {
        // Frames queued before the link ran (dispatches routed while the welcome was going out) leave now.
        StartSending();
        using var onStopping = stopping.UnsafeRegister(static s => ((RuntimeConnection)s!).Abort(), this);
        try
        {
            await ReadLoopAsync();
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException)
        {
            LogLinkEnded(_logger, LatticeId, ex.GetType().Name);
        }
        finally
        {
            _closed.Cancel();
            RuntimeDispatch[] failing;
            lock (_gate)
            {
                _ended = true;
                _outbound = null;
                failing = _dispatches is { Count: > 0 } ? [.. _dispatches.Values] : [];
            }
            foreach (var dispatch in failing)
            {
                dispatch.Fail();
            }
            _socket.Abort();
        }
    }

    // A message is read into a pooled buffer of this size, grown for a larger message; between messages the link
    // holds no buffer at all.
    private const int ReceiveBufferBytes = 4 * 1024;

    private async Task ReadLoopAsync()
    {
        // Abort() (revocation, replacement, the heartbeat, shutdown) aborts the socket, which ends any receive:
        // no cancellation token needs to be registered on every read.
        while (!_closed.IsCancellationRequested)
        {
            // Idle: wait for the next message without holding a buffer.
            var peek = await _socket.ReceiveAsync(Memory<byte>.Empty, CancellationToken.None);
            if (peek.MessageType == WebSocketMessageType.Close)
            {
                return;
            }
            if (peek.EndOfMessage)
            {
                continue; // an empty message: not a frame
            }

            var buffer = ArrayPool<byte>.Shared.Rent(ReceiveBufferBytes);
            try
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
                    result = await _socket.ReceiveAsync(buffer.AsMemory(length), CancellationToken.None);
                    if (result.MessageType == WebSocketMessageType.Close)
                    {
                        return;
                    }
                    length += result.Count;
                }
                while (!result.EndOfMessage);

                var heard = _time.GetTimestamp();
                Interlocked.Exchange(ref _lastHeard, heard);
                if (Frame.TryRead(buffer.AsMemory(0, length), out var type, out var id, out var payload))
                {
                    Dispatch(type, id, payload, heard);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    private void Dispatch(FrameType type, uint id, ReadOnlyMemory<byte> payload, long receivedAt)
    {
        switch (type)
        {
            case FrameType.Ping:
                Send(Frame.Raw(FrameType.Pong, 0, payload.Span));
                break;
            case FrameType.Pong:
                break;
            case FrameType.ResponseStart or FrameType.Data or FrameType.End or FrameType.Error:
                RuntimeDispatch? dispatch;
                lock (_gate)
                {
                    if (_dispatches is null || !_dispatches.TryGetValue(id, out dispatch))
                    {
                        return;
                    }
                }
                // The receive buffer is reused, so the payload is copied once, into a pooled array the reader returns.
                var copy = ArrayPool<byte>.Shared.Rent(Math.Max(payload.Length, 1));
                payload.Span.CopyTo(copy);
                dispatch.Post(new DispatchEvent(type, copy.AsMemory(0, payload.Length), copy), receivedAt);
                break;
        }
    }

    /// <summary>Queues a frame; a sender runs while frames are queued (on the caller's thread until a send has to wait).</summary>
    private void Send(byte[] frame)
    {
        lock (_gate)
        {
            if (_ended)
            {
                return;
            }
            (_outbound ??= new Queue<byte[]>()).Enqueue(frame);
            if (_sending)
            {
                return;
            }
            _sending = true;
        }
        _ = SendQueuedAsync();
    }

    private void StartSending()
    {
        lock (_gate)
        {
            if (_outbound is not { Count: > 0 })
            {
                _sending = false;
                return;
            }
        }
        _ = SendQueuedAsync();
    }

    private async Task SendQueuedAsync()
    {
        try
        {
            while (true)
            {
                byte[] frame;
                lock (_gate)
                {
                    if (_ended || _outbound is null || !_outbound.TryDequeue(out frame!))
                    {
                        _sending = false;
                        return;
                    }
                }
                await _socket.SendAsync(frame, WebSocketMessageType.Binary, true, CancellationToken.None);
            }
        }
        catch (Exception)
        {
            // Whatever stopped the send (the link aborted, the socket closed or disposed) ends the link.
            lock (_gate)
            {
                _sending = false;
                _outbound = null;
            }
            Abort();
        }
    }

    [LoggerMessage(EventId = 4001, Level = LogLevel.Information, Message = "Runtime {LatticeId} link ended ({Reason})")]
    private static partial void LogLinkEnded(ILogger logger, string latticeId, string reason);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Warning, Message = "Runtime {LatticeId} sent nothing for 15 s; dropping its link")]
    private static partial void LogPeerDead(ILogger logger, string latticeId);
}
