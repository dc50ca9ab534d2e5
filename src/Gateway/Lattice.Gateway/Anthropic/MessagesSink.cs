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
public sealed class MessagesSink(HttpContext context, MessagesRequest.Translated request, TimeProvider time) : IResponseSink
{
    private readonly ArrayBufferWriter<byte> _received = new(4096);
    private readonly MessageEvents _events = new(MessageId(context.TraceIdentifier), request.Model);
    /// <summary>Set when the answer is already a Message (an Anthropic upstream's): the relay writes straight to the client.</summary>
    private HttpResponseSink? _passThrough;
    private int _status;
    private bool _receivedSse;
    /// <summary>Translating a stream to the client as it arrives.</summary>
    private bool _live;
    private int _consumed;
    private bool _sawDone;
    /// <summary>The upstream's stream carried an error; it was told to the client and the rest is ignored.</summary>
    private bool _failed;
    private readonly StringBuilder _text = new();
    /// <summary>The answer's tool calls, by the chat's tool call index.</summary>
    private readonly SortedList<int, ToolCall> _tools = [];
    private string? _finishReason;
    private string? _matchedStop;
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

    public IBufferWriter<byte> Writer => _passThrough?.Writer ?? _received;

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
    public async Task CompleteAsync(DispatchOutcome outcome)
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
            if (_failed)
            {
                // Already ended with the upstream's error event.
            }
            else if (outcome.Failure == DispatchFailure.None && _sawDone)
            {
                _events.End(output, StopReason(), _matchedStop, outcome.Usage);
            }
            else
            {
                var error = outcome.Error.Status == 0 ? OpenAi.GatewayError.UpstreamFailed("The stream ended before it was complete.") : outcome.Error;
                AnthropicErrors.WriteEvent(output, error.Status, error.Message, context.TraceIdentifier);
            }
            await FlushQuietlyAsync();
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
                AnthropicErrors.MessageOf(_received.WrittenSpan) ?? $"The model's provider answered with status {_status}.");
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
            await FlushQuietlyAsync();
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
        await FlushQuietlyAsync();
    }

    private void StartStream()
    {
        var response = context.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        _events.Start(response.BodyWriter);
    }

    private async Task FlushQuietlyAsync()
    {
        try
        {
            await context.Response.BodyWriter.FlushAsync(context.RequestAborted);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            // The client left.
        }
    }

    /// <summary>Translates the complete lines received so far; a partial line waits for the rest.</summary>
    /// <remarks>With no <paramref name="output"/> the text is kept for a whole answer.</remarks>
    private void ReadEvents(IBufferWriter<byte>? output)
    {
        while (true)
        {
            var rest = _received.WrittenSpan[_consumed..];
            var newline = rest.IndexOf((byte)'\n');
            if (newline < 0)
            {
                break;
            }
            _consumed += newline + 1;
            if (!_failed)
            {
                ReadLine(rest[..newline].TrimEnd((byte)'\r'), output);
            }
        }
        if (_consumed > 0 && _consumed == _received.WrittenCount)
        {
            _received.ResetWrittenCount();
            _consumed = 0;
        }
    }

    /// <summary>One line of the chat stream: a <c>data:</c> chunk becomes text deltas; comments and blank lines pass.</summary>
    private void ReadLine(ReadOnlySpan<byte> line, IBufferWriter<byte>? output)
    {
        if (!line.StartsWith("data:"u8))
        {
            return;
        }
        var data = line[5..].TrimStart((byte)' ');
        if (data.SequenceEqual("[DONE]"u8))
        {
            _sawDone = true;
            return;
        }
        try
        {
            var reader = new Utf8JsonReader(data);
            using var chunk = JsonDocument.ParseValue(ref reader);
            var root = chunk.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return;
            }
            if (root.TryGetProperty("error", out var error) && error.ValueKind != JsonValueKind.Null)
            {
                _failed = true;
                if (output is not null)
                {
                    AnthropicErrors.WriteEvent(output, StatusCodes.Status502BadGateway,
                        AnthropicErrors.MessageOf(error) ?? "The model's provider failed in the middle of the answer.", context.TraceIdentifier);
                }
                return;
            }
            ReadChoice(root, "delta", output);
        }
        catch (JsonException)
        {
            // Not a chunk this surface understands; the dispatch's own checks decide whether the stream was whole.
        }
    }

    /// <summary>The first choice of a chunk (<c>delta</c>) or completion (<c>message</c>): its text, finish reason, stop.</summary>
    private void ReadChoice(JsonElement root, string contentProperty, IBufferWriter<byte>? output)
    {
        if (!root.TryGetProperty("choices", out var choices) || choices.ValueKind != JsonValueKind.Array || choices.GetArrayLength() == 0)
        {
            return;
        }
        var choice = choices[0];
        if (choice.TryGetProperty(contentProperty, out var delta) && delta.ValueKind == JsonValueKind.Object)
        {
            ReadText(delta, "content", output);
            // A chat refusal (OpenAI's message.refusal) is what the model said instead of an answer: Anthropic clients
            // get it as the text, with stop_reason "refusal".
            _refused |= ReadText(delta, "refusal", output);
        }
        if (choice.TryGetProperty(contentProperty, out var message) && message.ValueKind == JsonValueKind.Object
            && message.TryGetProperty("tool_calls", out var calls) && calls.ValueKind == JsonValueKind.Array)
        {
            ReadToolCalls(calls, output);
        }
        if (choice.TryGetProperty("finish_reason", out var finish) && finish.ValueKind == JsonValueKind.String)
        {
            _finishReason = finish.GetString();
        }
        // Engines that say which stop sequence ended the answer (vLLM's choice-level stop_reason) let us say so too.
        if (choice.TryGetProperty("stop_reason", out var stop) && stop.ValueKind == JsonValueKind.String
            && stop.GetString() is { } matched && request.StopSequences.Contains(matched))
        {
            _matchedStop = matched;
        }
    }

    /// <summary>The text in <paramref name="message"/>'s <paramref name="property"/>, if any: told, or kept for a whole answer.</summary>
    private bool ReadText(JsonElement message, string property, IBufferWriter<byte>? output)
    {
        if (!message.TryGetProperty(property, out var content) || content.ValueKind != JsonValueKind.String
            || content.GetString() is not { Length: > 0 } text)
        {
            return false;
        }
        if (output is not null)
        {
            _events.Text(output, text);
        }
        else
        {
            _text.Append(text);
        }
        return true;
    }

    /// <summary>
    /// Tool calls of a message, or fragments of them in a chunk: a call with an <c>id</c> starts a <c>tool_use</c> block,
    /// its <c>arguments</c> are the input (streamed as <c>input_json_delta</c>s).
    /// </summary>
    private void ReadToolCalls(JsonElement calls, IBufferWriter<byte>? output)
    {
        var position = 0;
        foreach (var call in calls.EnumerateArray())
        {
            var index = call.TryGetProperty("index", out var indexElement) && indexElement.TryGetInt32(out var i) ? i : position;
            position++;
            call.TryGetProperty("function", out var function);
            var hasFunction = function.ValueKind == JsonValueKind.Object;
            if (!_tools.TryGetValue(index, out var tool))
            {
                if (!call.TryGetProperty("id", out var id) || id.ValueKind != JsonValueKind.String
                    || !hasFunction || !function.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String)
                {
                    continue;
                }
                tool = new ToolCall(ToolCall.IdFor(id.GetString()!), name.GetString()!);
                _tools.Add(index, tool);
                if (output is not null)
                {
                    _events.ToolStart(output, tool.Id, tool.Name);
                }
            }
            if (hasFunction && function.TryGetProperty("arguments", out var arguments) && arguments.ValueKind == JsonValueKind.String
                && arguments.GetString() is { Length: > 0 } fragment)
            {
                if (output is not null)
                {
                    _events.ToolInput(output, fragment);
                }
                else
                {
                    tool.Input.Append(fragment);
                }
            }
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
        if (_receivedSse)
        {
            ReadEvents(null);
            return _sawDone && !_failed && ToolInputsAreJson();
        }
        try
        {
            var reader = new Utf8JsonReader(_received.WrittenSpan);
            using var completion = JsonDocument.ParseValue(ref reader);
            if (completion.RootElement.ValueKind != JsonValueKind.Object)
            {
                return false;
            }
            ReadChoice(completion.RootElement, "message", null);
            return ToolInputsAreJson();
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>Anthropic's <c>stop_reason</c> for the chat finish reason.</summary>
    private string StopReason() =>
        _matchedStop is not null ? "stop_sequence" : _refused ? "refusal" : MessagesMapping.StopReasonFor(_finishReason);

    /// <summary>The Message id: <c>msg_</c> and the request id's own part, so one finds the other.</summary>
    private static string MessageId(string requestId) =>
        "msg_" + (requestId.StartsWith("req_", StringComparison.Ordinal) ? requestId[4..] : requestId);
}
