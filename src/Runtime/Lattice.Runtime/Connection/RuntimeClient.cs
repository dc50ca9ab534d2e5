using System.Buffers;
using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Threading.Channels;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Lattice.Protocol;
using Lattice.Protocol.Runtime;
using Lattice.Protocol.Sealing;
using Lattice.Runtime.Engines;
using Lattice.Runtime.Telemetry;

namespace Lattice.Runtime.Connection;

/// <summary>How a <see cref="RuntimeClient"/> run ended.</summary>
public enum LinkExit
{
    /// <summary>Asked to stop.</summary>
    Stopped,
    /// <summary>The gateway refused the credential (revoked or unknown): reconnecting cannot help.</summary>
    CredentialRejected,
}

/// <summary>
/// The daemon's one outbound link: connects to the gateway's <c>/v1/runtimes/connect</c>, says hello with its
/// capabilities, runs dispatches concurrently on its engines, and reconnects with exponential backoff and jitter.
/// </summary>
/// <remarks>
/// Given several gateway nodes, a link that fails or drops moves on to the next node at once, round-robin from the
/// one that failed; the backoff is waited once per full round of failures, so a surviving node is reached as soon as
/// it is tried. The runtime credential is valid on every node of one deployment (they share the database).
/// </remarks>
/// <param name="workKey">
/// The daemon's work key: its public half is announced in the hello, and it opens sealed dispatches and signs their
/// usage (docs/sealed-dispatch.md). Null: no key is announced and sealed dispatch is not offered.
/// </param>
/// <param name="metrics">Where dispatches and the link's state are counted (docs/observability.md); null: nowhere.</param>
public sealed class RuntimeClient(RuntimeCredentials credentials, IReadOnlyList<string> gateways, EngineSet engines, int maxConcurrency, TimeProvider? time = null,
    WorkKey? workKey = null, RuntimeMetrics? metrics = null)
{
    public static readonly TimeSpan PingEvery = TimeSpan.FromSeconds(5);
    public static readonly TimeSpan DeadAfter = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A link that stayed up this long ends a round of failures: its drop is the first failure of a new one. A shorter
    /// link counts within its round, so nodes that welcome and drop at once still get the backoff between rounds.
    /// </summary>
    public static readonly TimeSpan StableLink = TimeSpan.FromSeconds(10);

    /// <summary>A client that connects to the gateways the credential was paired with.</summary>
    public RuntimeClient(RuntimeCredentials credentials, EngineSet engines, int maxConcurrency, TimeProvider? time = null, WorkKey? workKey = null,
        RuntimeMetrics? metrics = null)
        : this(credentials, credentials.Endpoints, engines, maxConcurrency, time, workKey, metrics)
    {
    }

    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly WorkKey? _workKey = workKey;
    private readonly RuntimeMetrics? _metrics = metrics;
    private readonly IReadOnlyList<string> _gateways = gateways.Count > 0 ? gateways : throw new ArgumentException("At least one gateway URL is needed.", nameof(gateways));

    // Largest data frame the writer makes by joining queued ones.
    private const int CoalesceBytes = 64 * 1024;

    /// <summary>
    /// Per dispatch: the most data bytes queued to send. An engine that writes faster than the link takes its bytes
    /// waits here (and, on a link with flow control, for the gateway's credit), so the daemon never holds a whole answer.
    /// </summary>
    internal const int QueueBytes = 256 * 1024;

    /// <summary>Human-readable state changes: connecting, connected, disconnected (and the next retry), each naming the gateway URL.</summary>
    public event Action<string>? Status;

    /// <summary>Completed dispatches (for <c>lattice status</c>).</summary>
    public long Served => Interlocked.Read(ref _served);

    public bool Connected
    {
        get => _connected;
        private set
        {
            _connected = value;
            _metrics?.Link(value);
        }
    }

    private volatile bool _connected;

    /// <summary>The gateway URL the link is connected to, or being connected to (the last one tried, when waiting).</summary>
    public string Gateway => _gateways[Volatile.Read(ref _current)];

    /// <summary>Dispatches whose engine is waiting for the gateway's credit (the client reads slower than the engine writes).</summary>
    public int WaitingForCredit => Volatile.Read(ref _waitingForCredit);

    private long _served;
    private int _waitingForCredit;
    private int _current;
    private long _welcomedAt;

    public async Task<LinkExit> RunAsync(CancellationToken cancellationToken)
    {
        var attempt = 0;
        // Failures since the last welcome (or the start); a round is one failure per gateway.
        var failed = 0;
        var welcomedThisRound = false;
        var first = true;
        while (!cancellationToken.IsCancellationRequested)
        {
            if (!first)
            {
                _metrics?.Reconnecting();
            }
            first = false;
            var gateway = Gateway;
            Status?.Invoke($"connecting to {gateway}");
            var outcome = await RunSessionAsync(gateway, cancellationToken);
            Connected = false;
            if (outcome.Rejected)
            {
                Status?.Invoke($"{gateway} refused this runtime's credential (revoked or unknown); pair again with `lattice relay connect`");
                return LinkExit.CredentialRejected;
            }
            if (cancellationToken.IsCancellationRequested)
            {
                break;
            }
            if (outcome.Welcomed)
            {
                welcomedThisRound = true;
                if (_time.GetElapsedTime(Interlocked.Read(ref _welcomedAt)) >= StableLink)
                {
                    // The link was up: the node that dropped it starts a new round.
                    failed = 0;
                }
            }
            failed++;
            Volatile.Write(ref _current, (_current + 1) % _gateways.Count);
            if (failed < _gateways.Count)
            {
                Status?.Invoke($"disconnected from {gateway} ({outcome.Reason}); trying {Gateway}");
                continue;
            }
            attempt = welcomedThisRound ? 1 : attempt + 1;
            failed = 0;
            welcomedThisRound = false;
            // Full jitter: a random delay up to an exponentially growing cap, so many daemons do not reconnect in step.
            var cap = Math.Min(MaxBackoff.TotalMilliseconds, 500 * Math.Pow(2, Math.Min(attempt, 16)));
            var delay = TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * cap);
            Status?.Invoke($"disconnected from {gateway} ({outcome.Reason}); retrying in {delay.TotalSeconds:0.0} s");
            try
            {
                await Task.Delay(delay, _time, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
        return LinkExit.Stopped;
    }

    private readonly record struct SessionOutcome(bool Welcomed, bool Rejected, string Reason);

    private async Task<SessionOutcome> RunSessionAsync(string gateway, CancellationToken cancellationToken)
    {
        using var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("Authorization", "Bearer " + credentials.Credential);
        socket.Options.KeepAliveInterval = TimeSpan.Zero;
        socket.Options.CollectHttpResponseDetails = true;
        socket.Options.Proxy = null;
        var uri = new UriBuilder(new Uri(new Uri(gateway), RuntimeLink.ConnectPath))
        {
            Scheme = gateway.StartsWith("https", StringComparison.OrdinalIgnoreCase) ? "wss" : "ws",
        }.Uri;

        try
        {
            using var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            connectTimeout.CancelAfter(TimeSpan.FromSeconds(15));
            await socket.ConnectAsync(uri, connectTimeout.Token);
        }
        catch (WebSocketException ex)
        {
            var status = (int)socket.HttpStatusCode;
            return new SessionOutcome(false, status is 401 or 403, status != 0 ? $"HTTP {status}" : ex.Message);
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or IOException)
        {
            return new SessionOutcome(false, false, cancellationToken.IsCancellationRequested ? "stopped" : ex.Message);
        }

        var reason = await ServeAsync(socket, cancellationToken);
        return reason is null ? new SessionOutcome(false, false, "no welcome from the gateway") : new SessionOutcome(true, false, reason);
    }

    /// <summary>
    /// Serves one open link until it ends: hello, welcome, then dispatches. Returns why it ended, or null when the
    /// gateway did not welcome the daemon. Tests drive it over a socket of their own.
    /// </summary>
    internal async Task<string?> ServeAsync(WebSocket socket, CancellationToken cancellationToken)
    {
        var session = new Session(this, socket, engines, maxConcurrency, _time);
        var hello = new HelloMessage(typeof(RuntimeClient).Assembly.GetName().Version?.ToString() ?? "0", maxConcurrency, engines.Capabilities,
            _workKey is null
                ? [LinkFeatures.EndAfterCancel, LinkFeatures.FlowControl]
                : [LinkFeatures.EndAfterCancel, LinkFeatures.FlowControl, LinkFeatures.SealedDispatch, LinkFeatures.UsageLinkKey],
            Frame.MaxFrameBytes, _workKey?.PublicKeyText);
        var welcome = await session.HandshakeAsync(hello, cancellationToken);
        if (welcome is null)
        {
            return null;
        }
        Interlocked.Exchange(ref _welcomedAt, _time.GetTimestamp());
        Connected = true;
        Status?.Invoke($"connected as {welcome.LatticeId} to {Gateway}");
        try
        {
            return await session.RunAsync(cancellationToken);
        }
        finally
        {
            session.ForgetUsageKey();
        }
    }

    /// <summary>One connection's lifetime: reader, writer, heartbeat, and the dispatches it is running.</summary>
    /// <remarks>
    /// The outbound queue is bounded by construction: at most one ping and one pong wait in it, a dispatch's data at
    /// most <see cref="QueueBytes"/> (its engine waits for more room), and the rest is one start and one end per dispatch.
    /// </remarks>
    private sealed class Session(RuntimeClient owner, WebSocket socket, EngineSet engines, int maxConcurrency, TimeProvider time)
    {
        private readonly Channel<OutFrame> _outbound = Channel.CreateUnbounded<OutFrame>(new UnboundedChannelOptions { SingleReader = true });
        private readonly ConcurrentDictionary<uint, RunningDispatch> _running = new();
        private readonly SemaphoreSlim _slots = new(Math.Max(1, maxConcurrency));
        private long _lastHeard = time.GetTimestamp();
        // Set from the welcome: each dispatch's first credit (0: the gateway keeps none), and the largest frame it takes.
        private long _window;
        private int _maxFrame = Frame.MaxFrameBytes;
        private int _pingQueued;
        private int _pongQueued;
        // The runtime's id, from the welcome: bound into every sealed dispatch's associated data.
        private string _latticeId = "";
        // The link's usage key, agreed from the welcome's link key: sealed usage is tagged with it rather than signed.
        private UsageKey? _usageKey;

        /// <summary>The most data one frame carries: the gateway's frame limit, and no more than the writer joins.</summary>
        private int MaxDataPayload => Math.Min(CoalesceBytes, _maxFrame) - Frame.HeaderSize;

        public async Task<WelcomeMessage?> HandshakeAsync(HelloMessage hello, CancellationToken cancellationToken)
        {
            try
            {
                await socket.SendAsync(Frame.Json(FrameType.Hello, 0, hello, ProtocolJsonContext.Default.HelloMessage), WebSocketMessageType.Binary, true, cancellationToken);
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                timeout.CancelAfter(TimeSpan.FromSeconds(15));
                var (frame, length) = await ReceiveAsync(new byte[64 * 1024], timeout.Token);
                if (frame is null || !Frame.TryRead(frame.AsMemory(0, length), out var type, out _, out var payload) || type != FrameType.Welcome)
                {
                    return null;
                }
                var welcome = Frame.ReadJson(payload, ProtocolJsonContext.Default.WelcomeMessage);
                if (welcome is not null)
                {
                    // An older gateway says neither: no credit is kept, and frames of any size are taken.
                    _window = welcome.WindowBytes is > 0 and var window ? window : 0;
                    _maxFrame = welcome.MaxFrameBytes is > Frame.HeaderSize + 1024 and var max ? max : Frame.MaxFrameBytes;
                    _latticeId = welcome.LatticeId;
                    _usageKey = AgreeUsageKey(welcome.UsageLinkKey);
                }
                return welcome;
            }
            catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException)
            {
                return null;
            }
        }

        public async Task<string> RunAsync(CancellationToken cancellationToken)
        {
            using var closed = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var writer = WriteLoopAsync(closed.Token);
            var heartbeat = HeartbeatAsync(closed);
            string reason;
            try
            {
                reason = await ReadLoopAsync(closed.Token);
            }
            catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException)
            {
                reason = cancellationToken.IsCancellationRequested ? "stopped" : "connection lost";
            }
            finally
            {
                closed.Cancel();
                foreach (var (_, running) in _running)
                {
                    running.Stop.Cancel();
                }
                _outbound.Writer.TryComplete();
                socket.Abort();
            }
            await Task.WhenAll(writer, heartbeat).ContinueWith(_ => { }, TaskScheduler.Default);
            return reason;
        }

        private async Task<(byte[]? Frame, int Length)> ReceiveAsync(byte[] buffer, CancellationToken cancellationToken)
        {
            var length = 0;
            ValueWebSocketReceiveResult result;
            do
            {
                if (length == buffer.Length)
                {
                    if (buffer.Length >= Frame.MaxFrameBytes)
                    {
                        throw new WebSocketException("frame too large");
                    }
                    Array.Resize(ref buffer, buffer.Length * 2);
                }
                result = await socket.ReceiveAsync(buffer.AsMemory(length), cancellationToken);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    return (null, 0);
                }
                length += result.Count;
            }
            while (!result.EndOfMessage);
            Interlocked.Exchange(ref _lastHeard, time.GetTimestamp());
            return (buffer, length);
        }

        private async Task<string> ReadLoopAsync(CancellationToken cancellationToken)
        {
            var buffer = new byte[64 * 1024];
            while (!cancellationToken.IsCancellationRequested)
            {
                var (frame, length) = await ReceiveAsync(buffer, cancellationToken);
                if (frame is null)
                {
                    return "the gateway closed the link";
                }
                buffer = frame;
                if (!Frame.TryRead(frame.AsMemory(0, length), out var type, out var id, out var payload))
                {
                    continue;
                }
                switch (type)
                {
                    case FrameType.Ping:
                        // One pong waits at most: pings that come while it has not left are answered by it.
                        if (Interlocked.Exchange(ref _pongQueued, 1) == 0)
                        {
                            _outbound.Writer.TryWrite(OutFrame.Raw(FrameType.Pong, 0, payload.Span[..Math.Min(payload.Length, 8)]));
                        }
                        break;
                    case FrameType.Credit:
                        if (_running.TryGetValue(id, out var credited) && Frame.TryReadCredit(payload.Span, out var bytes))
                        {
                            credited.Outflow.Grant(bytes);
                        }
                        break;
                    case FrameType.Dispatch:
                        if (Frame.TryReadDispatch(payload, out var header, out var body))
                        {
                            // The receive buffer is reused: the dispatch keeps its own copy of the body.
                            StartDispatch(id, header!, body.ToArray());
                        }
                        else
                        {
                            owner._metrics?.Refused(RuntimeMetrics.Unsupported, RuntimeMetrics.Unsupported);
                            SendError(id, "invalid_dispatch", "The dispatch frame could not be read.");
                        }
                        break;
                    case FrameType.Cancel:
                        if (_running.TryGetValue(id, out var running))
                        {
                            // Before the cancel, so the dispatch that sees it answers with a cancelled End.
                            running.CancelledByGateway = true;
                            running.Stop.Cancel();
                        }
                        break;
                }
            }
            return "stopped";
        }

        private void StartDispatch(uint id, DispatchHeader header, byte[] body)
        {
            var engine = engines.Find(header.Task, header.Model);
            if (engine is null)
            {
                // The names are the gateway's and not served here: not label values.
                owner._metrics?.Refused(RuntimeMetrics.Unsupported, RuntimeMetrics.Unsupported);
                SendError(id, "model_not_supported", $"This runtime does not serve '{header.Model}' for '{header.Task}'.");
                return;
            }
            SealedChunkSealer? sealer = null;
            if (header.SealedRequestId is { } sealedId)
            {
                // A sealed dispatch: only this machine can open it, and only the app can open the answer.
                if (owner._workKey is null)
                {
                    owner._metrics?.Refused(header.Task, header.Model);
                    SendError(id, ErrorCodes.SealedDispatchUnsupported, "This runtime has no work key: it cannot open sealed requests.");
                    return;
                }
                try
                {
                    // A session seen before (its ephemeral key) opens without ECDH: the opener keeps its secret.
                    body = owner._workKey.Opener.Open(body, sealedId, _latticeId, out sealer);
                }
                catch (SealedMessageException)
                {
                    owner._metrics?.Refused(header.Task, header.Model);
                    SendError(id, ErrorCodes.SealedRequestUnreadable,
                        "The runtime could not open the sealed request: it was sealed to another work key, request or runtime, or altered on the way.");
                    return;
                }
            }
            var running = new RunningDispatch(new Outflow(owner, _window > 0 ? _window : long.MaxValue));
            _running[id] = running;
            var metrics = owner._metrics;
            var arrived = time.GetTimestamp();
            metrics?.Started(header.Task, header.Model);
            _ = Task.Run(async () =>
            {
                var link = new LinkOutput(_outbound.Writer, id, running.Outflow, MaxDataPayload,
                    metrics is null ? null : () => metrics.FirstChunk(header.Task, header.Model, time.GetElapsedTime(arrived)));
                // Counted before the End or Error leaves: whoever reads it finds the dispatch counted.
                var counted = false;
                void Count(string outcome)
                {
                    if (counted)
                    {
                        return;
                    }
                    counted = true;
                    metrics?.Finished(header.Task, header.Model, outcome, time.GetElapsedTime(arrived));
                }
                using var sealedOutput = sealer is null ? null : new SealedOutput(link, sealer, header.Stream);
                IEngineOutput output = sealedOutput is null ? link : sealedOutput;
                var token = running.Stop.Token;
                try
                {
                    await _slots.WaitAsync(token);
                    try
                    {
                        var usage = await engine.ExecuteAsync(new EngineRequest(header.Task, header.Model, body, header.ContentType, header.Stream), output, token);
                        if (sealedOutput is not null && !running.CancelledByGateway)
                        {
                            await sealedOutput.FinishAsync(token);
                        }
                        // An engine may finish although the gateway cancelled it: the End still says so.
                        Count(running.CancelledByGateway ? RuntimeMetrics.Outcomes.Cancelled : RuntimeMetrics.Outcomes.Served);
                        SendEnd(id, usage, running.CancelledByGateway, header.SealedRequestId);
                        Interlocked.Increment(ref owner._served);
                    }
                    finally
                    {
                        _slots.Release();
                    }
                }
                catch (Exception) when (running.CancelledByGateway)
                {
                    // The client went away. The gateway still meters the dispatch, so it gets what the engine used up to the
                    // cancel, even when the engine stopped with something other than OperationCanceledException.
                    Count(RuntimeMetrics.Outcomes.Cancelled);
                    SendEnd(id, link.UsageSoFar, cancelled: true, header.SealedRequestId);
                }
                catch (OperationCanceledException) when (token.IsCancellationRequested)
                {
                    // The link dropped: nobody is listening.
                }
                catch (Exception ex)
                {
                    Count(RuntimeMetrics.Outcomes.EngineError);
                    SendError(id, "engine_error", "The engine failed: " + ex.GetType().Name);
                }
                finally
                {
                    if (!counted)
                    {
                        Count(RuntimeMetrics.Outcomes.LinkLost);
                    }
                    // The source is not disposed: a Cancel frame read at this moment may still cancel it, and an
                    // undisposed source without timers holds nothing that needs freeing.
                    _running.TryRemove(new KeyValuePair<uint, RunningDispatch>(id, running));
                }
            });
        }

        /// <summary>
        /// The usage key the work key agrees with the link key a welcome carried; null without one (an older gateway),
        /// without a work key, or for a link key that is not a P-256 point — the usage is then signed.
        /// </summary>
        private UsageKey? AgreeUsageKey(string? linkKeyText)
        {
            if (linkKeyText is null || owner._workKey is not { } key)
            {
                return null;
            }
            try
            {
                return UsageKey.ForDaemon(key.Key, System.Buffers.Text.Base64Url.DecodeFromChars(linkKeyText));
            }
            catch (Exception e) when (e is FormatException or CryptographicException)
            {
                return null;
            }
        }

        /// <summary>The link has ended: its usage key is of no more use (zeroed).</summary>
        public void ForgetUsageKey() => _usageKey?.Dispose();

        private void SendEnd(uint id, EngineUsage usage, bool cancelled, string? sealedRequestId)
        {
            var end = new DispatchEnd(usage.PromptTokens, usage.CompletionTokens, usage.AudioSeconds, usage.CachedTokens, usage.Estimated, cancelled);
            if (sealedRequestId is not null && owner._workKey is { } key)
            {
                // The gateway cannot read a sealed answer, so it meters what the daemon reports, authenticated by the work
                // key: tagged with the link's usage key (a hash) when the welcome agreed one, else signed (ECDSA). Only
                // now: the answer's final record is already queued ahead of this End, on its way to the app.
                end = _usageKey is { } usageKey ? usageKey.Tag(end, sealedRequestId, _latticeId) : key.Sign(end, sealedRequestId, _latticeId);
            }
            _outbound.Writer.TryWrite(new OutFrame(Frame.Json(FrameType.End, id, end, ProtocolJsonContext.Default.DispatchEnd)));
        }

        private void SendError(uint id, string code, string message) =>
            _outbound.Writer.TryWrite(new OutFrame(Frame.Json(FrameType.Error, id, new DispatchError(code, message), ProtocolJsonContext.Default.DispatchError)));

        private async Task WriteLoopAsync(CancellationToken cancellationToken)
        {
            var reader = _outbound.Reader;
            OutFrame? held = null;
            try
            {
                while (true)
                {
                    OutFrame frame;
                    if (held is { } h)
                    {
                        frame = h;
                        held = null;
                    }
                    else if (!reader.TryRead(out frame))
                    {
                        if (!await reader.WaitToReadAsync(cancellationToken))
                        {
                            return;
                        }
                        continue;
                    }
                    // Data frames of the same dispatch that are already queued leave as one frame: fewer messages
                    // for the same bytes. Nothing is held back to wait for more.
                    if (frame.Type == FrameType.Data)
                    {
                        var limit = Math.Min(CoalesceBytes, _maxFrame);
                        while (frame.Length < limit && reader.TryRead(out var next))
                        {
                            if (next.Type == FrameType.Data && next.Id == frame.Id && frame.Length + next.Length - Frame.HeaderSize <= limit)
                            {
                                frame = frame.Append(next);
                            }
                            else
                            {
                                held = next;
                                break;
                            }
                        }
                    }
                    switch (frame.Type)
                    {
                        case FrameType.Ping:
                            Volatile.Write(ref _pingQueued, 0);
                            break;
                        case FrameType.Pong:
                            Volatile.Write(ref _pongQueued, 0);
                            break;
                    }
                    try
                    {
                        await socket.SendAsync(frame.Memory, WebSocketMessageType.Binary, true, cancellationToken);
                    }
                    finally
                    {
                        frame.Release();
                    }
                    if (frame.Type == FrameType.Data && _running.TryGetValue(frame.Id, out var running))
                    {
                        running.Outflow.Sent(frame.Length - Frame.HeaderSize);
                    }
                }
            }
            catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException)
            {
                socket.Abort();
            }
        }

        private async Task HeartbeatAsync(CancellationTokenSource closed)
        {
            try
            {
                using var timer = new PeriodicTimer(PingEvery, time);
                while (await timer.WaitForNextTickAsync(closed.Token))
                {
                    if (time.GetElapsedTime(Interlocked.Read(ref _lastHeard)) > DeadAfter)
                    {
                        // The gateway went silent: drop the link and reconnect.
                        socket.Abort();
                        closed.Cancel();
                        return;
                    }
                    if (Interlocked.Exchange(ref _pingQueued, 1) == 0)
                    {
                        var stamp = new byte[8];
                        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(stamp, time.GetTimestamp());
                        _outbound.Writer.TryWrite(OutFrame.Raw(FrameType.Ping, 0, stamp));
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    /// <summary>A dispatch the daemon is running.</summary>
    private sealed class RunningDispatch(Outflow outflow)
    {
        public CancellationTokenSource Stop { get; } = new();

        /// <summary>The credit and queue room of its data.</summary>
        public Outflow Outflow { get; } = outflow;

        /// <summary>Set by a Cancel frame (read loop) before <see cref="Stop"/> is cancelled; read by the dispatch.</summary>
        public volatile bool CancelledByGateway;
    }

    /// <summary>
    /// How much of one dispatch's data may be queued now: the gateway's credit (unlimited on a link without flow
    /// control) and the room left in the queue (<see cref="QueueBytes"/>). An engine write waits for both.
    /// </summary>
    private sealed class Outflow(RuntimeClient owner, long credit)
    {
        private readonly Lock _gate = new();
        private long _credit = credit;
        private long _queued;
        private TaskCompletionSource? _room;

        /// <summary>Takes up to <paramref name="wanted"/> bytes of credit and queue room, waiting until there is some.</summary>
        public async ValueTask<int> ReserveAsync(int wanted, CancellationToken cancellationToken)
        {
            while (true)
            {
                Task room;
                bool noCredit;
                lock (_gate)
                {
                    var available = Math.Min(_credit, QueueBytes - _queued);
                    if (available > 0)
                    {
                        var taken = (int)Math.Min(wanted, available);
                        _credit -= taken;
                        _queued += taken;
                        return taken;
                    }
                    noCredit = _credit <= 0;
                    room = (_room ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
                }
                if (noCredit)
                {
                    Interlocked.Increment(ref owner._waitingForCredit);
                }
                try
                {
                    await room.WaitAsync(cancellationToken);
                }
                finally
                {
                    if (noCredit)
                    {
                        Interlocked.Decrement(ref owner._waitingForCredit);
                    }
                }
            }
        }

        /// <summary>The gateway's relay took bytes: it may send that many more.</summary>
        public void Grant(uint bytes) => Change(ref _credit, bytes);

        /// <summary>Queued bytes left on the link.</summary>
        public void Sent(int bytes) => Change(ref _queued, -bytes);

        private void Change(ref long field, long delta)
        {
            TaskCompletionSource? room;
            lock (_gate)
            {
                field += delta;
                room = _room;
                _room = null;
            }
            room?.TrySetResult();
        }
    }

    /// <summary>Turns an engine's output into ResponseStart and Data frames of one dispatch, and keeps its usage so far.</summary>
    /// <param name="firstChunk">Called once, when the answer's first bytes are queued (for the time-to-first-chunk metric).</param>
    private sealed class LinkOutput(ChannelWriter<OutFrame> outbound, uint id, Outflow outflow, int maxPayload, Action? firstChunk) : IEngineOutput
    {
        private Action? _firstChunk = firstChunk;

        /// <summary>
        /// The engine's last report. Written on the engine's thread and read by the dispatch after the engine's task
        /// ended, so the await orders the two.
        /// </summary>
        public EngineUsage UsageSoFar { get; private set; }

        public void ReportUsage(EngineUsage usageSoFar) => UsageSoFar = usageSoFar;

        public ValueTask StartAsync(int status, string contentType, CancellationToken cancellationToken)
        {
            outbound.TryWrite(new OutFrame(Frame.Json(FrameType.ResponseStart, id, new ResponseStart(status, contentType), ProtocolJsonContext.Default.ResponseStart)));
            return ValueTask.CompletedTask;
        }

        public async ValueTask WriteAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (_firstChunk is { } first && !bytes.IsEmpty)
            {
                _firstChunk = null;
                first();
            }
            // In frames the gateway takes, each sent once there is credit and room for it.
            while (!bytes.IsEmpty)
            {
                var taken = await outflow.ReserveAsync(Math.Min(bytes.Length, maxPayload), cancellationToken);
                outbound.TryWrite(OutFrame.Raw(FrameType.Data, id, bytes.Span[..taken]));
                bytes = bytes[taken..];
            }
        }
    }

    /// <summary>
    /// An engine's output sealed to the app's reply key: every stream write one sealed chunk (a record
    /// <c>u32 BE length || chunk</c>), the one ending with <c>data: [DONE]</c> final; a whole answer one final chunk; the
    /// answer's content type is <see cref="SealedHttp.ContentType"/>. <see cref="FinishAsync"/> sends the final chunk once
    /// the engine is done, unless the stream's end marker already went as the final chunk.
    /// </summary>
    private sealed class SealedOutput(LinkOutput link, SealedChunkSealer sealer, bool stream) : IEngineOutput, IDisposable
    {
        private System.Buffers.ArrayBufferWriter<byte>? _whole;
        private bool _started;
        private bool _streaming;

        public void ReportUsage(EngineUsage usageSoFar) => link.ReportUsage(usageSoFar);

        public ValueTask StartAsync(int status, string contentType, CancellationToken cancellationToken)
        {
            _started = true;
            // Only a successful stream goes out event by event; an error envelope is a whole answer.
            _streaming = stream && status is >= 200 and < 300;
            return link.StartAsync(status, SealedHttp.ContentType, cancellationToken);
        }

        public async ValueTask WriteAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
        {
            if (!_started)
            {
                await StartAsync(200, "application/json", cancellationToken);
            }
            if (_streaming)
            {
                if (sealer.Finished)
                {
                    return; // nothing follows an SSE stream's end marker
                }
                // The write that ends with the stream's end marker is the final chunk: no empty chunk (and frame) after it.
                var final = bytes.Span.EndsWith(Engines.Llama.ChatCompletionJson.Done);
                await link.WriteAsync(SealedHttp.Record(sealer.Seal(bytes.Span, final)), cancellationToken);
            }
            else
            {
                (_whole ??= new System.Buffers.ArrayBufferWriter<byte>()).Write(bytes.Span);
            }
        }

        /// <summary>The final chunk: the whole answer, or an empty one that ends a stream.</summary>
        public async ValueTask FinishAsync(CancellationToken cancellationToken)
        {
            if (!_started)
            {
                await StartAsync(200, "application/json", cancellationToken);
            }
            if (sealer.Finished)
            {
                return;
            }
            var last = _whole is null ? default : _whole.WrittenSpan;
            var record = SealedHttp.Record(sealer.Seal(last, final: true));
            if (_whole is not null)
            {
                CryptographicOperations.ZeroMemory(MemoryMarshal.AsMemory(_whole.WrittenMemory).Span);
            }
            await link.WriteAsync(record, cancellationToken);
        }

        public void Dispose() => sealer.Dispose();
    }

    /// <summary>A queued frame: the first <see cref="Length"/> bytes of <see cref="Buffer"/>, pooled when <see cref="Pooled"/>.</summary>
    private readonly record struct OutFrame(byte[] Buffer, int Length, bool Pooled)
    {
        public OutFrame(byte[] frame) : this(frame, frame.Length, false)
        {
        }

        public FrameType Type => (FrameType)Buffer[0];
        public uint Id => System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(Buffer.AsSpan(1));
        public ReadOnlyMemory<byte> Memory => Buffer.AsMemory(0, Length);

        /// <summary>A frame in a pooled buffer (returned by the writer once sent).</summary>
        public static OutFrame Raw(FrameType type, uint id, ReadOnlySpan<byte> payload)
        {
            var buffer = ArrayPool<byte>.Shared.Rent(Frame.HeaderSize + payload.Length);
            Frame.WriteHeader(buffer, type, id);
            payload.CopyTo(buffer.AsSpan(Frame.HeaderSize));
            return new OutFrame(buffer, Frame.HeaderSize + payload.Length, true);
        }

        /// <summary>This frame with <paramref name="next"/>'s payload appended; both are released as needed.</summary>
        public OutFrame Append(OutFrame next)
        {
            var added = next.Length - Frame.HeaderSize;
            var length = Length + added;
            var result = this;
            if (!Pooled || Buffer.Length < length)
            {
                var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(length, Math.Min(Buffer.Length * 2, CoalesceBytes)));
                Buffer.AsSpan(0, Length).CopyTo(bigger);
                Release();
                result = new OutFrame(bigger, Length, true);
            }
            next.Buffer.AsSpan(Frame.HeaderSize, added).CopyTo(result.Buffer.AsSpan(result.Length));
            next.Release();
            return result with { Length = length };
        }

        public void Release()
        {
            if (Pooled)
            {
                ArrayPool<byte>.Shared.Return(Buffer);
            }
        }
    }
}
