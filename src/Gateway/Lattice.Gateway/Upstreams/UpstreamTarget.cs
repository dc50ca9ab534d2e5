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

/// <summary>
/// Sends a request to an upstream offer — an OpenAI-compatible API, or Anthropic's Messages API
/// (<see cref="AnthropicUpstream"/>) — and reads its answer as it arrives. One HTTP client, timeout, circuit breaker
/// and error mapping for both.
/// </summary>
public sealed class UpstreamTarget(
    IHttpClientFactory clients,
    IOptions<GatewayOptions> options,
    IOptions<UpstreamCredentialsOptions> credentials,
    IOptions<Metering.MeteringOptions> metering,
    CatalogStore catalog,
    IOptions<Billing.BillingOptions> billing,
    TimeProvider time) : IDispatchTarget
{
    private readonly bool _metered = metering.Value.Enabled;
    public const string ClientName = "upstream";
    private readonly GatewayOptions _options = options.Value;
    private readonly IReadOnlyDictionary<string, string> _credentials = credentials.Value.Credentials;
    private readonly UpstreamCredentialsOptions _credentialOptions = credentials.Value;

    public async ValueTask<TargetOpening> OpenAsync(TaskRequest request, Candidate candidate, CancellationToken cancellationToken)
    {
        var offer = (UpstreamOffer)candidate.State!;
        var secret = offer.CredentialName is { } credentialName && _credentials.TryGetValue(credentialName, out var s) ? s : null;
        if (secret is not null && !UpstreamAddressPolicy.MaySend(_credentialOptions, offer.CredentialName!, offer.BaseUrl!))
        {
            // An offer row edited behind the admin API's back: the secret stays home.
            return TargetOpening.Failed(DispatchFailure.Unavailable,
                GatewayError.UpstreamFailed("The offer's credential is not allowed to be sent to its host."), retryable: true);
        }
        AnthropicUpstream.Call? anthropic = null;
        HttpRequestMessage message;
        var usageInjected = false;
        var native = false;
        if (offer.Kind == OfferKinds.Anthropic)
        {
            var defaultMaxTokens = catalog.Current.Models.TryGetValue(request.Model, out var model) && model.MaxOutputTokens is { } most
                ? most
                : billing.Value.DefaultMaxOutputTokens;
            var (call, error) = AnthropicUpstream.Prepare(request, offer, secret, defaultMaxTokens, _metered);
            if (call is null)
            {
                // Another offer of the model may carry what this one cannot; if none does, the client is told why.
                return TargetOpening.Failed(DispatchFailure.Route, error, retryable: true);
            }
            anthropic = call;
            message = call.Message;
        }
        else
        {
            (message, usageInjected, native) = OpenAiMessage(request, offer, secret);
        }

        // The timeout covers the whole attempt, from sending to the last byte of the answer.
        var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(offer.Timeout ?? _options.UpstreamTimeout);
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
        finally
        {
            message.Dispose();
        }

        var status = (int)response.StatusCode;
        if (status >= 500 || status is 401 or 403 || status < 200 || (status >= 300 && status < 400))
        {
            // The upstream's own complaint is relayed if it is an error envelope (Anthropic's, for an Anthropic client,
            // turned into OpenAI's for a chat one); its credential problems are ours, not the client's.
            var envelope = status >= 500 ? await ReadEnvelopeAsync(response, cts.Token) : null;
            if (envelope is not null && anthropic is { Native: false })
            {
                envelope = Anthropic.MessagesToChat.ErrorEnvelope(envelope, status);
            }
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
        var answer = new UpstreamResponse(response, body, cts, usageInjected, native || anthropic is { Native: true });
        return anthropic is { Native: false } translated
            ? await AnthropicUpstream.TranslateAsync(answer, translated, time.GetUtcNow().ToUnixTimeSeconds())
            : TargetOpening.Opened(answer);
    }

    /// <summary>The request to an OpenAI-compatible upstream: the client's bytes, only the model replaced.</summary>
    /// <summary>
    /// The request to an OpenAI-compatible upstream: the client's bytes with the model replaced — the surface's own
    /// (<see cref="TaskRequest.Native"/>) to that API's path when the offer serves the surface itself, else the task's.
    /// </summary>
    private (HttpRequestMessage Message, bool UsageInjected, bool Native) OpenAiMessage(TaskRequest request, UpstreamOffer offer, string? secret)
    {
        var task = request.Task;
        var nativePath = request.Native is null ? null : request.Surface switch
        {
            Metering.Surfaces.Responses when offer.ServesResponses => "responses",
            _ => null,
        };
        var input = nativePath is null ? request.Input : request.Native!;
        // A stream is metered from the upstream's own usage chunk: when the client did not ask for it, the gateway
        // does (one splice in the client's bytes) and the relay takes the chunk out again.
        JsonSplice? usageSplice = null;
        if (_metered && nativePath is null && input.Stream && !input.IncludeUsage && task.ContentKind == TaskContentKind.Json && task.UpstreamPath == "chat/completions"
            && IncludeUsagePatch.TryCreate(input.Body.AsSpan(0, input.Length), out var splice))
        {
            usageSplice = splice;
        }

        var message = new HttpRequestMessage(HttpMethod.Post, new Uri(offer.BaseUrl!, nativePath ?? task.UpstreamPath))
        {
            Content = task.ContentKind == TaskContentKind.Json
                ? new SplicedJsonContent(input, offer.UpstreamModel, usageSplice)
                : MultipartBody.Build(input, offer.UpstreamModel),
        };
        if (secret is not null)
        {
            message.Headers.TryAddWithoutValidation("Authorization", "Bearer " + secret);
        }
        if (input.Stream)
        {
            message.Headers.TryAddWithoutValidation("Accept", "text/event-stream");
        }
        return (message, usageSplice is not null, nativePath is not null);
    }

    /// <summary>The largest error envelope relayed from a failing upstream; a bigger answer is not read past this.</summary>
    internal const int MaxEnvelopeBytes = 64 * 1024;

    private static async Task<byte[]?> ReadEnvelopeAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        try
        {
            if (response.Content.Headers.ContentType?.MediaType?.Contains("json", StringComparison.OrdinalIgnoreCase) != true)
            {
                return null;
            }
            // Read with a cap, never the whole of whatever a failing upstream sends (nor what it declares).
            if (response.Content.Headers.ContentLength > MaxEnvelopeBytes)
            {
                return null;
            }
            var buffer = new byte[MaxEnvelopeBytes + 1];
            var length = 0;
            await using (var stream = await response.Content.ReadAsStreamAsync(cancellationToken))
            {
                int read;
                while (length < buffer.Length && (read = await stream.ReadAsync(buffer.AsMemory(length), cancellationToken)) > 0)
                {
                    length += read;
                }
            }
            if (length > MaxEnvelopeBytes)
            {
                return null;
            }
            var bytes = buffer[..length];
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
    internal sealed class UpstreamResponse : TargetResponse
    {
        private readonly HttpResponseMessage _response;
        private readonly Stream _body;
        private readonly CancellationTokenSource _cts;
        private byte[]? _buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);

        public UpstreamResponse(HttpResponseMessage response, Stream body, CancellationTokenSource cts, bool usageInjected, bool native)
        {
            Native = native;
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
