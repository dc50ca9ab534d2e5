using System.Buffers;
using System.Text;
using System.Text.Json;
using Lattice.Gateway.Billing;
using Lattice.Gateway.Dispatch;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Anthropic;

/// <summary>
/// The Anthropic surface's sink: it receives the chat target's OpenAI answer and gives the client a Message. A stream
/// is translated event by event as it arrives (and leaves when the relay flushes); anything else is kept until the
/// dispatch is over and then rendered whole — a Message, a stream of one delta, or Anthropic's error envelope.
/// The usage the client is told is the one the dispatch metered.
/// </summary>
public sealed class MessagesSink(HttpContext context, MessagesRequest.Translated request, TimeProvider time) : IResponseSink, OpenAi.IChatAnswerHandler
{
    private readonly OpenAi.ChatAnswerReader _reader = new();
    private readonly MessageEvents _events = new(MessageId(context.TraceIdentifier), request.Model);
    /// <summary>Set when the answer is already a Message (an Anthropic upstream's): the relay writes straight to the client.</summary>
    private HttpResponseSink? _passThrough;
    private int _status;
    private bool _receivedSse;
    /// <summary>Translating a stream to the client as it arrives.</summary>
    private bool _live;
    /// <summary>Where the answer's parts are written as they are read; null while a whole answer is kept.</summary>
    private IBufferWriter<byte>? _output;
    private readonly StringBuilder _text = new();
    /// <summary>The answer's tool calls, by the chat's tool call index.</summary>
    private readonly SortedList<int, ToolCall> _tools = [];
    private string? _finishReason;
    private string? _matchedStop;
    /// <summary>The model refused (the chat message's <c>refusal</c>): told as the text, with stop_reason <c>refusal</c>.</summary>
    private bool _refused;

    public void Admission(RateLimitReport? limits, bool admitted)
    {
        if (limits is { } report)
        {
            AnthropicRateLimitHeaders.Write(context.Response.Headers, report, time.GetUtcNow());
        }
        if (admitted)
        {
            context.Features.Get<Billing.Idempotency.IdempotencyFeature>()?.MarkExecuting();
        }
    }

    public void Start(int status, string contentType, long? contentLength, bool sse, bool native)
    {
        if (native)
        {
            // An Anthropic upstream answered in this surface's own format: its bytes go to the client as they are.
            _passThrough = new HttpResponseSink(context.Response);
            _passThrough.Start(status, contentType, contentLength, sse, native);
            _receivedSse = sse;
            return;
        }
        _status = status;
        _receivedSse = sse;
        _live = sse && request.Stream && status is >= 200 and < 300;
        if (_live)
        {
            StartStream();
        }
    }

    public IBufferWriter<byte> Writer => _passThrough?.Writer ?? _reader.Writer;

    public async ValueTask<bool> FlushAsync(CancellationToken cancellationToken)
    {
        if (_passThrough is not null)
        {
            return await _passThrough.FlushAsync(cancellationToken);
        }
        if (!_live)
        {
            return !cancellationToken.IsCancellationRequested;
        }
        ReadEvents(context.Response.BodyWriter);
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
        if (_passThrough is not null)
        {
            await CompletePassThroughAsync(outcome);
            return;
        }
        if (_live)
        {
            var output = context.Response.BodyWriter;
            ReadEvents(output);
            if (_reader.SawError)
            {
                // Already ended with the upstream's error event.
            }
            else if (outcome.Failure == DispatchFailure.None && _reader.SawDone)
            {
                _events.End(output, StopReason(), _matchedStop, outcome.Usage);
            }
            else
            {
                var error = outcome.Error.Status == 0 ? OpenAi.GatewayError.UpstreamFailed("The stream ended before it was complete.") : outcome.Error;
                AnthropicErrors.WriteEvent(output, error.Status, error.Message, context.TraceIdentifier);
            }
            return;
        }
        if (outcome.ServedBy is null || outcome.Failure is not (DispatchFailure.None or DispatchFailure.MidStream))
        {
            await AnthropicErrors.RenderAsync(context, outcome);
            return;
        }
        if (outcome.Failure == DispatchFailure.MidStream)
        {
            // Nothing reached the client yet, so the broken answer becomes a whole error.
            await AnthropicErrors.WriteAsync(context, outcome.Error);
            return;
        }
        if (_status is < 200 or >= 300)
        {
            await AnthropicErrors.WriteAsync(context, _status,
                AnthropicErrors.MessageOf(_reader.Received) ?? $"The model's provider answered with status {_status}.");
            return;
        }
        if (!ReadWhole())
        {
            await AnthropicErrors.WriteAsync(context, OpenAi.GatewayError.UpstreamFailed("The model's answer could not be read."));
            return;
        }
        var response = context.Response;
        if (request.Stream)
        {
            StartStream();
            _events.Text(response.BodyWriter, _text.ToString());
            foreach (var tool in _tools.Values)
            {
                _events.ToolStart(response.BodyWriter, tool.Id, tool.Name);
                _events.ToolInput(response.BodyWriter, tool.Input.ToString());
            }
            _events.End(response.BodyWriter, StopReason(), _matchedStop, outcome.Usage);
            return;
        }
        var body = new ArrayBufferWriter<byte>(512 + _text.Length * 2);
        _events.WriteMessage(body, _text.ToString(), _tools.Values, StopReason(), _matchedStop, outcome.Usage);
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "application/json";
        response.ContentLength = body.WrittenCount;
        await response.Body.WriteAsync(body.WrittenMemory, context.RequestAborted);
    }

    /// <summary>
    /// A passed-through answer is complete as relayed, unless it broke: a stream then ends with Anthropic's error event,
    /// a JSON body that was cut is cut for the client too.
    /// </summary>
    private async Task CompletePassThroughAsync(DispatchOutcome outcome)
    {
        if (outcome.Failure == DispatchFailure.None)
        {
            return;
        }
        if (!_receivedSse)
        {
            context.Abort();
            return;
        }
        var error = outcome.Error.Status == 0 ? OpenAi.GatewayError.UpstreamFailed("The stream ended before it was complete.") : outcome.Error;
        AnthropicErrors.WriteEvent(context.Response.BodyWriter, error.Status, error.Message, context.TraceIdentifier);
    }

    private void StartStream()
    {
        var response = context.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        _events.Start(response.BodyWriter);
    }


    /// <summary>Translates the complete lines received so far; a partial line waits for the rest.</summary>
    /// <remarks>With no <paramref name="output"/> the text is kept for a whole answer.</remarks>
    private void ReadEvents(IBufferWriter<byte>? output)
    {
        _output = output;
        _reader.ReadEvents(this);
    }

    void OpenAi.IChatAnswerHandler.Text(ReadOnlySpan<byte> text) => WriteText(text);

    private void WriteText(ReadOnlySpan<byte> text)
    {
        if (_output is not null)
        {
            _events.Text(_output, text);
        }
        else
        {
            _text.Append(Encoding.UTF8.GetString(text));
        }
    }

    // The Messages API has no refusal block: what the model said instead of an answer is told as the text, and the
    // Message stops with stop_reason "refusal".
    void OpenAi.IChatAnswerHandler.Refusal(ReadOnlySpan<byte> text)
    {
        _refused = true;
        WriteText(text);
    }

    /// <summary>A tool call starts a <c>tool_use</c> block; its arguments are the input (streamed as <c>input_json_delta</c>s).</summary>
    void OpenAi.IChatAnswerHandler.ToolCallStarted(int index, string id, string name)
    {
        var tool = new ToolCall(ToolCall.IdFor(id), name);
        _tools.Add(index, tool);
        if (_output is not null)
        {
            _events.ToolStart(_output, tool.Id, tool.Name);
        }
    }

    void OpenAi.IChatAnswerHandler.ToolCallArguments(int index, ReadOnlySpan<byte> fragment)
    {
        if (_output is not null)
        {
            _events.ToolInput(_output, fragment);
        }
        else
        {
            _tools[index].Input.Append(Encoding.UTF8.GetString(fragment));
        }
    }

    void OpenAi.IChatAnswerHandler.Finished(string reason, string? stopReason)
    {
        _finishReason = reason;
        // Engines that say which stop sequence ended the answer (vLLM's choice-level stop_reason) let us say so too.
        if (stopReason is not null && request.StopSequences.Contains(stopReason))
        {
            _matchedStop = stopReason;
        }
    }

    void OpenAi.IChatAnswerHandler.Failed(JsonElement error)
    {
        if (_output is not null)
        {
            AnthropicErrors.WriteEvent(_output, StatusCodes.Status502BadGateway,
                AnthropicErrors.MessageOf(error) ?? "The model's provider failed in the middle of the answer.", context.TraceIdentifier);
        }
    }

    /// <summary>Every tool call's input is a JSON object (or nothing, an empty input).</summary>
    private bool ToolInputsAreJson()
    {
        foreach (var tool in _tools.Values)
        {
            if (tool.Input.Length == 0)
            {
                continue;
            }
            try
            {
                using var input = JsonDocument.Parse(tool.Input.ToString());
                if (input.RootElement.ValueKind != JsonValueKind.Object)
                {
                    return false;
                }
            }
            catch (JsonException)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>A whole answer kept until the end: a chat completion, or a stream that the client did not ask for.</summary>
    private bool ReadWhole()
    {
        _output = null;
        if (_receivedSse)
        {
            _reader.ReadEvents(this);
            return _reader.SawDone && !_reader.SawError && ToolInputsAreJson();
        }
        return _reader.ReadCompletion(this) && ToolInputsAreJson();
    }

    /// <summary>Anthropic's <c>stop_reason</c> for the chat finish reason.</summary>
    private string StopReason() =>
        _matchedStop is not null ? "stop_sequence" : _refused ? "refusal" : MessagesMapping.StopReasonFor(_finishReason);

    /// <summary>The Message id: <c>msg_</c> and the request id's own part, so one finds the other.</summary>
    private static string MessageId(string requestId) =>
        "msg_" + (requestId.StartsWith("req_", StringComparison.Ordinal) ? requestId[4..] : requestId);
}
