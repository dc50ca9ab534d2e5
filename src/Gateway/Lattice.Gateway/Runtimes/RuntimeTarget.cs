using Lattice.Gateway.Dispatch;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.OpenAi;
using Lattice.Protocol;
using Lattice.Protocol.Metering;
using Lattice.Protocol.Runtime;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Runtimes;

/// <summary>Runs a request on a runtime's link: one dispatch frame out, response frames back as the answer.</summary>
public sealed class RuntimeTarget(IOptions<GatewayOptions> options, TimeProvider time) : IDispatchTarget
{
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

    private static GatewayError RuntimeFailed(DispatchError? error) =>
        new(StatusCodes.Status502BadGateway, ErrorTypes.Api, error?.Code ?? ErrorCodes.UpstreamError,
            error?.Message ?? "The runtime failed to serve the request.");

    public async ValueTask<TargetOpening> OpenAsync(TaskRequest request, Candidate candidate, CancellationToken cancellationToken)
    {
        var (connection, capability) = (Link)candidate.State!;
        var deadline = new IdleDeadline(time, _timeout, cancellationToken);
        var input = request.Input;
        RuntimeDispatch dispatch;
        try
        {
            dispatch = await connection.StartDispatchAsync(
                new DispatchHeader(request.Task.Name, capability.Model, input.ContentType, input.Stream),
                input.Body.AsMemory(0, input.Length), deadline.Token);
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
                    case FrameType.ResponseStart:
                        var start = Frame.ReadJson(e.Payload, ProtocolJsonContext.Default.ResponseStart);
                        e.Release();
                        return TargetOpening.Opened(new RuntimeResponse(connection, dispatch, deadline,
                            start?.Status is >= 200 and < 600 ? start.Status : StatusCodes.Status502BadGateway,
                            start?.ContentType ?? "application/json", first: null));
                    case FrameType.Data:
                        return TargetOpening.Opened(new RuntimeResponse(connection, dispatch, deadline, StatusCodes.Status200OK, "application/json", first: e));
                    case FrameType.End:
                        var response = new RuntimeResponse(connection, dispatch, deadline, StatusCodes.Status200OK, "application/json", first: null);
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

    /// <summary>The frames of one dispatch, read as an answer.</summary>
    private sealed class RuntimeResponse : TargetResponse
    {
        private readonly RuntimeConnection _connection;
        private readonly RuntimeDispatch _dispatch;
        private readonly IdleDeadline _deadline;
        private DispatchEvent? _pending;
        private DispatchEvent? _held;
        private bool _ended;

        public RuntimeResponse(RuntimeConnection connection, RuntimeDispatch dispatch, IdleDeadline deadline, int status, string contentType, DispatchEvent? first)
        {
            _connection = connection;
            _dispatch = dispatch;
            _deadline = deadline;
            _pending = first;
            Status = status;
            ContentType = contentType;
        }

        internal void Ended(DispatchEvent end)
        {
            _ended = true;
            // An end that counts nothing at all (a runtime forwarding to a local server that reports no usage) is no
            // count: the gateway then counts the answer itself.
            if (Frame.ReadJson(end.Payload, ProtocolJsonContext.Default.DispatchEnd) is { } usage
                && (usage.PromptTokens != 0 || usage.CompletionTokens != 0 || usage.AudioSeconds > 0))
            {
                ReportedUsage = ToUsage(usage);
            }
            end.Release();
        }

        private static Usage ToUsage(DispatchEnd end) => new(
            end.PromptTokens, end.CompletionTokens, end.PromptTokens + end.CompletionTokens, end.CachedTokens,
            (long)Math.Round(end.AudioSeconds * 1000, MidpointRounding.ToEven), end.Estimated);

        public override async ValueTask<TargetRead> ReadAsync()
        {
            // The previous read's bytes have been copied on; their pooled buffer goes back now.
            _held?.Release();
            _held = null;
            if (_ended)
            {
                return TargetRead.Done;
            }
            var events = _dispatch.Events;
            try
            {
                while (true)
                {
                    DispatchEvent e;
                    if (_pending is { } first)
                    {
                        e = first;
                        _pending = null;
                    }
                    else if (!events.TryRead(out e))
                    {
                        if (!await events.WaitToReadAsync(_deadline.Token))
                        {
                            return TargetRead.Broken(LinkLost());
                        }
                        continue;
                    }
                    switch (e.Type)
                    {
                        case FrameType.Data:
                            _held = e;
                            return new TargetRead(e.Payload, false, events.TryPeek(out _), null);
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
            catch (Exception ex) when (ex is RuntimeLinkLostException or System.Threading.Channels.ChannelClosedException)
            {
                return TargetRead.Broken(LinkLost());
            }
            catch (OperationCanceledException)
            {
                return TargetRead.Broken(TimedOut());
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
            // The runtime stops the work and answers the cancel with an end frame counting what it generated.
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
            _held?.Release();
            _pending?.Release();
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
