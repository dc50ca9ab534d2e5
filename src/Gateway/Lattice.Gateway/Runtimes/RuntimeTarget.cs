using System.IO.Pipelines;
using Lattice.Gateway.Dispatch;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.OpenAi;
using Lattice.Protocol;
using Lattice.Protocol.Metering;
using Lattice.Protocol.Runtime;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Runtimes;

/// <summary>Runs a request on a runtime's link: one dispatch frame out, response frames back as the answer.</summary>
public sealed partial class RuntimeTarget(IOptions<GatewayOptions> options, TimeProvider time, ILogger<RuntimeTarget>? logger = null) : IDispatchTarget
{
    private readonly ILogger _logger = (ILogger?)logger ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;

    /// <summary>How long a cancelled dispatch waits for the runtime's count of what it generated.</summary>
    private static readonly TimeSpan CancelReportWait = TimeSpan.FromSeconds(5);

    // Without progress: a dispatch times out only when none of its frames has arrived for this long.
    private readonly TimeSpan _timeout = options.Value.RuntimeTimeout;

    /// <summary>The link and the runtime's model routing chose (a <see cref="Candidate.State"/>).</summary>
    public sealed record Link(RuntimeConnection Connection, CapabilityInfo Capability);

    public static GatewayError Unreachable(string latticeId) =>
        new(StatusCodes.Status409Conflict, ErrorTypes.InvalidRequest, ErrorCodes.RuntimeUnreachable,
            $"The runtime '{latticeId}' is not connected.", "model");

    internal static GatewayError LinkLost() =>
        new(StatusCodes.Status503ServiceUnavailable, ErrorTypes.Api, ErrorCodes.PersonalLatticeRelayUnavailable,
            "The runtime's connection was lost during the request.");

    internal static GatewayError TimedOut() =>
        new(StatusCodes.Status504GatewayTimeout, ErrorTypes.Api, ErrorCodes.PersonalLatticeExecutionTimeout,
            "The runtime made no progress in time.");

    private static GatewayError TooLarge(string latticeId) =>
        new(StatusCodes.Status413PayloadTooLarge, ErrorTypes.InvalidRequest, ErrorCodes.RequestTooLarge,
            $"The request is larger than the runtime '{latticeId}' accepts.");

    private static GatewayError RuntimeFailed(DispatchError? error) => error?.Code switch
    {
        // The app's seal, not the runtime, failed: the app must fix it (a key it pinned that the runtime no longer has).
        ErrorCodes.SealedRequestUnreadable => new(StatusCodes.Status400BadRequest, ErrorTypes.InvalidRequest, error.Code, error.Message),
        ErrorCodes.SealedDispatchUnsupported => new(StatusCodes.Status400BadRequest, ErrorTypes.InvalidRequest, error.Code, error.Message, "model"),
        _ => new(StatusCodes.Status502BadGateway, ErrorTypes.Api, error?.Code ?? ErrorCodes.UpstreamError,
            error?.Message ?? "The runtime failed to serve the request."),
    };

    private static GatewayError SealedUnsupported(string latticeId) =>
        new(StatusCodes.Status400BadRequest, ErrorTypes.InvalidRequest, ErrorCodes.SealedDispatchUnsupported,
            $"The runtime '{latticeId}' cannot open sealed requests (its daemon has no work key or predates sealed dispatch).", "model");

    public ValueTask<TargetOpening> OpenAsync(TaskRequest request, Candidate candidate, CancellationToken cancellationToken)
    {
        var (connection, capability) = (Link)candidate.State!;
        var input = request.Input;
        return OpenLinkAsync(connection, capability, request.Task.Name, input.Body.AsMemory(0, input.Length), input.ContentType, input.Stream, cancellationToken,
            input.SealedRequestId);
    }

    /// <summary>
    /// Sends a request to the runtime's model <paramref name="capability"/> over <paramref name="connection"/> and waits
    /// for its answer to start: for a request that entered this node, and for one another node forwards here.
    /// With <paramref name="sealedRequestId"/> the body is sealed: the daemon opens it, and its usage is taken only as
    /// signed with the work key its link announced (and its record holds); unsigned or badly signed, it is kept as estimated.
    /// </summary>
    public async ValueTask<TargetOpening> OpenLinkAsync(RuntimeConnection connection, CapabilityInfo capability, string task,
        ReadOnlyMemory<byte> body, string contentType, bool stream, CancellationToken cancellationToken, string? sealedRequestId = null)
    {
        if (sealedRequestId is not null && !connection.OpensSealed)
        {
            return TargetOpening.Failed(DispatchFailure.Route, SealedUnsupported(connection.LatticeId), retryable: false);
        }
        var deadline = new IdleDeadline(time, _timeout, cancellationToken);
        if (body.Length > connection.MaxDispatchBodyBytes)
        {
            // The daemon said in its hello that it takes no frame this large.
            deadline.Dispose();
            return TargetOpening.Failed(DispatchFailure.Unavailable, TooLarge(connection.LatticeId), retryable: true);
        }
        RuntimeDispatch dispatch;
        try
        {
            dispatch = await connection.StartDispatchAsync(new DispatchHeader(task, capability.Model, contentType, stream, sealedRequestId), body, deadline.Token);
            deadline.Watch(dispatch);
        }
        catch (RuntimeLinkLostException)
        {
            deadline.Dispose();
            return TargetOpening.Failed(DispatchFailure.Unavailable, Unreachable(connection.LatticeId), retryable: true);
        }
        catch (OperationCanceledException)
        {
            deadline.Dispose();
            return TargetOpening.Failed(DispatchFailure.Timeout, TimedOut(), retryable: false);
        }

        // The answer has started once the runtime says how (response start) or sends its first bytes; an error or a
        // lost link before that leaves the client untouched, so the next candidate may still serve.
        try
        {
            while (true)
            {
                var e = await dispatch.Events.ReadAsync(deadline.Token);
                switch (e.Type)
                {
                    case FrameType.ResponseStart when e.Implicit:
                        // The runtime began with data: a 200 JSON answer.
                        return TargetOpening.Opened(new RuntimeResponse(this, connection, dispatch, deadline, StatusCodes.Status200OK, "application/json", sealedRequestId));
                    case FrameType.ResponseStart:
                        var start = Frame.ReadJson(e.Payload, ProtocolJsonContext.Default.ResponseStart);
                        e.Release();
                        return TargetOpening.Opened(new RuntimeResponse(this, connection, dispatch, deadline,
                            start?.Status is >= 200 and < 600 ? start.Status : StatusCodes.Status502BadGateway,
                            start?.ContentType ?? "application/json", sealedRequestId));
                    case FrameType.End:
                        var response = new RuntimeResponse(this, connection, dispatch, deadline, StatusCodes.Status200OK, "application/json", sealedRequestId);
                        response.Ended(e);
                        return TargetOpening.Opened(response);
                    case FrameType.Error:
                        var error = Frame.ReadJson(e.Payload, ProtocolJsonContext.Default.DispatchError);
                        e.Release();
                        connection.Complete(dispatch.Id);
                        deadline.Dispose();
                        return TargetOpening.Failed(DispatchFailure.Unavailable, RuntimeFailed(error), retryable: true);
                    default:
                        e.Release();
                        break;
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or System.Threading.Channels.ChannelClosedException or RuntimeLinkLostException)
        {
            var timedOut = ex is OperationCanceledException && !cancellationToken.IsCancellationRequested;
            if (ex is OperationCanceledException)
            {
                connection.Cancel(dispatch);
            }
            connection.Complete(dispatch.Id);
            deadline.Dispose();
            return timedOut
                ? TargetOpening.Failed(DispatchFailure.Timeout, TimedOut(), retryable: false)
                : TargetOpening.Failed(DispatchFailure.Unavailable, LinkLost(), retryable: true);
        }
    }

    /// <summary>
    /// Whether a sealed dispatch's end frame is authenticated by the link's work key (tagged with the link's usage key, or
    /// signed); when not, a warning (the usage is then metered as estimated: the runtime's word, unproven).
    /// </summary>
    private bool SealedUsageHolds(RuntimeConnection connection, DispatchEnd end, string sealedRequestId)
    {
        if (connection.SignedByWorkKey(end, sealedRequestId))
        {
            return true;
        }
        LogUnsignedUsage(_logger, connection.LatticeId, end.Signature is null ? "missing" : "invalid");
        return false;
    }

    private static Usage ToUsage(DispatchEnd end) => new(
        end.PromptTokens, end.CompletionTokens, end.PromptTokens + end.CompletionTokens, end.CachedTokens,
        Protocol.Sealing.SealedUsage.AudioMilliseconds(end.AudioSeconds), end.Estimated);

    [LoggerMessage(EventId = 4101, Level = LogLevel.Warning, Message = "Runtime {LatticeId} reported a sealed dispatch's usage with a {Signature} tag or signature; metered as estimated")]
    private static partial void LogUnsignedUsage(ILogger logger, string latticeId, string signature);

    /// <summary>The frames of one dispatch, read as an answer: its body from the dispatch's pipe, then its end.</summary>
    private sealed class RuntimeResponse : TargetResponse
    {
        private readonly RuntimeTarget _target;
        private readonly string? _sealedRequestId;
        private readonly RuntimeConnection _connection;
        private readonly RuntimeDispatch _dispatch;
        private readonly IdleDeadline _deadline;
        private readonly PipeReader _body;
        // The bytes the last read handed out (valid until the next read) and where they end in the pipe.
        private int _held;
        private SequencePosition _heldEnd;
        // Bytes taken and not yet granted back as credit.
        private int _ungranted;
        private bool _bodyDone;
        private bool _ended;

        public RuntimeResponse(RuntimeTarget target, RuntimeConnection connection, RuntimeDispatch dispatch, IdleDeadline deadline, int status, string contentType,
            string? sealedRequestId)
        {
            _target = target;
            _sealedRequestId = sealedRequestId;
            _connection = connection;
            _dispatch = dispatch;
            _deadline = deadline;
            _body = dispatch.Body;
            Status = status;
            ContentType = contentType;
        }

        internal void Ended(DispatchEvent end)
        {
            _ended = true;
            if (_sealedRequestId is not null)
            {
                // Nothing else can count a sealed answer: its authenticated end is the count, zero included.
                if (Frame.ReadJson(end.Payload, ProtocolJsonContext.Default.DispatchEnd) is { } reported)
                {
                    var (target, connection, requestId) = (_target, _connection, _sealedRequestId);
                    var counted = ToUsage(reported);
                    if (connection.TagsUsage)
                    {
                        // A tag (HMAC) is checked here: handing a check of a few µs to the thread pool costs more (a
                        // worker woken, and its spinning) than the check itself.
                        ReportedUsage = Metering.UsageMeter.Checked(counted, () => target.SealedUsageHolds(connection, reported, requestId));
                    }
                    else
                    {
                        // A signature is checked once the answer has gone on, before the usage record is written (UsageMeter).
                        ReportedUsage = counted;
                        ReportedUsageCheck = () => target.SealedUsageHolds(connection, reported, requestId);
                    }
                }
                end.Release();
                return;
            }
            // An end that counts nothing at all (a runtime forwarding to a local server that reports no usage) is no
            // count: the gateway then counts the answer itself.
            if (Frame.ReadJson(end.Payload, ProtocolJsonContext.Default.DispatchEnd) is { } usage
                && (usage.PromptTokens != 0 || usage.CompletionTokens != 0 || usage.AudioSeconds > 0))
            {
                ReportedUsage = ToUsage(usage);
            }
            end.Release();
        }

        /// <summary>The previous read's bytes have been copied on: they leave the window (and go back to the daemon as credit).</summary>
        private void ReleaseHeld()
        {
            if (_held > 0)
            {
                _body.AdvanceTo(_heldEnd);
                _connection.Taken(_dispatch, _held, ref _ungranted);
                _held = 0;
            }
        }

        /// <summary>No more of the body is wanted: later bytes are dropped as they arrive.</summary>
        private void StopBody()
        {
            if (!_bodyDone)
            {
                _bodyDone = true;
                _held = 0;
                _dispatch.StopBody();
            }
        }

        public override async ValueTask<TargetRead> ReadAsync()
        {
            if (_ended)
            {
                return TargetRead.Done;
            }
            if (_bodyDone)
            {
                return TargetRead.Broken(LinkLost()); // the body completed and then the link went before the end frame
            }
            try
            {
                ReleaseHeld();
                while (true)
                {
                    if (!_body.TryRead(out var result))
                    {
                        result = await _body.ReadAsync(_deadline.Token);
                    }
                    var buffer = result.Buffer;
                    foreach (var segment in buffer)
                    {
                        if (!segment.IsEmpty)
                        {
                            // One segment per read, passed on as it lies in the pipe; MoreReady when the pipe holds more.
                            _held = segment.Length;
                            _heldEnd = buffer.GetPosition(segment.Length);
                            return new TargetRead(segment, false, buffer.Length > segment.Length, null);
                        }
                    }
                    _body.AdvanceTo(buffer.End);
                    if (result.IsCompleted)
                    {
                        return await TerminalAsync();
                    }
                }
            }
            catch (Exception ex) when (ex is RuntimeLinkLostException or System.Threading.Channels.ChannelClosedException)
            {
                return TargetRead.Broken(LinkLost());
            }
            catch (OperationCanceledException)
            {
                return TargetRead.Broken(TimedOut());
            }
        }

        /// <summary>The body is complete: the end (with its usage) or error that completed it.</summary>
        private async ValueTask<TargetRead> TerminalAsync()
        {
            StopBody();
            while (true)
            {
                var e = await _dispatch.Events.ReadAsync(_deadline.Token);
                switch (e.Type)
                {
                    case FrameType.End:
                        Ended(e);
                        return TargetRead.Done;
                    case FrameType.Error:
                        var error = Frame.ReadJson(e.Payload, ProtocolJsonContext.Default.DispatchError);
                        e.Release();
                        _ended = true;
                        return TargetRead.Broken(RuntimeFailed(error));
                    default:
                        e.Release();
                        break;
                }
            }
        }

        public override async ValueTask<Usage?> CancelAsync()
        {
            if (_ended)
            {
                return ReportedUsage;
            }
            if (_connection.Hello.Features?.Contains(LinkFeatures.EndAfterCancel) != true)
            {
                // An older runtime stops without a word: only the gateway's own count is left.
                _connection.Cancel(_dispatch);
                _ended = true;
                return null;
            }
            // The runtime stops the work and answers the cancel with an end frame counting what it generated. The
            // body is no longer read: what still arrives is dropped, so the runtime is never held up by a full window.
            StopBody();
            _connection.SendCancel(_dispatch);
            using var wait = new CancellationTokenSource(CancelReportWait);
            try
            {
                await foreach (var e in _dispatch.Events.ReadAllAsync(wait.Token))
                {
                    if (e.Type == FrameType.End)
                    {
                        Ended(e);
                        return ReportedUsage;
                    }
                    e.Release();
                    if (e.Type == FrameType.Error)
                    {
                        break;
                    }
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or RuntimeLinkLostException or System.Threading.Channels.ChannelClosedException)
            {
                // An older runtime that does not report, or a link that went away: only the gateway's count is left.
            }
            _ended = true;
            return null;
        }

        public override ValueTask DisposeAsync()
        {
            StopBody();
            if (!_ended)
            {
                _connection.Cancel(_dispatch);
            }
            _connection.Complete(_dispatch.Id);
            _deadline.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
