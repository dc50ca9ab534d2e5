using System.IO.Pipelines;
using System.Net;
using System.Text.Json;
using Lattice.Gateway.Dispatch;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Runtimes;
using Lattice.Protocol.Metering;
using Lattice.Protocol.Runtime;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Cluster;

/// <summary>
/// Runs a request on a runtime whose link another node holds: forwards it to that node's internal endpoint
/// (<see cref="NodeEndpoints"/>), which runs it on the link and streams the answer back as hop records
/// (<see cref="HopFrames"/>). This node — the one the client reached — relays and meters the answer as for a link of
/// its own; the holding node meters nothing.
/// </summary>
public sealed partial class NodeTarget : IDispatchTarget, IDisposable
{
    /// <summary>How much longer than the runtime timeout this node waits for the holding node, which times the runtime out itself.</summary>
    private static readonly TimeSpan HopGrace = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long, after its client went away, a forwarded request's end (with the runtime's count) is waited for: longer
    /// than the holding node waits for the runtime's (<see cref="RuntimeTarget"/>'s five seconds).
    /// </summary>
    private static readonly TimeSpan CancelWait = TimeSpan.FromSeconds(10);

    private readonly HttpMessageInvoker _client;
    private readonly string? _secret;
    private readonly TimeProvider _time;
    private readonly TimeSpan _timeout;
    private readonly ILogger<NodeTarget> _logger;

    public NodeTarget(IOptions<GatewayOptions> gateway, IOptions<ClusterOptions> cluster, TimeProvider time, ILogger<NodeTarget> logger)
    {
        // One pooled client for every node: connections are kept and reused, nothing is added to the requests.
        _client = new HttpMessageInvoker(new SocketsHttpHandler
        {
            UseProxy = false,
            UseCookies = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = TimeSpan.FromSeconds(5),
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
            // An answer left unread (the client went away) closes its connection at once, which tells the holding node
            // to cancel the runtime's work; read to its end, the connection goes back to the pool.
            MaxResponseDrainSize = 0,
            ActivityHeadersPropagator = null,
        }, disposeHandler: true);
        _secret = cluster.Value.Secret;
        _time = time;
        _timeout = gateway.Value.RuntimeTimeout + HopGrace;
        _logger = logger;
    }

    /// <summary>The link and the runtime's model routing chose (a <see cref="Candidate.State"/>).</summary>
    public sealed record Hop(RemoteLink Link, CapabilityInfo Capability);

    public async ValueTask<TargetOpening> OpenAsync(TaskRequest request, Candidate candidate, CancellationToken cancellationToken)
    {
        var (link, capability) = (Hop)candidate.State!;
        var input = request.Input;
        // Not tied to the client: once the answer has started, a client that goes away cancels the request on the holding
        // node and the hop is read on to the runtime's count (HopResponse). Until then, it gives the hop up at once.
        var deadline = new IdleDeadline(_time, _timeout, CancellationToken.None);
        var clientGone = cancellationToken.UnsafeRegister(static d => ((IdleDeadline)d!).Abort(), deadline);
        using var message = new HttpRequestMessage(HttpMethod.Post, new Uri(link.Node, NodeEndpoints.DispatchPath(link.LatticeId)))
        {
            Version = HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ReadOnlyMemoryContent(input.Body.AsMemory(0, input.Length)),
        };
        message.Headers.TryAddWithoutValidation(NodeEndpoints.SecretHeader, _secret);
        message.Headers.TryAddWithoutValidation(NodeEndpoints.TaskHeader, request.Task.Name);
        message.Headers.TryAddWithoutValidation(NodeEndpoints.ModelHeader, capability.Model);
        message.Headers.TryAddWithoutValidation(NodeEndpoints.StreamHeader, input.Stream ? "true" : "false");
        message.Content.Headers.TryAddWithoutValidation("Content-Type", input.ContentType);
        if (input.SealedRequestId is { } sealedId)
        {
            message.Headers.TryAddWithoutValidation(NodeEndpoints.SealedRequestIdHeader, sealedId);
        }

        HttpResponseMessage? response = null;
        PipeReader? pipe = null;
        var handedOver = false;
        try
        {
            response = await _client.SendAsync(message, deadline.Token);
            if (response.StatusCode != HttpStatusCode.OK || response.Content.Headers.ContentType?.MediaType != HopFrames.ContentType)
            {
                // A node that does not take the hop (another secret, an older version): the runtime is unreachable from here.
                LogRefused(_logger, link.Node.Authority, (int)response.StatusCode);
                return Unreachable();
            }
            pipe = PipeReader.Create(await response.Content.ReadAsStreamAsync(deadline.Token));
            var reader = new HopReader(pipe, _time);
            deadline.Watch(reader);
            var first = await reader.ReadAsync(deadline.Token);
            switch (first.Type)
            {
                case HopFrames.Start when JsonSerializer.Deserialize(first.Payload.Span, HopJsonContext.Default.HopStart) is { } start:
                    clientGone.Dispose();
                    var opened = new HopResponse(this, link.Node, start.Hop, response, pipe, reader, deadline,
                        start.Status is >= 200 and < 600 ? start.Status : StatusCodes.Status502BadGateway, start.ContentType, cancellationToken);
                    handedOver = true;
                    return TargetOpening.Opened(opened);
                case HopFrames.Failure when JsonSerializer.Deserialize(first.Payload.Span, HopJsonContext.Default.HopError) is { } failed:
                    return TargetOpening.Failed(failed.Failure, failed.ToGatewayError(), failed.Retryable);
                default:
                    return Unreachable();
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return TargetOpening.Failed(DispatchFailure.Timeout, RuntimeTarget.TimedOut(), retryable: false);
        }
        catch (Exception e) when (e is HttpRequestException or IOException or OperationCanceledException or JsonException)
        {
            // Refused, reset, or gone before the answer started (a node that died holding the link): nothing reached
            // the client, so this is a candidate that failed like an offline runtime.
            return Unreachable();
        }
        finally
        {
            clientGone.Dispose();
            if (!handedOver)
            {
                if (pipe is not null)
                {
                    await pipe.CompleteAsync();
                }
                response?.Dispose();
                deadline.Dispose();
            }
        }

        TargetOpening Unreachable() => TargetOpening.Failed(DispatchFailure.Unavailable, RuntimeTarget.Unreachable(link.LatticeId), retryable: true);
    }

    public void Dispose() => _client.Dispose();

    /// <summary>
    /// Asks <paramref name="node"/> to cancel the forwarded request <paramref name="hop"/>: true when it did (or had
    /// already finished it), false when it could not be asked.
    /// </summary>
    private async Task<bool> CancelAsync(Uri node, long hop)
    {
        using var message = new HttpRequestMessage(HttpMethod.Post, new Uri(node, NodeEndpoints.CancelPath(hop)))
        {
            Version = HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        message.Headers.TryAddWithoutValidation(NodeEndpoints.SecretHeader, _secret);
        try
        {
            using var timeout = new CancellationTokenSource(CancelWait, _time);
            using var response = await _client.SendAsync(message, timeout.Token);
            // 204: cancelled, its end comes with the runtime's count; 404: it had ended, its end is on its way.
            return response.StatusCode is HttpStatusCode.NoContent or HttpStatusCode.NotFound;
        }
        catch (Exception e) when (e is HttpRequestException or IOException or OperationCanceledException)
        {
            return false;
        }
    }

    [LoggerMessage(EventId = 9706, Level = LogLevel.Warning, Message = "The node at {Node} refused a forwarded request with {Status}: is Lattice:Cluster:Secret the same on every node?")]
    private static partial void LogRefused(ILogger logger, string node, int status);

    /// <summary>The runtime's answer as the holding node streams it: its bytes, then its usage.</summary>
    /// <remarks>
    /// A client that goes away does not close the hop: the holding node is asked to cancel the request
    /// (<see cref="ForwardedHops"/>) and the hop is read on, its data dropped, to its end record with the runtime's
    /// count — what a local cancel records. If the holding node cannot be asked, or that end does not come within
    /// <see cref="CancelWait"/>, the hop is given up: its connection closes (which cancels the runtime's work there too)
    /// and this node counts what it relayed.
    /// </remarks>
    private sealed class HopResponse : TargetResponse
    {
        private readonly NodeTarget _owner;
        private readonly Uri _node;
        private readonly long _hop;
        private readonly HttpResponseMessage _response;
        private readonly PipeReader _pipe;
        private readonly HopReader _reader;
        private readonly IdleDeadline _deadline;
        private readonly CancellationTokenRegistration _clientGone;
        private ITimer? _giveUp;
        private int _cancelling;
        private bool _done;

        public HopResponse(NodeTarget owner, Uri node, long hop, HttpResponseMessage response, PipeReader pipe, HopReader reader,
            IdleDeadline deadline, int status, string contentType, CancellationToken clientAborted)
        {
            _owner = owner;
            _node = node;
            _hop = hop;
            _response = response;
            _pipe = pipe;
            _reader = reader;
            _deadline = deadline;
            Status = status;
            ContentType = contentType;
            // Last: a client already gone runs this at once.
            _clientGone = clientAborted.UnsafeRegister(static r => ((HopResponse)r!).CancelRemote(), this);
        }

        /// <summary>Cancels the request on the holding node, once; the hop is given up if that cannot be done.</summary>
        private void CancelRemote()
        {
            if (Interlocked.Exchange(ref _cancelling, 1) != 0)
            {
                return;
            }
            if (_hop == 0)
            {
                _deadline.Abort();
                return;
            }
            _ = CancelRemoteAsync();
        }

        private async Task CancelRemoteAsync()
        {
            Volatile.Write(ref _giveUp, _owner._time.CreateTimer(static d => ((IdleDeadline)d!).Abort(), _deadline, CancelWait, Timeout.InfiniteTimeSpan));
            if (!await _owner.CancelAsync(_node, _hop))
            {
                _deadline.Abort();
            }
        }

        /// <summary>The client went away: the runtime's count up to the cancel, as the holding node sends it back.</summary>
        public override async ValueTask<Usage?> CancelAsync()
        {
            CancelRemote();
            while (!_done)
            {
                // Read on to the end record; what the runtime sent meanwhile goes nowhere.
                await ReadAsync();
            }
            return ReportedUsage;
        }

        public override async ValueTask<TargetRead> ReadAsync()
        {
            if (_done)
            {
                return TargetRead.Done;
            }
            try
            {
                var record = await _reader.ReadAsync(_deadline.Token);
                switch (record.Type)
                {
                    case HopFrames.Data:
                        return new TargetRead(record.Payload, false, record.MoreReady, null);
                    case HopFrames.End:
                        _done = true;
                        ReportedUsage = JsonSerializer.Deserialize(record.Payload.Span, HopJsonContext.Default.HopEnd)?.Usage;
                        await _reader.DrainAsync(_deadline.Token);
                        return TargetRead.Done;
                    case HopFrames.Error when JsonSerializer.Deserialize(record.Payload.Span, HopJsonContext.Default.HopError) is { } error:
                        _done = true;
                        await _reader.DrainAsync(_deadline.Token);
                        return TargetRead.Broken(error.ToGatewayError());
                    default:
                        _done = true;
                        return TargetRead.Broken(RuntimeTarget.LinkLost());
                }
            }
            catch (OperationCanceledException)
            {
                _done = true;
                return TargetRead.Broken(RuntimeTarget.TimedOut());
            }
            catch (Exception e) when (e is HttpRequestException or IOException or JsonException)
            {
                // The holding node went away in the middle of the answer.
                _done = true;
                return TargetRead.Broken(RuntimeTarget.LinkLost());
            }
        }

        public override async ValueTask DisposeAsync()
        {
            await _clientGone.DisposeAsync();
            Volatile.Read(ref _giveUp)?.Dispose();
            await _pipe.CompleteAsync();
            _response.Dispose();
            _deadline.Dispose();
        }
    }
}
