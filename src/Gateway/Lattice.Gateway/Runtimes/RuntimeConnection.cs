using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net.WebSockets;
using System.Threading.Channels;
using Lattice.Protocol.Runtime;

namespace Lattice.Gateway.Runtimes;

/// <summary>
/// A control event of one dispatch, as the runtime reports it: the response start (<see cref="Implicit"/> when the
/// runtime began with data instead), the end, or an error. The payload lives in a pooled array (<see cref="Rented"/>);
/// the reader hands it back with <see cref="Release"/>. The response body does not come this way but through
/// <see cref="RuntimeDispatch.Body"/>.
/// </summary>
public readonly record struct DispatchEvent(FrameType Type, ReadOnlyMemory<byte> Payload, byte[]? Rented = null, bool Implicit = false)
{
    public void Release()
    {
        if (Rented is not null)
        {
            ArrayPool<byte>.Shared.Return(Rented);
        }
    }
}

/// <summary>
/// One request in flight over a runtime link. Its control events (start, end or error — at most one of each) arrive
/// on <see cref="Events"/>; its body bytes on <see cref="Body"/>, a pipe that never holds more than
/// <see cref="RuntimeLinkLimits.WindowBytes"/>.
/// </summary>
public sealed class RuntimeDispatch : IIdleProgress
{
    private readonly Channel<DispatchEvent> _events = Channel.CreateUnbounded<DispatchEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private readonly Pipe _body;
    private long _lastFrameAt;
    private long _buffered;
    private int _bodyDone;

    internal RuntimeDispatch(uint id, RuntimeConnection connection, long startedAt, bool flowControl)
    {
        Id = id;
        Connection = connection;
        _lastFrameAt = startedAt;
        // With flow control the daemon keeps within the window itself (the read loop checks); from an older daemon
        // the pipe's own backpressure stops the read loop at the window.
        _body = new Pipe(new PipeOptions(
            pauseWriterThreshold: flowControl ? 0 : RuntimeLinkLimits.WindowBytes,
            resumeWriterThreshold: flowControl ? 0 : RuntimeLinkLimits.WindowBytes / 2,
            minimumSegmentSize: 4096,
            useSynchronizationContext: false));
    }

    public uint Id { get; }
    public RuntimeConnection Connection { get; }
    public ChannelReader<DispatchEvent> Events => _events.Reader;

    /// <summary>The response body, in order. Completed after the last byte; faulted with <see cref="RuntimeLinkLostException"/> when the link drops.</summary>
    public PipeReader Body => _body.Reader;

    /// <summary>Body bytes received and not yet taken by the relay (at most <see cref="RuntimeLinkLimits.WindowBytes"/>).</summary>
    public long BufferedBytes => Interlocked.Read(ref _buffered);

    /// <summary>When (a <see cref="TimeProvider"/> timestamp) the last frame of this dispatch arrived, else when it was sent.</summary>
    public long LastFrameAt => Volatile.Read(ref _lastFrameAt);

    // Read-loop state (only the link's read loop touches these).
    internal bool Started;
    internal bool Ended;
    internal bool Discarding;
    private bool _writerDone;

    internal PipeWriter BodyWriter => _body.Writer;

    // Progress is noted on arrival, not when the relay gets to it: a slow client does not make the runtime idle.
    internal void Touch(long receivedAt) => Volatile.Write(ref _lastFrameAt, receivedAt);

    internal void Received(int bytes) => Interlocked.Add(ref _buffered, bytes);

    internal void Taken(int bytes) => Interlocked.Add(ref _buffered, -bytes);

    internal void Post(DispatchEvent e)
    {
        if (!_events.Writer.TryWrite(e))
        {
            e.Release();
        }
    }

    /// <summary>The terminal frame arrived: the body is complete (read loop only).</summary>
    internal void CompleteBody()
    {
        if (!_writerDone)
        {
            _writerDone = true;
            _body.Writer.Complete();
        }
    }

    /// <summary>The reader is done with the body (relayed, cancelled or abandoned): later bytes are dropped, a paused read loop resumes.</summary>
    internal void StopBody()
    {
        if (Interlocked.Exchange(ref _bodyDone, 1) == 0)
        {
            _body.Reader.Complete();
        }
    }

    /// <summary>The link went away (after its read loop ended): the reader sees the body fail and the events complete without an end.</summary>
    internal void Fail()
    {
        var lost = new RuntimeLinkLostException();
        if (!_writerDone)
        {
            _writerDone = true;
            _body.Writer.Complete(lost);
        }
        _events.Writer.TryComplete(lost);
    }
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
/// <para>
/// Nothing the daemon sends can make the link hold more than a fixed amount (<see cref="RuntimeLinkLimits"/>): a
/// frame is held whole only up to <see cref="RuntimeLinkLimits.MaxFrameBytes"/>; body bytes go into their dispatch's
/// window and no further (credit for a daemon with flow control, a paused read loop for an older one); a flood of
/// pings is answered by one pending pong; and a peer that stops reading is dropped like a silent one.
/// </para>
/// </remarks>
public sealed partial class RuntimeConnection
{
    public static readonly TimeSpan PingEvery = TimeSpan.FromSeconds(5);
    public static readonly TimeSpan DeadAfter = TimeSpan.FromSeconds(15);

    /// <summary>A pong echoes at most this much of its ping (the protocol's ping carries an 8-byte timestamp).</summary>
    private const int PongPayloadBytes = 8;

    private readonly WebSocket _socket;
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _closed = new();
    private readonly SemaphoreSlim _slots;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly bool _flowControl;
    // Under _gate: frames waiting to be sent and their bytes; the answer to the latest ping not yet sent; whether a
    // sender is running (or the link has not started yet) and since when its current send has been waiting; the
    // dispatches in flight. The queue and the table are created on first use (a link never dispatched to has no table).
    private Queue<byte[]>? _outbound;
    private long _queuedBytes;
    private byte[]? _pong;
    private bool _sending = true;
    private long _sendStartedAt;
    private TimeSpan _sendAllowed;
    private bool _ended;
    private Dictionary<uint, RuntimeDispatch>? _dispatches;
    private long _lastHeard;
    private int _readPaused;
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
        _flowControl = hello.Features?.Contains(LinkFeatures.FlowControl) == true;
        WorkPublicKey = Protocol.Sealing.WorkKey.ParsePublic(hello.PublicWorkKey);
        OpensSealed = WorkPublicKey is not null && hello.Features?.Contains(LinkFeatures.SealedDispatch) == true;
        if (OpensSealed && hello.Features!.Contains(LinkFeatures.UsageLinkKey))
        {
            // A link key of this link's own, sent in the welcome: the daemon then tags its sealed usage with the key both
            // sides derive from it and the work key, which is checked with a hash rather than an ECDSA verification.
            _usageKey = Protocol.Sealing.UsageKey.ForGateway(WorkPublicKey!, out var linkPublicKey);
            _usageLinkKey = Protocol.Sealing.WorkKey.Base64Url(linkPublicKey);
        }
        _lastHeard = time.GetTimestamp();
    }

    public string LatticeId { get; }

    /// <summary>This link among the runtime's links over time, on any node: what its lease in Redis names.</summary>
    public string LinkId { get; } = Guid.NewGuid().ToString("N");

    public string WorkspaceId { get; }
    public bool Hosted { get; }
    public HelloMessage Hello { get; }

    /// <summary>The work key the daemon announced (SEC1), as stored in its record; null when it announced none.</summary>
    public byte[]? WorkPublicKey { get; }

    /// <summary>The daemon announced a work key and opens sealed dispatches with it.</summary>
    public bool OpensSealed { get; }

    private readonly Lock _verifying = new();
    private System.Security.Cryptography.ECDsa? _verifier;
    // The link's usage key and the public half of its link key (for the welcome), when the daemon takes one.
    private readonly Protocol.Sealing.UsageKey? _usageKey;
    private readonly string? _usageLinkKey;

    /// <summary>
    /// Whether a sealed dispatch's reported usage is authenticated by this link's work key: tagged with the link's usage
    /// key when the welcome agreed one (and then only so), else signed with the work key — imported once per link,
    /// verifications one at a time.
    /// </summary>
    public bool SignedByWorkKey(DispatchEnd end, string sealedRequestId)
    {
        if (WorkPublicKey is null)
        {
            return false;
        }
        if (_usageKey is { } usageKey)
        {
            return usageKey.Verify(end, sealedRequestId, LatticeId);
        }
        lock (_verifying)
        {
            _verifier ??= Protocol.Sealing.SealedUsage.Verifier(WorkPublicKey);
            return _verifier is not null && Protocol.Sealing.SealedUsage.Verify(end, _verifier, sealedRequestId, LatticeId);
        }
    }

    /// <summary>
    /// The link agreed a usage key: a sealed report's check is a hash, cheap enough to make as the end frame is read
    /// rather than on the thread pool.
    /// </summary>
    public bool TagsUsage => _usageKey is not null;

    public CancellationToken Closed => _closed.Token;

    /// <summary>Both sides keep credit (the daemon listed <see cref="LinkFeatures.FlowControl"/>).</summary>
    public bool FlowControl => _flowControl;

    /// <summary>
    /// The welcome for this link: the gateway's frame limit, the window when both sides keep credit, and the link key
    /// when the daemon tags its sealed usage with the link's usage key.
    /// </summary>
    public WelcomeMessage Welcome() =>
        new(LatticeId, (int)PingEvery.TotalSeconds, RuntimeLinkLimits.MaxFrameBytes, _flowControl ? RuntimeLinkLimits.WindowBytes : null, _usageLinkKey);

    /// <summary>The largest request body a dispatch to this daemon may carry (its frame limit less the largest header).</summary>
    public long MaxDispatchBodyBytes => (long)(Hello.MaxFrameBytes is > 0 and var max ? max : Frame.MaxFrameBytes) - Frame.HeaderSize - 2 - ushort.MaxValue;

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

    /// <summary>Response bytes of all dispatches held for the relay (at most the window per dispatch).</summary>
    public long BufferedBytes
    {
        get
        {
            lock (_gate)
            {
                long total = 0;
                if (_dispatches is not null)
                {
                    foreach (var (_, d) in _dispatches)
                    {
                        total += d.BufferedBytes;
                    }
                }
                return total;
            }
        }
    }

    /// <summary>Frames waiting to be sent (a pending pong included), and their bytes.</summary>
    public (int Frames, long Bytes) Queued
    {
        get
        {
            lock (_gate)
            {
                var pong = _pong is null ? 0 : 1;
                return ((_outbound?.Count ?? 0) + pong, _queuedBytes + (_pong?.Length ?? 0));
            }
        }
    }

    /// <summary>The read loop is waiting for a dispatch's relay to make room (only for a daemon without flow control).</summary>
    public bool ReadPaused => Volatile.Read(ref _readPaused) != 0;

    /// <summary>The runtime's model for <paramref name="task"/>: the named one if it serves it, else its first (default) one.</summary>
    public CapabilityInfo? FindCapability(string task, string? model = null) => FindCapability(Hello, task, model);

    /// <summary>The first capability in <paramref name="hello"/> serving <paramref name="task"/> (with <paramref name="model"/>, when named).</summary>
    public static CapabilityInfo? FindCapability(HelloMessage hello, string task, string? model = null)
    {
        foreach (var c in hello.Capabilities)
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
        var dispatch = new RuntimeDispatch(id, this, _time.GetTimestamp(), _flowControl);
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

    /// <summary>
    /// The relay took <paramref name="bytes"/> of a dispatch's body: the window has that much room again, and a daemon
    /// with flow control gets it back as credit once a step's worth has gathered. <paramref name="ungranted"/> is the
    /// reader's own count of bytes taken and not yet granted.
    /// </summary>
    internal void Taken(RuntimeDispatch dispatch, int bytes, ref int ungranted)
    {
        dispatch.Taken(bytes);
        if (!_flowControl)
        {
            return;
        }
        ungranted += bytes;
        if (ungranted >= RuntimeLinkLimits.CreditStepBytes && IsTracked(dispatch.Id))
        {
            Send(Frame.Credit(dispatch.Id, (uint)ungranted));
            ungranted = 0;
        }
    }

    /// <summary>Releases the dispatch's slot once its reader is done with it.</summary>
    public void Complete(uint id)
    {
        RuntimeDispatch? removed;
        lock (_gate)
        {
            if (_dispatches is null || !_dispatches.Remove(id, out removed))
            {
                removed = null;
            }
        }
        if (removed is not null)
        {
            removed.StopBody();
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
    /// has been silent for more than <see cref="DeadAfter"/> or has not taken a frame for that long (plus time for
    /// the frame's size at <see cref="RuntimeLinkLimits.MinSendBytesPerSecond"/>: it does not read), else pings it.
    /// </summary>
    internal void Heartbeat()
    {
        if (_closed.IsCancellationRequested)
        {
            return;
        }
        // While the read loop waits for a relay to make room, the silence is the gateway's own: not held against the peer.
        if (!ReadPaused && _time.GetElapsedTime(Interlocked.Read(ref _lastHeard)) > DeadAfter)
        {
            LogPeerDead(_logger, LatticeId);
            Abort();
            return;
        }
        bool stalled, idle;
        lock (_gate)
        {
            stalled = _sendStartedAt != 0 && _time.GetElapsedTime(_sendStartedAt) > _sendAllowed;
            idle = !_sending && _outbound is not { Count: > 0 } && _pong is null;
        }
        if (stalled)
        {
            LogPeerNotReading(_logger, LatticeId);
            Abort();
            return;
        }
        // A link that is sending anyway needs no ping: the daemon hears those frames.
        if (idle)
        {
            var frame = new byte[Frame.HeaderSize + 8];
            Frame.WriteHeader(frame, FrameType.Ping, 0);
            BinaryPrimitives.WriteInt64LittleEndian(frame.AsSpan(Frame.HeaderSize), _time.GetTimestamp());
            Send(frame);
        }
    }

    /// <summary>Runs the link until it ends; every dispatch still in flight then fails.</summary>
    public async Task RunAsync(CancellationToken stopping)
    {
        // Frames queued before the link ran (dispatches routed while the welcome was going out) leave now.
        StartSending();
        using var onStopping = stopping.UnsafeRegister(static s => ((RuntimeConnection)s!).Abort(), this);
        try
        {
            var violation = await ReadLoopAsync();
            if (violation is { } v)
            {
                LogViolation(_logger, LatticeId, v.Reason);
                await CloseAsync(v.Status, v.Reason);
            }
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
                _queuedBytes = 0;
                _pong = null;
                failing = _dispatches is { Count: > 0 } ? [.. _dispatches.Values] : [];
            }
            foreach (var dispatch in failing)
            {
                dispatch.Fail();
            }
            _socket.Abort();
        }
    }

    /// <summary>Why the gateway closes a link whose daemon broke the limits: the WebSocket close status and reason it sends.</summary>
    private readonly record struct Violation(WebSocketCloseStatus Status, string Reason);

    private static readonly Violation FrameTooLarge =
        new(WebSocketCloseStatus.MessageTooBig, $"frame exceeds max_frame_bytes ({RuntimeLinkLimits.MaxFrameBytes})");

    private static readonly Violation WindowExceeded =
        new(WebSocketCloseStatus.PolicyViolation, $"data beyond the dispatch's credit (window {RuntimeLinkLimits.WindowBytes} bytes)");

    private async Task CloseAsync(WebSocketCloseStatus status, string reason)
    {
        // The close leaves after what is already being sent; a peer that does not read does not hold the link open.
        using var wait = new CancellationTokenSource(RuntimeLinkLimits.CloseWait);
        try
        {
            await _socket.CloseOutputAsync(status, reason, wait.Token);
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException)
        {
        }
    }

    // A control frame is read into a pooled buffer of this size, grown up to the frame limit; between messages the
    // link holds no buffer at all, and body bytes go straight into their dispatch's pipe.
    private const int ReceiveBufferBytes = 4 * 1024;

    /// <summary>Reads frames until the link ends; returns the violation when the daemon broke a limit.</summary>
    private async Task<Violation?> ReadLoopAsync()
    {
        // Abort() (revocation, replacement, the heartbeat, shutdown) aborts the socket, which ends any receive:
        // no cancellation token needs to be registered on every read.
        var header = new byte[Frame.HeaderSize];
        while (!_closed.IsCancellationRequested)
        {
            // Idle: wait for the next message without holding a buffer.
            var peek = await _socket.ReceiveAsync(Memory<byte>.Empty, CancellationToken.None);
            if (peek.MessageType == WebSocketMessageType.Close)
            {
                return null;
            }
            if (peek.EndOfMessage)
            {
                continue; // an empty message: not a frame
            }

            var length = 0;
            ValueWebSocketReceiveResult result;
            do
            {
                result = await _socket.ReceiveAsync(header.AsMemory(length), CancellationToken.None);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    return null;
                }
                length += result.Count;
            }
            while (length < Frame.HeaderSize && !result.EndOfMessage);
            var heard = _time.GetTimestamp();
            Interlocked.Exchange(ref _lastHeard, heard);
            if (length < Frame.HeaderSize)
            {
                continue; // too short to be a frame
            }
            var type = (FrameType)header[0];
            var id = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(1));
            var violation = type == FrameType.Data
                ? await ReceiveDataAsync(id, result.EndOfMessage, heard)
                : await ReceiveControlAsync(type, id, result.EndOfMessage, heard);
            if (violation is not null)
            {
                return violation;
            }
        }
        return null;
    }

    /// <summary>The rest of a frame other than data: held whole (up to the frame limit), then handled.</summary>
    private async ValueTask<Violation?> ReceiveControlAsync(FrameType type, uint id, bool endOfMessage, long heard)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(ReceiveBufferBytes);
        try
        {
            var length = 0;
            while (!endOfMessage)
            {
                if (length == buffer.Length)
                {
                    if (Frame.HeaderSize + length >= RuntimeLinkLimits.MaxFrameBytes)
                    {
                        return FrameTooLarge;
                    }
                    var bigger = ArrayPool<byte>.Shared.Rent(Math.Min(buffer.Length * 2, RuntimeLinkLimits.MaxFrameBytes - Frame.HeaderSize));
                    buffer.AsSpan(0, length).CopyTo(bigger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = bigger;
                }
                var result = await _socket.ReceiveAsync(buffer.AsMemory(length), CancellationToken.None);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    return null;
                }
                length += result.Count;
                endOfMessage = result.EndOfMessage;
            }
            if (Frame.HeaderSize + length > RuntimeLinkLimits.MaxFrameBytes)
            {
                return FrameTooLarge;
            }
            Dispatch(type, id, buffer.AsSpan(0, length));
            return null;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void Dispatch(FrameType type, uint id, ReadOnlySpan<byte> payload)
    {
        switch (type)
        {
            case FrameType.Ping:
                // One pong waits at most: a ping that comes while the last one's answer has not left replaces it, so a
                // flood of pings from a peer that does not read queues nothing.
                var echo = payload[..Math.Min(payload.Length, PongPayloadBytes)];
                bool start;
                lock (_gate)
                {
                    if (_ended)
                    {
                        return;
                    }
                    if (_pong is null || _pong.Length != Frame.HeaderSize + echo.Length)
                    {
                        _pong = new byte[Frame.HeaderSize + echo.Length];
                        Frame.WriteHeader(_pong, FrameType.Pong, 0);
                    }
                    echo.CopyTo(_pong.AsSpan(Frame.HeaderSize));
                    start = !_sending;
                    _sending = true;
                }
                if (start)
                {
                    _ = SendQueuedAsync();
                }
                break;
            case FrameType.ResponseStart or FrameType.End or FrameType.Error:
                if (Find(id) is not { Ended: false } dispatch)
                {
                    return;
                }
                if (type == FrameType.ResponseStart)
                {
                    if (dispatch.Started)
                    {
                        return; // one start per dispatch; a second would only be held
                    }
                    dispatch.Started = true;
                }
                else
                {
                    dispatch.Ended = true;
                }
                // The receive buffer is reused, so the payload is copied once, into a pooled array the reader returns.
                var copy = ArrayPool<byte>.Shared.Rent(Math.Max(payload.Length, 1));
                payload.CopyTo(copy);
                dispatch.Touch(_time.GetTimestamp());
                dispatch.Post(new DispatchEvent(type, copy.AsMemory(0, payload.Length), copy));
                if (type != FrameType.ResponseStart)
                {
                    dispatch.CompleteBody();
                }
                break;
        }
    }

    private RuntimeDispatch? Find(uint id)
    {
        lock (_gate)
        {
            return _dispatches is not null && _dispatches.TryGetValue(id, out var dispatch) ? dispatch : null;
        }
    }

    /// <summary>
    /// The rest of a data frame, streamed into its dispatch's pipe as it arrives (never held whole), within the
    /// dispatch's window: a daemon with flow control that sends beyond it is a violation; for an older daemon the
    /// read loop waits until the relay has made room.
    /// </summary>
    private async ValueTask<Violation?> ReceiveDataAsync(uint id, bool endOfMessage, long heard)
    {
        long frameBytes = Frame.HeaderSize;
        var dispatch = Find(id);
        if (dispatch is null || dispatch.Ended || dispatch.Discarding)
        {
            return await DiscardAsync(endOfMessage, frameBytes);
        }
        dispatch.Touch(heard);
        if (!dispatch.Started)
        {
            // Data before any response start: the answer starts here, as 200 JSON.
            dispatch.Started = true;
            dispatch.Post(new DispatchEvent(FrameType.ResponseStart, default, Implicit: true));
        }
        var writer = dispatch.BodyWriter;
        while (!endOfMessage)
        {
            int room;
            if (_flowControl)
            {
                // One byte more than the credit left: receiving it proves the violation without holding more.
                room = (int)Math.Max(1, RuntimeLinkLimits.WindowBytes - dispatch.BufferedBytes + 1);
            }
            else
            {
                room = (int)(RuntimeLinkLimits.WindowBytes - dispatch.BufferedBytes);
                if (room <= 0)
                {
                    // The relay is behind: stop reading the link until it takes bytes (the pipe resumes at half the window).
                    // Abort() ends the wait: it cancels the token the flush waits on.
                    Volatile.Write(ref _readPaused, 1);
                    FlushResult waited;
                    try
                    {
                        waited = await writer.FlushAsync(_closed.Token);
                        if (!waited.IsCompleted && dispatch.BufferedBytes >= RuntimeLinkLimits.WindowBytes)
                        {
                            await Task.Yield(); // the relay's count lags its pipe by an instruction
                        }
                    }
                    finally
                    {
                        Volatile.Write(ref _readPaused, 0);
                        Interlocked.Exchange(ref _lastHeard, _time.GetTimestamp());
                    }
                    if (waited.IsCompleted)
                    {
                        dispatch.Discarding = true;
                        return await DiscardAsync(false, frameBytes);
                    }
                    continue;
                }
            }
            var memory = writer.GetMemory();
            if (memory.Length > room)
            {
                memory = memory[..room];
            }
            var result = await _socket.ReceiveAsync(memory, CancellationToken.None);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                return null;
            }
            writer.Advance(result.Count);
            dispatch.Received(result.Count);
            frameBytes += result.Count;
            endOfMessage = result.EndOfMessage;
            if (_flowControl)
            {
                if (frameBytes > RuntimeLinkLimits.MaxFrameBytes)
                {
                    return FrameTooLarge;
                }
                if (dispatch.BufferedBytes > RuntimeLinkLimits.WindowBytes)
                {
                    return WindowExceeded;
                }
            }
            var flushing = writer.FlushAsync(_closed.Token);
            var flushed = flushing.IsCompleted ? flushing.Result : await PausedAsync(flushing);
            if (flushed.IsCompleted)
            {
                // The reader is gone (the client left, the dispatch was cancelled): the rest is dropped.
                dispatch.Discarding = true;
                return await DiscardAsync(endOfMessage, frameBytes);
            }
            dispatch.Touch(_time.GetTimestamp());
        }
        return null;
    }

    /// <summary>A flush that waits for the relay (an older daemon's dispatch at its window): the read loop is paused meanwhile.</summary>
    private async ValueTask<FlushResult> PausedAsync(ValueTask<FlushResult> flushing)
    {
        Volatile.Write(ref _readPaused, 1);
        try
        {
            return await flushing;
        }
        finally
        {
            Volatile.Write(ref _readPaused, 0);
            Interlocked.Exchange(ref _lastHeard, _time.GetTimestamp());
        }
    }

    /// <summary>Reads the rest of a frame nobody wants (a dispatch that ended or was dropped) without keeping it.</summary>
    private async ValueTask<Violation?> DiscardAsync(bool endOfMessage, long frameBytes)
    {
        if (endOfMessage)
        {
            return null;
        }
        var scratch = ArrayPool<byte>.Shared.Rent(ReceiveBufferBytes);
        try
        {
            while (!endOfMessage)
            {
                var result = await _socket.ReceiveAsync(scratch.AsMemory(), CancellationToken.None);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    return null;
                }
                frameBytes += result.Count;
                endOfMessage = result.EndOfMessage;
                if (_flowControl && frameBytes > RuntimeLinkLimits.MaxFrameBytes)
                {
                    return FrameTooLarge;
                }
            }
            return null;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    /// <summary>Queues a frame; a sender runs while frames are queued (on the caller's thread until a send has to wait).</summary>
    private void Send(byte[] frame)
    {
        bool overflow;
        lock (_gate)
        {
            if (_ended)
            {
                return;
            }
            var queue = _outbound ??= new Queue<byte[]>();
            overflow = queue.Count >= RuntimeLinkLimits.MaxQueuedFrames;
            if (!overflow)
            {
                queue.Enqueue(frame);
                _queuedBytes += frame.Length;
                if (_sending)
                {
                    return;
                }
                _sending = true;
            }
        }
        if (overflow)
        {
            LogPeerNotReading(_logger, LatticeId);
            Abort();
            return;
        }
        _ = SendQueuedAsync();
    }

    private void StartSending()
    {
        lock (_gate)
        {
            if (_outbound is not { Count: > 0 } && _pong is null)
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
                    if (_ended)
                    {
                        _sending = false;
                        _sendStartedAt = 0;
                        return;
                    }
                    if (_pong is not null)
                    {
                        frame = _pong;
                        _pong = null;
                    }
                    else if (_outbound is not null && _outbound.TryDequeue(out frame!))
                    {
                        _queuedBytes -= frame.Length;
                    }
                    else
                    {
                        _sending = false;
                        _sendStartedAt = 0;
                        return;
                    }
                    _sendStartedAt = _time.GetTimestamp();
                    // A large dispatch frame (an audio upload) may take a slow link a while: it gets time for its size.
                    _sendAllowed = DeadAfter + TimeSpan.FromSeconds((double)frame.Length / RuntimeLinkLimits.MinSendBytesPerSecond);
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
                _sendStartedAt = 0;
                _outbound = null;
                _queuedBytes = 0;
                _pong = null;
            }
            Abort();
        }
    }

    [LoggerMessage(EventId = 4001, Level = LogLevel.Information, Message = "Runtime {LatticeId} link ended ({Reason})")]
    private static partial void LogLinkEnded(ILogger logger, string latticeId, string reason);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Warning, Message = "Runtime {LatticeId} sent nothing for 15 s; dropping its link")]
    private static partial void LogPeerDead(ILogger logger, string latticeId);

    [LoggerMessage(EventId = 4005, Level = LogLevel.Warning, Message = "Runtime {LatticeId} takes no frames from the gateway; dropping its link")]
    private static partial void LogPeerNotReading(ILogger logger, string latticeId);

    [LoggerMessage(EventId = 4006, Level = LogLevel.Warning, Message = "Runtime {LatticeId} broke the link's limits ({Reason}); closing its link")]
    private static partial void LogViolation(ILogger logger, string latticeId, string reason);
}
