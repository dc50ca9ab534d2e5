using System.Buffers;
using Lattice.Gateway.Anthropic;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Dispatch;
using Lattice.Gateway.OpenAi;

namespace Lattice.Gateway.Upstreams;

/// <summary>
/// What differs for an upstream that speaks Anthropic's Messages API (<see cref="OfferKinds.Anthropic"/>):
/// <c>POST {base_url}/v1/messages</c> with <c>x-api-key</c> and <c>anthropic-version</c>. A request from the Messages
/// surface is sent as the client's own bytes (only the model replaced) and its answer relayed untouched; a chat request
/// is translated (<see cref="ChatToMessages"/>) and its answer translated back (<see cref="MessagesToChat"/>).
/// </summary>
/// <remarks>Sending, timeouts and failures are <see cref="UpstreamTarget"/>'s, as for any upstream.</remarks>
internal static class AnthropicUpstream
{
    /// <summary>The API version the translation is written against (and that native requests are sent with).</summary>
    public const string ApiVersion = "2023-06-01";

    /// <summary>A translated answer larger than this is refused rather than held whole.</summary>
    private const int MaxTranslatedBytes = 32 * 1024 * 1024;

    /// <summary>A request ready to send: the message, and how its answer is read.</summary>
    /// <param name="Native">The client's Messages bytes are sent, so the answer goes back as it is.</param>
    /// <param name="Stream">The client asked for a stream.</param>
    /// <param name="WithUsage">A translated stream carries chat's usage chunk (asked for, or for metering).</param>
    public sealed record Call(HttpRequestMessage Message, bool Native, bool Stream, bool WithUsage, bool UsageInjected);

    public static (Call? Call, GatewayError Error) Prepare(TaskRequest request, UpstreamOffer offer, string? secret, int defaultMaxTokens, bool metered)
    {
        var native = request.Surface == Metering.Surfaces.Anthropic && request.Native is not null;
        HttpContent content;
        if (native)
        {
            content = new SplicedJsonContent(request.Native!, offer.UpstreamModel);
        }
        else
        {
            var (body, error) = ChatToMessages.Translate(request.Input.Body.AsSpan(0, request.Input.Length), offer.UpstreamModel, defaultMaxTokens);
            if (body is null)
            {
                return (null, error);
            }
            content = new ByteArrayContent(body);
            content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        }

        var message = new HttpRequestMessage(HttpMethod.Post, new Uri(offer.BaseUrl!, "v1/messages")) { Content = content };
        if (secret is not null)
        {
            message.Headers.TryAddWithoutValidation("x-api-key", secret);
        }
        message.Headers.TryAddWithoutValidation("anthropic-version", ApiVersion);
        var stream = native ? request.Native!.Stream : request.Stream;
        if (stream)
        {
            message.Headers.TryAddWithoutValidation("Accept", "text/event-stream");
        }
        var injected = !native && stream && metered && !request.IncludeUsage;
        return (new Call(message, native, stream, request.IncludeUsage || injected, injected), default);
    }

    /// <summary>
    /// The answer to a translated request, in chat's format: a stream translated as it arrives; anything else (a
    /// Message, an error envelope) read whole here, before the relay starts, so that an unreadable one can still fail over.
    /// </summary>
    public static async ValueTask<TargetOpening> TranslateAsync(UpstreamTarget.UpstreamResponse answer, Call call, long created)
    {
        if (answer.Status is >= 200 and < 300 && answer.ContentType.StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase))
        {
            return TargetOpening.Opened(new TranslatedStream(answer, new MessagesToChat.Stream(created, call.WithUsage), call.UsageInjected));
        }

        await using (answer)
        {
            var whole = new ArrayBufferWriter<byte>(4096);
            while (true)
            {
                var read = await answer.ReadAsync();
                if (read.Error is { } broken)
                {
                    return TargetOpening.Failed(DispatchFailure.Unavailable, broken, retryable: true);
                }
                if (read.Completed)
                {
                    break;
                }
                if (whole.WrittenCount + read.Data.Length > MaxTranslatedBytes)
                {
                    return TargetOpening.Failed(DispatchFailure.Unavailable, GatewayError.UpstreamFailed("The upstream provider's answer is too large to translate."), retryable: false);
                }
                whole.Write(read.Data.Span);
            }
            var ok = answer.Status is >= 200 and < 300;
            var body = ok ? MessagesToChat.Completion(whole.WrittenSpan, created) : MessagesToChat.ErrorEnvelope(whole.WrittenSpan, answer.Status);
            if (body is null)
            {
                return TargetOpening.Failed(DispatchFailure.Unavailable,
                    GatewayError.UpstreamFailed(ok ? "The upstream provider's answer could not be read." : $"The upstream provider answered with status {answer.Status}."),
                    retryable: true);
            }
            return TargetOpening.Opened(new WholeAnswer(answer.Status, body));
        }
    }

    /// <summary>A translated answer already complete: one read.</summary>
    private sealed class WholeAnswer : TargetResponse
    {
        private readonly byte[] _body;
        private bool _read;

        public WholeAnswer(int status, byte[] body)
        {
            _body = body;
            Status = status;
            ContentType = "application/json";
            ContentLength = body.Length;
        }

        public override ValueTask<TargetRead> ReadAsync()
        {
            if (_read)
            {
                return ValueTask.FromResult(TargetRead.Done);
            }
            _read = true;
            return ValueTask.FromResult(new TargetRead(_body, false, false, null));
        }

        public override ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    /// <summary>A Messages stream read from the upstream and handed to the relay as chat chunks.</summary>
    private sealed class TranslatedStream : TargetResponse
    {
        private readonly UpstreamTarget.UpstreamResponse _inner;
        private readonly MessagesToChat.Stream _translator;
        private readonly ArrayBufferWriter<byte> _output = new(4096);
        private bool _finished;

        public TranslatedStream(UpstreamTarget.UpstreamResponse inner, MessagesToChat.Stream translator, bool usageInjected)
        {
            _inner = inner;
            _translator = translator;
            Status = inner.Status;
            ContentType = "text/event-stream";
            UsageInjected = usageInjected;
        }

        public override async ValueTask<TargetRead> ReadAsync()
        {
            _output.ResetWrittenCount();
            while (!_finished)
            {
                var read = await _inner.ReadAsync();
                if (read.Error is not null)
                {
                    return read;
                }
                if (read.Completed)
                {
                    _finished = true;
                    _translator.Finish(_output);
                }
                else
                {
                    _translator.Push(read.Data.Span, _output);
                }
                if (_output.WrittenCount > 0)
                {
                    return new TargetRead(_output.WrittenMemory, false, false, null);
                }
            }
            return TargetRead.Done;
        }

        public override ValueTask<Protocol.Metering.Usage?> CancelAsync() => _inner.CancelAsync();

        public override ValueTask DisposeAsync() => _inner.DisposeAsync();
    }
}
