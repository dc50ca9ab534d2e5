using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Lattice.Gateway.Dispatch;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Runtimes;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace Lattice.Gateway.Cluster;

/// <summary>
/// The channel between gateway nodes: a request another node routed to a runtime linked here is run on the link, and
/// its answer streamed back unparsed as hop records (<see cref="HopFrames"/>). Only a caller with the cluster secret
/// reaches it; to anyone else — developer keys, tokens, a wrong secret, or any caller when no secret is configured — it
/// answers the 404 of a URL that does not exist. Nothing is metered here: the node the client reached does that.
/// </summary>
public static class NodeEndpoints
{
    public const string DispatchPattern = "/internal/v1/runtimes/{latticeId}/dispatch";
    public const string CancelPattern = "/internal/v1/hops/{hop}/cancel";
    public const string SecretHeader = "Lattice-Node-Secret";
    public const string TaskHeader = "Lattice-Task";
    public const string ModelHeader = "Lattice-Model";
    public const string StreamHeader = "Lattice-Stream";
    /// <summary>Present for a sealed request: the request id it is bound to (the body is ciphertext, relayed as it is).</summary>
    public const string SealedRequestIdHeader = Protocol.Sealing.SealedHttp.RequestIdHeader;

    public static string DispatchPath(string latticeId) => $"internal/v1/runtimes/{Uri.EscapeDataString(latticeId)}/dispatch";

    public static string CancelPath(long hop) => $"internal/v1/hops/{hop.ToString(CultureInfo.InvariantCulture)}/cancel";

    public static IServiceCollection AddCluster(this IServiceCollection services)
    {
        services.AddOptions<ClusterOptions>().BindConfiguration(ClusterOptions.Section)
            .Validate(o => string.IsNullOrEmpty(o.Secret) || o.Secret.Length >= ClusterOptions.MinSecretLength,
                $"Lattice:Cluster:Secret must be at least {ClusterOptions.MinSecretLength} characters (openssl rand -hex 32).")
            .Validate(o => string.IsNullOrEmpty(o.NodeUrl) || o.ParseNodeUrl() is not null,
                "Lattice:Cluster:NodeUrl must be an absolute http or https URL without a path, such as http://10.0.0.5:8080.")
            .ValidateOnStart();
        services.AddSingleton<ClusterSecret>();
        services.AddSingleton<LinkLeases>();
        services.AddSingleton<ForwardedHops>();
        services.AddSingleton<NodeTarget>();
        return services;
    }

    public static IEndpointRouteBuilder MapCluster(this IEndpointRouteBuilder routes)
    {
        // Any method, so that a wrong one is the same 404 as a wrong secret.
        routes.Map(DispatchPattern, DispatchAsync);
        routes.Map(CancelPattern, CancelAsync);
        return routes;
    }

    /// <summary>Whether the caller is another node (a POST with the secret); anyone else gets the 404 of a URL that does not exist.</summary>
    private static async ValueTask<bool> FromNodeAsync(HttpContext context, ClusterSecret secret)
    {
        var request = context.Request;
        if (HttpMethods.IsPost(request.Method) && secret.Matches(request.Headers[SecretHeader]))
        {
            return true;
        }
        await OpenAiErrors.WriteAsync(context, GatewayError.NotFound($"Invalid URL ({request.Method} {request.Path})."));
        return false;
    }

    /// <summary>
    /// The node that forwarded a request cancels it (its client went away): 204 and the request stops on the link, its
    /// hop ending with the runtime's count; 404 when it is not running here (any more).
    /// </summary>
    private static async Task CancelAsync(HttpContext context, string hop, ClusterSecret secret, ForwardedHops hops)
    {
        if (!await FromNodeAsync(context, secret))
        {
            return;
        }
        if (!long.TryParse(hop, NumberStyles.None, CultureInfo.InvariantCulture, out var id) || !hops.Cancel(id))
        {
            // Ended already: its last record is on its way to the node that asks.
            await OpenAiErrors.WriteAsync(context, GatewayError.NotFound("No forwarded request by this id is running on this node."));
            return;
        }
        context.Response.StatusCode = StatusCodes.Status204NoContent;
    }

    private static async Task DispatchAsync(HttpContext context, string latticeId, ClusterSecret secret, RuntimeRegistry registry,
        RuntimeTarget runtimes, ForwardedHops hops, IOptions<GatewayOptions> options)
    {
        if (!await FromNodeAsync(context, secret))
        {
            return;
        }
        var request = context.Request;
        var response = context.Response;
        response.ContentType = HopFrames.ContentType;
        var writer = response.BodyWriter;
        var aborted = context.RequestAborted;

        var task = request.Headers[TaskHeader].ToString();
        var connection = registry.Find(latticeId);
        var capability = connection?.FindCapability(task, request.Headers[ModelHeader].ToString());
        var length = request.ContentLength;
        if (connection is null || capability is null || length is null || length > options.Value.MaxRequestBodyBytes)
        {
            // The link went (or changed) since the other node read its lease: that node tries its next candidate.
            HopFrames.WriteError(writer, HopFrames.Failure, RuntimeTarget.Unreachable(latticeId), DispatchFailure.Unavailable, retryable: true);
            await writer.FlushAsync(aborted);
            return;
        }

        var hop = hops.Begin(aborted);
        try
        {
            await RunAsync(context, runtimes, connection, capability, task, (int)length.Value, hop);
        }
        finally
        {
            hops.End(hop);
        }
    }

    /// <summary>Runs a forwarded request on the link and streams its answer back as hop records.</summary>
    private static async Task RunAsync(HttpContext context, RuntimeTarget runtimes, RuntimeConnection connection, Protocol.Runtime.CapabilityInfo capability,
        string task, int length, ForwardedHop hop)
    {
        var request = context.Request;
        var writer = context.Response.BodyWriter;
        var aborted = context.RequestAborted;
        var body = ArrayPool<byte>.Shared.Rent(Math.Max(length, 1));
        TargetOpening opening;
        try
        {
            var read = await request.Body.ReadAtLeastAsync(body.AsMemory(0, length), length, throwOnEndOfStream: true, aborted);
            // Cancelled when the forwarding node goes away or cancels: the link then cancels the runtime's work.
            opening = await runtimes.OpenLinkAsync(connection, capability, task, body.AsMemory(0, read), request.ContentType ?? "application/json",
                request.Headers[StreamHeader] == "true", hop.Token,
                request.Headers[SealedRequestIdHeader] is { Count: 1 } sealedId && Protocol.Sealing.SealedHttp.IsValidRequestId(sealedId[0]) ? sealedId[0] : null);
        }
        finally
        {
            // The dispatch frame holds its own copy of the body.
            ArrayPool<byte>.Shared.Return(body);
        }
        if (opening.Response is not { } answer)
        {
            HopFrames.WriteError(writer, HopFrames.Failure, opening.Error, opening.Failure, opening.Retryable);
            await writer.FlushAsync(aborted);
            return;
        }

        await using (answer)
        {
            HopFrames.WriteJson(writer, HopFrames.Start, new HopStart(answer.Status, answer.ContentType, hop.Id), HopJsonContext.Default.HopStart);
            // Not the relay: no usage read, no model rewritten, no events filtered — the entry node's relay does all that
            // to the bytes as they arrive there. This only moves them, flushing whenever the runtime has nothing more waiting.
            while (true)
            {
                if (hop.CancelRequested)
                {
                    await EndCancelledAsync(writer, answer, aborted);
                    return;
                }
                var read = await answer.ReadAsync();
                if (read.Completed)
                {
                    if (read.Error is { } error)
                    {
                        if (hop.CancelRequested)
                        {
                            // The cancel interrupted the read: not an error, the end of a cancelled request.
                            await EndCancelledAsync(writer, answer, aborted);
                            return;
                        }
                        HopFrames.WriteError(writer, HopFrames.Error, error, DispatchFailure.MidStream, retryable: false);
                    }
                    else
                    {
                        HopFrames.WriteJson(writer, HopFrames.End, new HopEnd(answer.CheckedReportedUsage()), HopJsonContext.Default.HopEnd);
                    }
                    await writer.FlushAsync(aborted);
                    return;
                }
                HopFrames.WriteHeader(writer, HopFrames.Data, read.Data.Length);
                writer.Write(read.Data.Span);
                if (!read.MoreReady)
                {
                    var flushed = await writer.FlushAsync(aborted);
                    if (flushed.IsCanceled || flushed.IsCompleted)
                    {
                        // The other node went away (its client did): disposing the answer cancels the runtime's work.
                        return;
                    }
                }
            }
        }
    }

    /// <summary>
    /// The forwarding node's client went away: the request is cancelled on the link as a local one is, and the hop ends
    /// with what the runtime counted up to the cancel (null when it gives no count: the forwarding node then counts).
    /// </summary>
    private static async Task EndCancelledAsync(System.IO.Pipelines.PipeWriter writer, TargetResponse answer, CancellationToken aborted)
    {
        var usage = await answer.CancelAsync() is null ? null : answer.CheckedReportedUsage();
        HopFrames.WriteJson(writer, HopFrames.End, new HopEnd(usage), HopJsonContext.Default.HopEnd);
        await writer.FlushAsync(aborted);
    }
}

/// <summary>The cluster secret (<see cref="ClusterOptions.Secret"/>), kept as its SHA-256 and compared in constant time.</summary>
public sealed class ClusterSecret(IOptions<ClusterOptions> options)
{
    private const int MaxPresentedLength = 1024;

    private readonly byte[]? _hash = string.IsNullOrEmpty(options.Value.Secret) ? null : SHA256.HashData(Encoding.UTF8.GetBytes(options.Value.Secret));

    /// <summary>Whether <paramref name="presented"/> is the secret; always false when none is configured.</summary>
    public bool Matches(StringValues presented)
    {
        if (_hash is null || presented.Count != 1 || presented[0] is not { Length: > 0 and <= MaxPresentedLength } value)
        {
            return false;
        }
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(Encoding.UTF8.GetBytes(value), hash);
        return CryptographicOperations.FixedTimeEquals(hash, _hash);
    }
}
