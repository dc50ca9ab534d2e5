using System.Net;
using System.Text.Json;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Tasks;
using Microsoft.Extensions.Options;
using Polly.CircuitBreaker;
using Polly.Timeout;

namespace Lattice.Gateway.Upstreams;

/// <summary>Sends a task input to an OpenAI-compatible upstream and relays the answer's bytes as they arrive.</summary>
public sealed partial class UpstreamForwarder(
    IHttpClientFactory clients,
    Runtimes.RuntimeRegistry runtimes,
    Runtimes.RuntimeForwarder runtimeForwarder,
    IOptions<GatewayOptions> options,
    IOptions<UpstreamCredentialsOptions> credentials,
    ILogger<UpstreamForwarder> logger)
{
    public const string ClientName = "upstream";
    private static readonly byte[] DoneTail = "data: [DONE]"u8.ToArray();
    private readonly GatewayOptions _options = options.Value;
    private readonly IReadOnlyDictionary<string, string> _credentials = credentials.Value.Credentials;

    /// <summary>Tries each offer in turn until one answers; moves on only while nothing has reached the client.</summary>
    public async Task ForwardAsync(HttpContext context, TaskClass task, TaskInput input, CatalogModel model)
    {
        GatewayError? failure = null;
        byte[]? upstreamEnvelope = null;
        foreach (var offer in model.Offers)
        {
            if (offer.Task is not null && offer.Task != task.Name)
            {
                continue;
            }

            if (offer.RuntimeId is not null)
            {
                // A hosted runtime: used when connected and serving this task with the offer's model.
                var connection = runtimes.Find(offer.RuntimeId);
                if (connection is { Hosted: true } && connection.FindCapability(task.Name, offer.UpstreamModel) is { } capability)
                {
                    await runtimeForwarder.ForwardAsync(context, task, input, connection, capability);
                    return;
                }
                failure = new GatewayError(StatusCodes.Status503ServiceUnavailable, Protocol.ErrorTypes.Api, Protocol.ErrorCodes.NoCapacity,
                    "No capacity is connected that can serve this model.");
                continue;
            }

            var attempt = await TryOfferAsync(context, task, input, offer);
            switch (attempt.Outcome)
            {
                case AttemptOutcome.Done:
                    return;
                case AttemptOutcome.Retryable:
                    failure = attempt.Error;
                    upstreamEnvelope = attempt.Envelope ?? upstreamEnvelope;
                    LogOfferFailed(logger, offer.Id, attempt.Error.Message);
                    continue;
                case AttemptOutcome.Final:
                    await OpenAiErrors.WriteAsync(context, attempt.Error);
                    return;
            }
        }

        if (upstreamEnvelope is not null)
        {
            context.Response.StatusCode = StatusCodes.Status502BadGateway;
            context.Response.ContentType = "application/json";
            context.Response.ContentLength = upstreamEnvelope.Length;
            await context.Response.Body.WriteAsync(upstreamEnvelope, context.RequestAborted);
            return;
        }
        await OpenAiErrors.WriteAsync(context, failure ?? GatewayError.UpstreamFailed("No upstream could serve the request."));
    }

    private enum AttemptOutcome
    {
        Done,
        Retryable,
        Final,
    }

    private readonly record struct Attempt(AttemptOutcome Outcome, GatewayError Error = default, byte[]? Envelope = null)
    {
        public static readonly Attempt Finished = new(AttemptOutcome.Done);
    }

    private async Task<Attempt> TryOfferAsync(HttpContext context, TaskClass task, TaskInput input, UpstreamOffer offer)
    {
        var aborted = context.RequestAborted;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        cts.CancelAfter(offer.Timeout ?? _options.UpstreamTimeout);

        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(offer.BaseUrl!, task.UpstreamPath))
        {
            Content = task.ContentKind == TaskContentKind.Json
                ? new SplicedJsonContent(input, offer.UpstreamModel)
                : MultipartBody.Build(input, offer.UpstreamModel),
        };
        if (offer.CredentialName is { } credentialName && _credentials.TryGetValue(credentialName, out var secret))
        {
            request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + secret);
        }
        if (input.Stream)
        {
            request.Headers.TryAddWithoutValidation("Accept", "text/event-stream");
        }

        HttpResponseMessage response;
        try
        {
            response = await clients.CreateClient(ClientName).SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            return Attempt.Finished;
        }
        catch (Exception ex) when (ex is OperationCanceledException or TimeoutRejectedException)
        {
            return new Attempt(AttemptOutcome.Final, GatewayError.UpstreamTimedOut());
        }
        catch (Exception ex) when (ex is HttpRequestException or BrokenCircuitException or IOException)
        {
            return new Attempt(AttemptOutcome.Retryable, GatewayError.UpstreamFailed("The upstream provider could not be reached."));
        }

        using (response)
        {
            var status = (int)response.StatusCode;
            if (status >= 500 || status is 401 or 403 || status < 200 || (status >= 300 && status < 400))
            {
                // The upstream's own complaint is relayed if it is an OpenAI envelope; its credential problems are ours, not the client's.
                var envelope = status >= 500 ? await ReadEnvelopeAsync(response, cts.Token) : null;
                return new Attempt(AttemptOutcome.Retryable,
                    GatewayError.UpstreamFailed($"The upstream provider answered with status {status}."), envelope);
            }

            return await RelayAsync(context, response, input.Stream, cts, aborted);
        }
    }

    private static async Task<Attempt> RelayAsync(HttpContext context, HttpResponseMessage response, bool streaming, CancellationTokenSource cts, CancellationToken aborted)
    {
        var client = context.Response;
        client.StatusCode = (int)response.StatusCode;
        var contentHeaders = response.Content.Headers;
        if (contentHeaders.ContentType is { } contentType)
        {
            client.ContentType = contentType.ToString();
        }
        var isSse = contentHeaders.ContentType?.MediaType == "text/event-stream";
        if (isSse)
        {
            client.Headers.CacheControl = "no-cache";
        }
        else if (contentHeaders.ContentLength is { } length)
        {
            client.ContentLength = length;
        }

        var tail = new byte[16];
        var tailLength = 0;
        var writer = client.BodyWriter;
        try
        {
            await using var body = await response.Content.ReadAsStreamAsync(cts.Token);
            while (true)
            {
                var memory = writer.GetMemory(8192);
                var read = await body.ReadAsync(memory, cts.Token);
                if (read == 0)
                {
                    break;
                }
                if (isSse)
                {
                    tailLength = KeepTail(tail, tailLength, memory.Span[..read]);
                }
                writer.Advance(read);
                var flushed = await writer.FlushAsync(aborted);
                if (flushed.IsCanceled || flushed.IsCompleted)
                {
                    return Attempt.Finished;
                }
            }
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            return Attempt.Finished;
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or HttpRequestException)
        {
            var error = ex is OperationCanceledException
                ? GatewayError.UpstreamTimedOut()
                : GatewayError.UpstreamFailed("The upstream provider failed in the middle of the response.");
            await EndBrokenResponseAsync(context, isSse || streaming, tail.AsSpan(0, tailLength).ToArray(), error);
            return Attempt.Finished;
        }

        if (isSse && !EndsWithDone(tail.AsSpan(0, tailLength)))
        {
            await EndBrokenResponseAsync(context, true, tail.AsSpan(0, tailLength).ToArray(),
                GatewayError.UpstreamFailed("The upstream provider ended the stream before it was complete."));
        }
        return Attempt.Finished;
    }

    private static async Task EndBrokenResponseAsync(HttpContext context, bool sse, byte[] tail, GatewayError error)
    {
        if (!sse)
        {
            // A JSON body cut short cannot be mended: break the connection so the client sees a failure, not a truncation.
            context.Abort();
            return;
        }
        if (!context.Response.HasStarted)
        {
            context.Response.ContentType = "text/event-stream";
        }
        var writer = context.Response.BodyWriter;
        try
        {
            if (tail.Length > 0 && !tail.AsSpan().EndsWith("\n\n"u8))
            {
                await writer.WriteAsync("\n\n"u8.ToArray(), context.RequestAborted);
            }
            await writer.WriteAsync(OpenAiErrors.SseEvent(error), context.RequestAborted);
            await writer.FlushAsync(context.RequestAborted);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            // The client left while we were telling it.
        }
    }

    private static int KeepTail(Span<byte> tail, int tailLength, ReadOnlySpan<byte> chunk)
    {
        if (chunk.Length >= tail.Length)
        {
            chunk[^tail.Length..].CopyTo(tail);
            return tail.Length;
        }
        var keep = Math.Min(tailLength, tail.Length - chunk.Length);
        tail.Slice(tailLength - keep, keep).CopyTo(tail);
        chunk.CopyTo(tail[keep..]);
        return keep + chunk.Length;
    }

    private static bool EndsWithDone(ReadOnlySpan<byte> tail)
    {
        var trimmed = tail.TrimEnd("\r\n"u8);
        return trimmed.EndsWith(DoneTail) && trimmed.Length < tail.Length;
    }

    private static async Task<byte[]?> ReadEnvelopeAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        try
        {
            if (response.Content.Headers.ContentType?.MediaType?.Contains("json", StringComparison.OrdinalIgnoreCase) != true)
            {
                return null;
            }
            var bytes = await response.Content.ReadAsByteArrayAsync(cancellationToken);
            if (bytes.Length > 64 * 1024)
            {
                return null;
            }
            using var doc = JsonDocument.Parse(bytes);
            return doc.RootElement.ValueKind == JsonValueKind.Object
                && doc.RootElement.TryGetProperty("error", out var e) && e.ValueKind == JsonValueKind.Object
                && e.TryGetProperty("message", out _)
                ? bytes
                : null;
        }
        catch (Exception ex) when (ex is JsonException or IOException or HttpRequestException or OperationCanceledException)
        {
            return null;
        }
    }

    [LoggerMessage(EventId = 3001, Level = LogLevel.Debug, Message = "Upstream offer {OfferId} failed: {Reason}")]
    private static partial void LogOfferFailed(ILogger logger, string offerId, string reason);
}
