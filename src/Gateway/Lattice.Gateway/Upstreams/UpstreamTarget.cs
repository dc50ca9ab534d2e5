using System.Buffers;
using System.Text.Json;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Dispatch;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.OpenAi;
using Lattice.Protocol.Metering;
using Microsoft.Extensions.Options;
using Polly.CircuitBreaker;
using Polly.Timeout;

namespace Lattice.Gateway.Upstreams;

/// <summary>Sends a request to an OpenAI-compatible upstream offer and reads its answer as it arrives.</summary>
public sealed class UpstreamTarget(
    IHttpClientFactory clients,
    IOptions<GatewayOptions> options,
    IOptions<UpstreamCredentialsOptions> credentials,
    IOptions<Metering.MeteringOptions> metering) : IDispatchTarget
{
    private readonly bool _metered = metering.Value.Enabled;
    public const string ClientName = "upstream";
    private readonly GatewayOptions _options = options.Value;
    private readonly IReadOnlyDictionary<string, string> _credentials = credentials.Value.Credentials;

    public async ValueTask<TargetOpening> OpenAsync(TaskRequest request, Candidate candidate, CancellationToken cancellationToken)
    {
        var offer = (UpstreamOffer)candidate.State!;
        var task = request.Task;
        // A request from a surface this upstream serves itself goes as the client wrote it, to that API's path.
        var nativePath = request.Native is null ? null : request.Surface switch
        {
            Metering.Surfaces.Responses when offer.ServesResponses => "responses",
            _ => null,
        };
        var input = nativePath is null ? request.Input : request.Native!;
        // The timeout covers the whole attempt, from sending to the last byte of the answer.
        var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(offer.Timeout ?? _options.UpstreamTimeout);

        // A stream is metered from the upstream's own usage chunk: when the client did not ask for it, the gateway
        // does (one splice in the client's bytes) and the relay takes the chunk out again.
        JsonSplice? usageSplice = null;
        if (_metered && nativePath is null && input.Stream && !input.IncludeUsage && task.ContentKind == TaskContentKind.Json && task.UpstreamPath == "chat/completions"
            && IncludeUsagePatch.TryCreate(input.Body.AsSpan(0, input.Length), out var splice))
        {
            usageSplice = splice;
        }

        using var message = new HttpRequestMessage(HttpMethod.Post, new Uri(offer.BaseUrl!, nativePath ?? task.UpstreamPath))
        {
            Content = task.ContentKind == TaskContentKind.Json
                ? new SplicedJsonContent(input, offer.UpstreamModel, usageSplice)
                : MultipartBody.Build(input, offer.UpstreamModel),
        };
        if (offer.CredentialName is { } credentialName && _credentials.TryGetValue(credentialName, out var secret))
        {
            message.Headers.TryAddWithoutValidation("Authorization", "Bearer " + secret);
        }
        if (input.Stream)
        {
            message.Headers.TryAddWithoutValidation("Accept", "text/event-stream");
        }

        HttpResponseMessage response;
        try
        {
            response = await clients.CreateClient(ClientName).SendAsync(message, HttpCompletionOption.ResponseHeadersRead, cts.Token);
        }
        catch (Exception ex) when (ex is OperationCanceledException or TimeoutRejectedException)
        {
            cts.Dispose();
            return TargetOpening.Failed(DispatchFailure.Timeout, GatewayError.UpstreamTimedOut(), retryable: false);
        }
        catch (Exception ex) when (ex is HttpRequestException or BrokenCircuitException or IOException)
        {
            cts.Dispose();
            return TargetOpening.Failed(DispatchFailure.Unavailable, GatewayError.UpstreamFailed("The upstream provider could not be reached."), retryable: true);
        }

        var status = (int)response.StatusCode;
        if (status >= 500 || status is 401 or 403 || status < 200 || (status >= 300 && status < 400))
        {
            // The upstream's own complaint is relayed if it is an OpenAI envelope; its credential problems are ours, not the client's.
            var envelope = status >= 500 ? await ReadEnvelopeAsync(response, cts.Token) : null;
            response.Dispose();
            cts.Dispose();
            return TargetOpening.Failed(DispatchFailure.Unavailable,
                GatewayError.UpstreamFailed($"The upstream provider answered with status {status}."), retryable: true, envelope);
        }

        Stream body;
        try
        {
            body = await response.Content.ReadAsStreamAsync(cts.Token);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or HttpRequestException)
        {
            response.Dispose();
            cts.Dispose();
            return TargetOpening.Failed(DispatchFailure.Unavailable, GatewayError.UpstreamFailed("The upstream provider could not be reached."), retryable: true);
        }
        return TargetOpening.Opened(new UpstreamResponse(response, body, cts, usageSplice is not null, nativePath is not null));
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

    /// <summary>An upstream's HTTP answer, read in pieces into one pooled buffer.</summary>
    private sealed class UpstreamResponse : TargetResponse
    {
        private readonly HttpResponseMessage _response;
        private readonly Stream _body;
        private readonly CancellationTokenSource _cts;
        private byte[]? _buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);

        public UpstreamResponse(HttpResponseMessage response, Stream body, CancellationTokenSource cts, bool usageInjected, bool native)
        {
            _response = response;
            _body = body;
            _cts = cts;
            Status = (int)response.StatusCode;
            var headers = response.Content.Headers;
            ContentType = headers.ContentType?.ToString() ?? "application/json";
            ContentLength = headers.ContentLength;
            UsageInjected = usageInjected;
            Native = native;
        }

        public override async ValueTask<TargetRead> ReadAsync()
        {
            try
            {
                var read = await _body.ReadAsync(_buffer!, _cts.Token);
                return read == 0 ? TargetRead.Done : new TargetRead(_buffer.AsMemory(0, read), false, false, null);
            }
            catch (OperationCanceledException)
            {
                return TargetRead.Broken(GatewayError.UpstreamTimedOut());
            }
            catch (Exception ex) when (ex is IOException or HttpRequestException or ObjectDisposedException)
            {
                return TargetRead.Broken(GatewayError.UpstreamFailed("The upstream provider failed in the middle of the response."));
            }
        }

        public override async ValueTask DisposeAsync()
        {
            await _body.DisposeAsync();
            _response.Dispose();
            _cts.Dispose();
            if (_buffer is { } buffer)
            {
                _buffer = null;
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }
}
