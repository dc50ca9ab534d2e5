using System.Buffers;
using System.Text.Json;
using Lattice.Gateway.Billing;
using Lattice.Gateway.Dispatch;
using Lattice.Gateway.OpenAi;

namespace Lattice.Gateway.Responses;

/// <summary>
/// The Responses surface's sink. A chat target's answer is translated: a stream event by event as it arrives (and
/// leaves when the relay flushes), anything else kept until the dispatch is over and rendered whole — a Response
/// object, or its stream. An answer a Responses-serving upstream gave in the API's own format is passed through.
/// The usage the client is told is the one the dispatch metered. A kept response (<c>store</c>) is saved before its
/// last event or byte leaves, so a follow-up naming it can never arrive first.
/// </summary>
public sealed class ResponsesSink(HttpContext context, ResponsesRequest.Translated request, TimeProvider time,
    Func<ResponseOutput, byte[], CancellationToken, Task>? save) : IResponseSink, IChatAnswerHandler
{
    private readonly ChatAnswerReader _reader = new();
    private readonly ResponseOutput _output = new(ResponseId(context.TraceIdentifier), time.GetUtcNow().ToUnixTimeSeconds(), request);
    private int _status;
    private bool _receivedSse;
    /// <summary>Translating a stream to the client as it arrives.</summary>
    private bool _live;
    /// <summary>The answer is already a Responses answer: relayed as it is.</summary>
    private bool _native;
    private string? _finishReason;

    public void Admission(RateLimitReport? limits, bool admitted)
    {
        if (limits is { } report)
        {
            OpenAiRateLimitHeaders.Write(context.Response.Headers, report);
        }
        if (admitted)
        {
            context.Features.Get<Billing.Idempotency.IdempotencyFeature>()?.MarkExecuting();
        }
    }


    public void Start(int status, string contentType, long? contentLength, bool sse, bool native)
    {
        _status = status;
        _receivedSse = sse;
        // A target's own error envelope is OpenAI's, which is this surface's: it too passes through.
        _native = native || status is < 200 or >= 300;
        if (_native)
        {
            var response = context.Response;
            response.StatusCode = status;
            response.ContentType = contentType;
            if (sse)
            {
                response.Headers.CacheControl = "no-cache";
            }
            else if (contentLength is { } length)
            {
                response.ContentLength = length;
            }
            return;
        }
        _live = sse && request.Stream;
        if (_live)
        {
            StartStream();
        }
    }

    public IBufferWriter<byte> Writer => _native ? context.Response.BodyWriter : _reader.Writer;

    public async ValueTask<bool> FlushAsync(CancellationToken cancellationToken)
    {
        if (!_live && !_native)
        {
            return !cancellationToken.IsCancellationRequested;
        }
        if (_live)
        {
            _reader.ReadEvents(this);
        }
        var flushed = await context.Response.BodyWriter.FlushAsync(cancellationToken);
        return !flushed.IsCanceled && !flushed.IsCompleted;
    }

    /// <summary>Ends the answer once the dispatch is over: the stream's closing events, or the whole answer.</summary>
    /// <remarks>
    /// The closing events are written, not flushed: the server's end of the response sends them together with the
    /// stream's last chunk in one write, one send fewer per stream than flushing them here.
    /// </remarks>
    public async Task CompleteAsync(DispatchOutcome outcome)
    {
        try
        {
            await RenderAsync(outcome);
        }
        finally
        {
            _reader.Dispose();
        }
    }

    private async Task RenderAsync(DispatchOutcome outcome)
    {
        if (outcome.Failure == DispatchFailure.ClientCancelled)
        {
            return;
        }
        if (_native)
        {
            // Only a failure is left to tell, in the envelope (or stream error event) the OpenAI surface uses.
            await OpenAiErrors.RenderAsync(context, outcome);
            return;
        }
        var output = context.Response.BodyWriter;
        if (_live)
        {
            _reader.ReadEvents(this);
            if (_reader.SawError)
            {
                // Already ended with response.failed.
            }
            else if (outcome.Failure == DispatchFailure.None && _reader.SawDone)
            {
                await SaveAsync(outcome);
                _output.End(output, IncompleteReason(), outcome.Usage, time.GetUtcNow().ToUnixTimeSeconds());
            }
            else
            {
                _output.Fail(output, outcome.Error.Status == 0 ? "The stream ended before it was complete." : outcome.Error.Message);
            }
            return;
        }
        if (outcome.ServedBy is null || outcome.Failure is not (DispatchFailure.None or DispatchFailure.MidStream))
        {
            await OpenAiErrors.RenderAsync(context, outcome);
            return;
        }
        if (outcome.Failure == DispatchFailure.MidStream)
        {
            // Nothing reached the client yet, so the broken answer becomes a whole error.
            await OpenAiErrors.WriteAsync(context, outcome.Error);
            return;
        }
        if (request.Stream)
        {
            // A whole answer to a stream request: its events, all at once.
            StartStream();
            _output.Live = output;
        }
        if (!ReadWhole())
        {
            if (request.Stream)
            {
                if (!_reader.SawError)
                {
                    _output.Fail(output, "The model's answer could not be read.");
                }
                    return;
            }
            await OpenAiErrors.WriteAsync(context, GatewayError.UpstreamFailed("The model's answer could not be read."));
            return;
        }
        await SaveAsync(outcome);
        if (request.Stream)
        {
            _output.End(output, IncompleteReason(), outcome.Usage, time.GetUtcNow().ToUnixTimeSeconds());
            return;
        }
        var body = _output.Render(IncompleteReason(), outcome.Usage, time.GetUtcNow().ToUnixTimeSeconds());
        var response = context.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "application/json";
        response.ContentLength = body.Length;
        await response.Body.WriteAsync(body, context.RequestAborted);
    }

    void IChatAnswerHandler.Text(ReadOnlySpan<byte> text) => _output.Text(System.Text.Encoding.UTF8.GetString(text));

    void IChatAnswerHandler.Refusal(ReadOnlySpan<byte> text) => _output.Refusal(System.Text.Encoding.UTF8.GetString(text));

    void IChatAnswerHandler.ToolCallStarted(int index, string id, string name) => _output.ToolCallStarted(index, id, name);

    void IChatAnswerHandler.ToolCallArguments(int index, ReadOnlySpan<byte> fragment) => _output.ToolCallArguments(index, System.Text.Encoding.UTF8.GetString(fragment));

    void IChatAnswerHandler.Finished(string reason, string? stopReason) => _finishReason = reason;

    void IChatAnswerHandler.Failed(JsonElement error)
    {
        if (_output.Live is { } output)
        {
            var message = error.ValueKind == JsonValueKind.Object && error.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String
                ? m.GetString()! : "The model's provider failed in the middle of the answer.";
            _output.Fail(output, message);
        }
    }

    private async Task SaveAsync(DispatchOutcome outcome)
    {
        if (save is null)
        {
            return;
        }
        var body = _output.Render(IncompleteReason(), outcome.Usage, time.GetUtcNow().ToUnixTimeSeconds());
        await save(_output, body, context.RequestAborted);
    }

    private void StartStream()
    {
        var response = context.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        _output.Start(response.BodyWriter);
        _output.Live = response.BodyWriter;
    }


    /// <summary>A whole answer kept until the end: a chat completion, or a stream that the client did not ask for.</summary>
    private bool ReadWhole()
    {
        if (_receivedSse)
        {
            _reader.ReadEvents(this);
            return _reader.SawDone && !_reader.SawError;
        }
        return _reader.ReadCompletion(this);
    }

    /// <summary>Why the answer stopped short, as the Response's <c>incomplete_details.reason</c>; null when it did not.</summary>
    private string? IncompleteReason() => _finishReason switch
    {
        "length" => "max_output_tokens",
        "content_filter" => "content_filter",
        _ => null,
    };

    /// <summary>The Response id: <c>resp_</c> and the request id's own part, so one finds the other.</summary>
    public static string ResponseId(string requestId) =>
        "resp_" + (requestId.StartsWith("req_", StringComparison.Ordinal) ? requestId[4..] : requestId);
}
