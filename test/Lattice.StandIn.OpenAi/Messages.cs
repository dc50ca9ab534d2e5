using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using System.Text.Json;

namespace Lattice.StandIn.OpenAi;

/// <summary>
/// POST /v1/messages: Anthropic's Messages API, in its wire format — the Message object, its SSE event grammar and its
/// error envelope. Echoes like the chat route: "You said: " + the last user text.
/// </summary>
internal static class Messages
{
    public const string ToolUseId = "toolu_standin_1";
    public const string ApiVersionHeader = "anthropic-version";
    public const string ApiKeyHeader = "x-api-key";

    private static long s_nextId;

    private sealed class MessagesRequest
    {
        public required string Model { get; init; }
        public bool Stream { get; init; }
        public int MaxTokens { get; init; }
        public required List<string> StopSequences { get; init; }
        /// <summary>Set when a tool call is forced (tool_choice "any" or a named tool).</summary>
        public string? ToolName { get; init; }
        public required string UserText { get; init; }
        public int PromptWords { get; init; }
    }

    private sealed class Reply
    {
        public required string Id { get; init; }
        public required string Text { get; init; }
        public required int[] WordEnds { get; init; }
        public required string StopReason { get; init; }
        public string? StopSequence { get; init; }
        public string? ToolInput { get; init; }
        public int InputTokens { get; init; }
        public int OutputTokens { get; init; }
    }

    /// <summary>
    /// Anthropic authenticates with <c>x-api-key</c> (never <c>Authorization</c>) and requires <c>anthropic-version</c>;
    /// returns the error it answers, or null when the request may go on.
    /// </summary>
    public static Task? CheckHeaders(HttpContext ctx, string? expectedKey)
    {
        var key = ctx.Request.Headers[ApiKeyHeader];
        if (key.Count == 0)
        {
            return Error(ctx, StatusCodes.Status401Unauthorized, "authentication_error", "x-api-key header is required");
        }
        if (expectedKey is not null && (key.Count != 1 || !string.Equals(key[0], expectedKey, StringComparison.Ordinal)))
        {
            return Error(ctx, StatusCodes.Status401Unauthorized, "authentication_error", "invalid x-api-key");
        }
        if (ctx.Request.Headers[ApiVersionHeader].Count == 0)
        {
            return Error(ctx, StatusCodes.Status400BadRequest, "invalid_request_error", "anthropic-version: header is required");
        }
        return null;
    }

    /// <summary>Anthropic's error envelope: <c>{"type":"error","error":{"type","message"},"request_id"}</c>.</summary>
    public static Task Error(HttpContext ctx, int status, string type, string message)
    {
        var requestId = "req_standin_" + Interlocked.Increment(ref s_nextId).ToString(System.Globalization.CultureInfo.InvariantCulture);
        ctx.Response.Headers["request-id"] = requestId;
        var w = JsonOut.Begin();
        w.WriteStartObject();
        w.WriteString("type", "error");
        w.WriteStartObject("error");
        w.WriteString("type", type);
        w.WriteString("message", message);
        w.WriteEndObject();
        w.WriteString("request_id", requestId);
        w.WriteEndObject();
        return JsonOut.Send(ctx, status, w);
    }

    public static async Task Handle(HttpContext ctx)
    {
        var buffered = RequestBody.Get(ctx);
        Task? error = TryParse(ctx, buffered.Body, out MessagesRequest? request);
        if (error is not null)
        {
            await error;
            return;
        }

        var fault = Fault.From(request!.Model);
        if (fault.Kind != FaultKind.None && await fault.ApplyBeforeResponseAsync(ctx, request.Stream, anthropic: true))
        {
            return;
        }

        var reply = CreateReply(request);
        if (!request.Stream)
        {
            await WriteMessage(ctx, request, reply);
            return;
        }
        try
        {
            await StreamMessage(ctx, request, reply, fault);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException && ctx.RequestAborted.IsCancellationRequested)
        {
            StandInStats.CountClientAbort();
        }
    }

    private static Task? TryParse(HttpContext ctx, byte[] body, out MessagesRequest? request)
    {
        request = null;
        using JsonDocument? doc = JsonOut.TryParseObject(body);
        if (doc is null)
        {
            return Error(ctx, StatusCodes.Status400BadRequest, "invalid_request_error", "There was an error parsing the body of your request.");
        }
        var root = doc.RootElement;
        if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.String)
        {
            return Error(ctx, StatusCodes.Status400BadRequest, "invalid_request_error", "model: Field required");
        }
        if (!root.TryGetProperty("max_tokens", out var maxTokens) || maxTokens.ValueKind != JsonValueKind.Number
            || !maxTokens.TryGetInt32(out var max) || max < 1)
        {
            return Error(ctx, StatusCodes.Status400BadRequest, "invalid_request_error", "max_tokens: Field required");
        }
        if (!root.TryGetProperty("messages", out var messages) || messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
        {
            return Error(ctx, StatusCodes.Status400BadRequest, "invalid_request_error", "messages: Field required");
        }

        var promptWords = 0;
        if (root.TryGetProperty("system", out var system))
        {
            promptWords += Words.Count(Text(system, toolResults: false));
        }
        string? userText = null;
        var i = 0;
        foreach (var message in messages.EnumerateArray())
        {
            if (message.ValueKind != JsonValueKind.Object || !message.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String
                || !message.TryGetProperty("content", out var content))
            {
                return Error(ctx, StatusCodes.Status400BadRequest, "invalid_request_error", $"messages.{i}: Input should be a valid message");
            }
            promptWords += Words.Count(Text(content, toolResults: true));
            var text = Text(content, toolResults: false);
            if (role.ValueEquals("user"u8) && text.Length > 0)
            {
                userText = text;
            }
            i++;
        }

        var stops = new List<string>();
        if (root.TryGetProperty("stop_sequences", out var stopSequences) && stopSequences.ValueKind == JsonValueKind.Array)
        {
            foreach (var s in stopSequences.EnumerateArray())
            {
                if (s.ValueKind == JsonValueKind.String && s.GetString() is { Length: > 0 } stop)
                {
                    stops.Add(stop);
                }
            }
        }

        string? toolName = null;
        if (root.TryGetProperty("tool_choice", out var toolChoice) && toolChoice.ValueKind == JsonValueKind.Object
            && toolChoice.TryGetProperty("type", out var choiceType) && (choiceType.ValueEquals("any"u8) || choiceType.ValueEquals("tool"u8)))
        {
            if (!root.TryGetProperty("tools", out var tools) || tools.ValueKind != JsonValueKind.Array || tools.GetArrayLength() == 0)
            {
                return Error(ctx, StatusCodes.Status400BadRequest, "invalid_request_error", "tool_choice: tool_choice may only be specified while providing tools.");
            }
            toolName = choiceType.ValueEquals("tool"u8) && toolChoice.TryGetProperty("name", out var named) && named.ValueKind == JsonValueKind.String
                ? named.GetString()
                : tools[0].TryGetProperty("name", out var first) && first.ValueKind == JsonValueKind.String ? first.GetString() : null;
            if (toolName is null)
            {
                return Error(ctx, StatusCodes.Status400BadRequest, "invalid_request_error", "tools.0.name: Field required");
            }
        }

        request = new MessagesRequest
        {
            Model = model.GetString()!,
            Stream = root.TryGetProperty("stream", out var stream) && stream.ValueKind == JsonValueKind.True,
            MaxTokens = max,
            StopSequences = stops,
            ToolName = toolName,
            UserText = userText ?? string.Empty,
            PromptWords = promptWords,
        };
        return null;
    }

    /// <summary>A content (or system) value's text: the string, or its text blocks (and, if asked, tool results' text) concatenated.</summary>
    private static string Text(JsonElement content, bool toolResults)
    {
        if (content.ValueKind == JsonValueKind.String)
        {
            return content.GetString()!;
        }
        if (content.ValueKind != JsonValueKind.Array)
        {
            return string.Empty;
        }
        var sb = new StringBuilder();
        foreach (var block in content.EnumerateArray())
        {
            if (block.ValueKind != JsonValueKind.Object || !block.TryGetProperty("type", out var type))
            {
                continue;
            }
            if (type.ValueEquals("text"u8) && block.TryGetProperty("text", out var text) && text.ValueKind == JsonValueKind.String)
            {
                sb.Append(text.GetString());
            }
            else if (toolResults && type.ValueEquals("tool_result"u8) && block.TryGetProperty("content", out var result))
            {
                sb.Append(' ').Append(Text(result, toolResults: false));
            }
        }
        return sb.ToString();
    }

    private static Reply CreateReply(MessagesRequest request)
    {
        var text = ChatCompletions.ReplyPrefix + request.UserText;
        var id = "msg_standin_" + Interlocked.Increment(ref s_nextId).ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (request.ToolName is not null)
        {
            return new Reply
            {
                Id = id,
                Text = string.Empty,
                WordEnds = [],
                StopReason = "tool_use",
                ToolInput = ChatCompletions.ToolArguments(request.UserText),
                InputTokens = request.PromptWords,
                OutputTokens = Words.Count(text),
            };
        }

        string stopReason = "end_turn";
        string? stopSequence = null;
        var cut = -1;
        foreach (var stop in request.StopSequences)
        {
            var at = text.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut))
            {
                cut = at;
                stopSequence = stop;
            }
        }
        if (stopSequence is not null)
        {
            text = text[..cut];
            stopReason = "stop_sequence";
        }
        var ends = Words.WordEnds(text);
        if (request.MaxTokens < ends.Length)
        {
            text = text[..ends[request.MaxTokens - 1]];
            ends = ends[..request.MaxTokens];
            stopReason = "max_tokens";
            stopSequence = null;
        }
        return new Reply
        {
            Id = id,
            Text = text,
            WordEnds = ends,
            StopReason = stopReason,
            StopSequence = stopSequence,
            InputTokens = request.PromptWords,
            OutputTokens = ends.Length,
        };
    }

    private static void WriteUsage(Utf8JsonWriter w, int inputTokens, int outputTokens)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("input_tokens", inputTokens);
        w.WriteNumber("cache_creation_input_tokens", 0);
        w.WriteNumber("cache_read_input_tokens", 0);
        w.WriteNumber("output_tokens", outputTokens);
        w.WriteEndObject();
    }

    private static void WriteStop(Utf8JsonWriter w, Reply reply)
    {
        w.WriteString("stop_reason", reply.StopReason);
        w.WriteString("stop_sequence", reply.StopSequence);
    }

    private static Task WriteMessage(HttpContext ctx, MessagesRequest request, Reply reply)
    {
        var w = JsonOut.Begin();
        w.WriteStartObject();
        w.WriteString("id", reply.Id);
        w.WriteString("type", "message");
        w.WriteString("role", "assistant");
        w.WriteString("model", request.Model);
        w.WriteStartArray("content");
        if (reply.ToolInput is { } input)
        {
            w.WriteStartObject();
            w.WriteString("type", "tool_use");
            w.WriteString("id", ToolUseId);
            w.WriteString("name", request.ToolName);
            w.WritePropertyName("input");
            w.WriteRawValue(input);
            w.WriteEndObject();
        }
        else
        {
            w.WriteStartObject();
            w.WriteString("type", "text");
            w.WriteString("text", reply.Text);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        WriteStop(w, reply);
        WriteUsage(w, reply.InputTokens, reply.OutputTokens);
        w.WriteEndObject();
        return JsonOut.Send(ctx, StatusCodes.Status200OK, w);
    }

    /// <summary><c>event: NAME\ndata: JSON\n\n</c>.</summary>
    private static void WriteEvent(PipeWriter pipe, string name, Utf8JsonWriter w)
    {
        var json = JsonOut.End(w);
        var head = Encoding.UTF8.GetBytes("event: " + name + "\n");
        pipe.Write(head);
        pipe.Write("data: "u8);
        pipe.Write(json);
        pipe.Write("\n\n"u8);
    }

    private static Utf8JsonWriter Begin(string type)
    {
        var w = JsonOut.Begin();
        w.WriteStartObject();
        w.WriteString("type", type);
        return w;
    }

    private static async Task StreamMessage(HttpContext ctx, MessagesRequest request, Reply reply, Fault fault)
    {
        var ct = ctx.RequestAborted;
        var response = ctx.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        var pipe = response.BodyWriter;
        var tool = reply.ToolInput is not null;

        var w = Begin("message_start");
        w.WriteStartObject("message");
        w.WriteString("id", reply.Id);
        w.WriteString("type", "message");
        w.WriteString("role", "assistant");
        w.WriteString("model", request.Model);
        w.WriteStartArray("content");
        w.WriteEndArray();
        w.WriteNull("stop_reason");
        w.WriteNull("stop_sequence");
        // Anthropic reports the input up front and a first output token; message_delta has the final output count.
        WriteUsage(w, reply.InputTokens, 1);
        w.WriteEndObject();
        w.WriteEndObject();
        WriteEvent(pipe, "message_start", w);

        w = Begin("content_block_start");
        w.WriteNumber("index", 0);
        w.WriteStartObject("content_block");
        if (tool)
        {
            w.WriteString("type", "tool_use");
            w.WriteString("id", ToolUseId);
            w.WriteString("name", request.ToolName);
            w.WriteStartObject("input");
            w.WriteEndObject();
        }
        else
        {
            w.WriteString("type", "text");
            w.WriteString("text", "");
        }
        w.WriteEndObject();
        w.WriteEndObject();
        WriteEvent(pipe, "content_block_start", w);

        w = Begin("ping");
        w.WriteEndObject();
        WriteEvent(pipe, "ping", w);
        await pipe.FlushAsync(ct);

        var pieces = tool ? ToolPieces(reply.ToolInput!) : TextPieces(reply);
        foreach (var piece in pieces)
        {
            if (fault.Kind == FaultKind.Drip)
            {
                await Task.Delay(Fault.DripDelayMs, ct);
            }
            w = Begin("content_block_delta");
            w.WriteNumber("index", 0);
            w.WriteStartObject("delta");
            if (tool)
            {
                w.WriteString("type", "input_json_delta");
                w.WriteString("partial_json", piece);
            }
            else
            {
                w.WriteString("type", "text_delta");
                w.WriteString("text", piece);
            }
            w.WriteEndObject();
            w.WriteEndObject();
            WriteEvent(pipe, "content_block_delta", w);
            await pipe.FlushAsync(ct);
            if (fault.Breaks)
            {
                await (fault.GateName is { } gate ? StandInGates.Get(gate).PassAsync(ct) : Task.Delay(Fault.DropDelayMs, ct));
                fault.Break(ctx);
                return;
            }
        }

        w = Begin("content_block_stop");
        w.WriteNumber("index", 0);
        w.WriteEndObject();
        WriteEvent(pipe, "content_block_stop", w);

        w = Begin("message_delta");
        w.WriteStartObject("delta");
        WriteStop(w, reply);
        w.WriteEndObject();
        w.WriteStartObject("usage");
        w.WriteNumber("output_tokens", reply.OutputTokens);
        w.WriteEndObject();
        w.WriteEndObject();
        WriteEvent(pipe, "message_delta", w);

        w = Begin("message_stop");
        w.WriteEndObject();
        WriteEvent(pipe, "message_stop", w);
        await pipe.FlushAsync(ct);
    }

    /// <summary>The reply's words: the first alone, every later one with its leading space (as the chat route streams them).</summary>
    private static List<string> TextPieces(Reply reply)
    {
        var pieces = new List<string>(reply.WordEnds.Length);
        var start = 0;
        for (var k = 0; k < reply.WordEnds.Length; k++)
        {
            var end = k == reply.WordEnds.Length - 1 ? reply.Text.Length : reply.WordEnds[k];
            pieces.Add(reply.Text[start..end]);
            start = end;
        }
        return pieces;
    }

    /// <summary>The tool input in three fragments: <c>{"echo":</c>, <c>"T"</c>, <c>}</c>.</summary>
    private static List<string> ToolPieces(string input)
    {
        const string head = "{\"echo\":";
        return input.Length > head.Length + 1 && input.StartsWith(head, StringComparison.Ordinal)
            ? [head, input[head.Length..^1], "}"]
            : [input];
    }
}
