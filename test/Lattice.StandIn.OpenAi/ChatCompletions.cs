using System.IO.Pipelines;
using System.Text;
using System.Text.Json;

namespace Lattice.StandIn.OpenAi;

/// <summary>POST /v1/chat/completions: echoes the last user message as "You said: …".</summary>
internal static class ChatCompletions
{
    public const string ReplyPrefix = "You said: ";
    public const string ToolCallId = "call_standin_1";
    public const string SystemFingerprint = "fp_standin";

    private static long s_nextId;

    private static readonly JsonEncodedText s_id = JsonEncodedText.Encode("id");
    private static readonly JsonEncodedText s_object = JsonEncodedText.Encode("object");
    private static readonly JsonEncodedText s_created = JsonEncodedText.Encode("created");
    private static readonly JsonEncodedText s_model = JsonEncodedText.Encode("model");
    private static readonly JsonEncodedText s_choices = JsonEncodedText.Encode("choices");
    private static readonly JsonEncodedText s_index = JsonEncodedText.Encode("index");
    private static readonly JsonEncodedText s_message = JsonEncodedText.Encode("message");
    private static readonly JsonEncodedText s_delta = JsonEncodedText.Encode("delta");
    private static readonly JsonEncodedText s_role = JsonEncodedText.Encode("role");
    private static readonly JsonEncodedText s_assistant = JsonEncodedText.Encode("assistant");
    private static readonly JsonEncodedText s_content = JsonEncodedText.Encode("content");
    private static readonly JsonEncodedText s_refusal = JsonEncodedText.Encode("refusal");
    private static readonly JsonEncodedText s_logprobs = JsonEncodedText.Encode("logprobs");
    private static readonly JsonEncodedText s_finishReason = JsonEncodedText.Encode("finish_reason");
    private static readonly JsonEncodedText s_usage = JsonEncodedText.Encode("usage");
    private static readonly JsonEncodedText s_promptTokens = JsonEncodedText.Encode("prompt_tokens");
    private static readonly JsonEncodedText s_completionTokens = JsonEncodedText.Encode("completion_tokens");
    private static readonly JsonEncodedText s_totalTokens = JsonEncodedText.Encode("total_tokens");
    private static readonly JsonEncodedText s_systemFingerprint = JsonEncodedText.Encode("system_fingerprint");
    private static readonly JsonEncodedText s_fingerprintValue = JsonEncodedText.Encode(SystemFingerprint);
    private static readonly JsonEncodedText s_completionObject = JsonEncodedText.Encode("chat.completion");
    private static readonly JsonEncodedText s_chunkObject = JsonEncodedText.Encode("chat.completion.chunk");
    private static readonly JsonEncodedText s_toolCalls = JsonEncodedText.Encode("tool_calls");
    private static readonly JsonEncodedText s_type = JsonEncodedText.Encode("type");
    private static readonly JsonEncodedText s_function = JsonEncodedText.Encode("function");
    private static readonly JsonEncodedText s_name = JsonEncodedText.Encode("name");
    private static readonly JsonEncodedText s_arguments = JsonEncodedText.Encode("arguments");
    private static readonly JsonEncodedText s_toolCallId = JsonEncodedText.Encode(ToolCallId);

    private sealed class ChatRequest
    {
        public required string Model { get; init; }

        public bool Stream { get; init; }

        public bool IncludeUsage { get; init; }

        public int N { get; init; } = 1;

        public int? MaxTokens { get; init; }

        /// <summary>Set when a tool call is forced (tool_choice "required" or a named function).</summary>
        public string? ToolName { get; init; }

        public required string UserText { get; init; }

        public int PromptWords { get; init; }
    }

    private sealed class Reply
    {
        public required string Id { get; init; }

        public long Created { get; init; }

        /// <summary>Reply text (already truncated for finish_reason "length").</summary>
        public required string Text { get; init; }

        /// <summary>Word end offsets of <see cref="Text"/> (see <see cref="Words.WordEnds"/>).</summary>
        public required int[] WordEnds { get; init; }

        public required string FinishReason { get; init; }

        /// <summary>JSON arguments of the forced tool call, or null.</summary>
        public string? ToolArguments { get; init; }

        public int PromptTokens { get; init; }

        public int CompletionTokens { get; init; }
    }

    public static async Task Handle(HttpContext ctx)
    {
        var buffered = RequestBody.Get(ctx);
        Task? error = TryParse(ctx, buffered.Body, out ChatRequest? request);
        if (error is not null)
        {
            await error;
            return;
        }

        var fault = Fault.From(request!.Model);
        if (fault.Kind != FaultKind.None && await fault.ApplyBeforeResponseAsync(ctx, request.Stream, pausesStream: true))
        {
            return;
        }

        Reply reply = CreateReply(request);
        if (!request.Stream)
        {
            await WriteCompletion(ctx, request, reply);
            return;
        }

        try
        {
            await StreamCompletion(ctx, request, reply, fault);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException && ctx.RequestAborted.IsCancellationRequested)
        {
            // Client went away.
            StandInStats.CountClientAbort();
        }
    }

    private static Task? TryParse(HttpContext ctx, byte[] body, out ChatRequest? request)
    {
        request = null;
        using JsonDocument? doc = JsonOut.TryParseObject(body);
        if (doc is null)
        {
            return JsonOut.InvalidJson(ctx);
        }

        JsonElement root = doc.RootElement;
        if (!root.TryGetProperty("model", out JsonElement modelEl) || modelEl.ValueKind != JsonValueKind.String)
        {
            return JsonOut.Error(ctx, StatusCodes.Status400BadRequest, "you must provide a model parameter",
                "invalid_request_error", null, null);
        }

        if (!root.TryGetProperty("messages", out JsonElement messages) || messages.ValueKind == JsonValueKind.Null)
        {
            return JsonOut.MissingParameter(ctx, "messages");
        }

        if (messages.ValueKind != JsonValueKind.Array)
        {
            return JsonOut.Error(ctx, StatusCodes.Status400BadRequest,
                $"Invalid type for 'messages': expected an array of objects, but got {Describe(messages)} instead.",
                "invalid_request_error", "messages", "invalid_type");
        }

        if (messages.GetArrayLength() == 0)
        {
            return JsonOut.Error(ctx, StatusCodes.Status400BadRequest,
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                "invalid_request_error", "messages", "empty_array");
        }

        string? userText = null;
        int promptWords = 0;
        int index = 0;
        foreach (JsonElement message in messages.EnumerateArray())
        {
            if (message.ValueKind != JsonValueKind.Object)
            {
                return JsonOut.Error(ctx, StatusCodes.Status400BadRequest,
                    $"Invalid type for 'messages[{index}]': expected an object, but got {Describe(message)} instead.",
                    "invalid_request_error", $"messages[{index}]", "invalid_type");
            }

            string text = MessageText(message);
            promptWords += Words.Count(text);
            if (message.TryGetProperty("role", out JsonElement role) && role.ValueKind == JsonValueKind.String
                && role.ValueEquals("user"u8))
            {
                userText = text;
            }

            index++;
        }

        bool stream = root.TryGetProperty("stream", out JsonElement streamEl) && streamEl.ValueKind == JsonValueKind.True;
        bool includeUsage = stream
            && root.TryGetProperty("stream_options", out JsonElement so) && so.ValueKind == JsonValueKind.Object
            && so.TryGetProperty("include_usage", out JsonElement iu) && iu.ValueKind == JsonValueKind.True;

        int n = 1;
        if (root.TryGetProperty("n", out JsonElement nEl) && nEl.ValueKind != JsonValueKind.Null)
        {
            if (nEl.ValueKind != JsonValueKind.Number || !nEl.TryGetInt32(out n) || n < 1 || n > 128)
            {
                return JsonOut.InvalidValue(ctx, "n",
                    $"Invalid 'n': expected an integer between 1 and 128, but got {nEl.GetRawText()} instead.");
            }
        }

        int? maxTokens = null;
        foreach (string name in (ReadOnlySpan<string>)["max_completion_tokens", "max_tokens"])
        {
            if (root.TryGetProperty(name, out JsonElement mt) && mt.ValueKind != JsonValueKind.Null)
            {
                if (mt.ValueKind != JsonValueKind.Number || !mt.TryGetInt32(out int value))
                {
                    return JsonOut.Error(ctx, StatusCodes.Status400BadRequest,
                        $"Invalid type for '{name}': expected an integer, but got {Describe(mt)} instead.",
                        "invalid_request_error", name, "invalid_type");
                }

                if (value < 1)
                {
                    return JsonOut.Error(ctx, StatusCodes.Status400BadRequest,
                        $"Invalid '{name}': integer below minimum value. Expected a value >= 1, but got {value} instead.",
                        "invalid_request_error", name, "integer_below_min_value");
                }

                maxTokens = maxTokens is null ? value : Math.Min(maxTokens.Value, value);
            }
        }

        string? toolName = null;
        if (root.TryGetProperty("tool_choice", out JsonElement toolChoice))
        {
            bool required = toolChoice.ValueKind == JsonValueKind.String && toolChoice.ValueEquals("required"u8);
            string? named = null;
            if (toolChoice.ValueKind == JsonValueKind.Object
                && toolChoice.TryGetProperty("type", out JsonElement tcType) && tcType.ValueKind == JsonValueKind.String
                && tcType.ValueEquals("function"u8)
                && toolChoice.TryGetProperty("function", out JsonElement tcFunction) && tcFunction.ValueKind == JsonValueKind.Object
                && tcFunction.TryGetProperty("name", out JsonElement tcName) && tcName.ValueKind == JsonValueKind.String)
            {
                named = tcName.GetString();
            }

            if (required || named is not null)
            {
                if (!root.TryGetProperty("tools", out JsonElement tools) || tools.ValueKind != JsonValueKind.Array
                    || tools.GetArrayLength() == 0)
                {
                    return JsonOut.Error(ctx, StatusCodes.Status400BadRequest,
                        "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
                        "invalid_request_error", "tool_choice", null);
                }

                if (named is not null)
                {
                    toolName = named;
                }
                else
                {
                    JsonElement first = tools[0];
                    if (first.ValueKind == JsonValueKind.Object
                        && first.TryGetProperty("function", out JsonElement fn) && fn.ValueKind == JsonValueKind.Object
                        && fn.TryGetProperty("name", out JsonElement fnName) && fnName.ValueKind == JsonValueKind.String)
                    {
                        toolName = fnName.GetString();
                    }
                    else
                    {
                        return JsonOut.MissingParameter(ctx, "tools[0].function.name");
                    }
                }
            }
        }

        request = new ChatRequest
        {
            Model = modelEl.GetString()!,
            Stream = stream,
            IncludeUsage = includeUsage,
            N = n,
            MaxTokens = maxTokens,
            ToolName = toolName,
            UserText = userText ?? string.Empty,
            PromptWords = promptWords,
        };
        return null;
    }

    /// <summary>Content string, or the concatenated "text" of the "text" parts of an array content.</summary>
    private static string MessageText(JsonElement message)
    {
        if (!message.TryGetProperty("content", out JsonElement content))
        {
            return string.Empty;
        }

        switch (content.ValueKind)
        {
            case JsonValueKind.String:
                return content.GetString()!;
            case JsonValueKind.Array:
                StringBuilder? sb = null;
                string? single = null;
                foreach (JsonElement part in content.EnumerateArray())
                {
                    if (part.ValueKind == JsonValueKind.Object
                        && part.TryGetProperty("type", out JsonElement type) && type.ValueKind == JsonValueKind.String
                        && type.ValueEquals("text"u8)
                        && part.TryGetProperty("text", out JsonElement text) && text.ValueKind == JsonValueKind.String)
                    {
                        string s = text.GetString()!;
                        if (single is null && sb is null)
                        {
                            single = s;
                        }
                        else
                        {
                            sb ??= new StringBuilder(single);
                            sb.Append(s);
                        }
                    }
                }

                return sb?.ToString() ?? single ?? string.Empty;
            default:
                return string.Empty;
        }
    }

    private static string Describe(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        _ => "null",
    };

    private static Reply CreateReply(ChatRequest request)
    {
        string text = ReplyPrefix + request.UserText;
        int[] ends = Words.WordEnds(text);
        int completionTokens = ends.Length;
        string finish = "stop";
        string? arguments = null;

        if (request.ToolName is not null)
        {
            finish = "tool_calls";
            arguments = ToolArguments(request.UserText);
        }
        else if (request.MaxTokens is int max && max < ends.Length)
        {
            finish = "length";
            text = max == 0 ? string.Empty : text[..ends[max - 1]];
            ends = ends[..max];
            completionTokens = max;
        }

        return new Reply
        {
            Id = "chatcmpl-standin-" + Interlocked.Increment(ref s_nextId).ToString(System.Globalization.CultureInfo.InvariantCulture),
            Created = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            Text = text,
            WordEnds = ends,
            FinishReason = finish,
            ToolArguments = arguments,
            PromptTokens = request.PromptWords,
            // OpenAI bills every choice it generates: with n choices the completion count is their sum, streamed or not.
            CompletionTokens = completionTokens * request.N,
        };
    }

    /// <summary>The tool call arguments: the JSON text of {"echo": T}.</summary>
    internal static string ToolArguments(string userText)
    {
        var w = JsonOut.Begin();
        w.WriteStartObject();
        w.WriteString("echo", userText);
        w.WriteEndObject();
        return Encoding.UTF8.GetString(JsonOut.End(w));
    }

    private static void WriteUsage(Utf8JsonWriter w, Reply reply)
    {
        w.WriteStartObject(s_usage);
        w.WriteNumber(s_promptTokens, reply.PromptTokens);
        w.WriteNumber(s_completionTokens, reply.CompletionTokens);
        w.WriteNumber(s_totalTokens, reply.PromptTokens + reply.CompletionTokens);
        w.WriteEndObject();
    }

    private static Task WriteCompletion(HttpContext ctx, ChatRequest request, Reply reply)
    {
        var w = JsonOut.Begin();
        w.WriteStartObject();
        w.WriteString(s_id, reply.Id);
        w.WriteString(s_object, s_completionObject);
        w.WriteNumber(s_created, reply.Created);
        w.WriteString(s_model, Models.Answered(request.Model));
        w.WriteStartArray(s_choices);
        for (int i = 0; i < request.N; i++)
        {
            w.WriteStartObject();
            w.WriteNumber(s_index, i);
            w.WriteStartObject(s_message);
            w.WriteString(s_role, s_assistant);
            if (reply.ToolArguments is null)
            {
                w.WriteString(s_content, reply.Text);
                w.WriteNull(s_refusal);
            }
            else
            {
                w.WriteNull(s_content);
                w.WriteNull(s_refusal);
                w.WriteStartArray(s_toolCalls);
                w.WriteStartObject();
                w.WriteString(s_id, s_toolCallId);
                w.WriteString(s_type, s_function);
                w.WriteStartObject(s_function);
                w.WriteString(s_name, request.ToolName);
                w.WriteString(s_arguments, reply.ToolArguments);
                w.WriteEndObject();
                w.WriteEndObject();
                w.WriteEndArray();
            }

            w.WriteEndObject();
            w.WriteNull(s_logprobs);
            w.WriteString(s_finishReason, reply.FinishReason);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        WriteUsage(w, reply);
        w.WriteString(s_systemFingerprint, s_fingerprintValue);
        w.WriteEndObject();
        return JsonOut.Send(ctx, StatusCodes.Status200OK, w);
    }

    private static Utf8JsonWriter BeginChunk(ChatRequest request, Reply reply)
    {
        var w = JsonOut.Begin();
        w.WriteStartObject();
        w.WriteString(s_id, reply.Id);
        w.WriteString(s_object, s_chunkObject);
        w.WriteNumber(s_created, reply.Created);
        w.WriteString(s_model, Models.Answered(request.Model));
        w.WriteString(s_systemFingerprint, s_fingerprintValue);
        w.WriteStartArray(s_choices);
        return w;
    }

    private static void BeginChoice(Utf8JsonWriter w, int index)
    {
        w.WriteStartObject();
        w.WriteNumber(s_index, index);
        w.WriteStartObject(s_delta);
    }

    private static void EndChoice(Utf8JsonWriter w, string? finishReason)
    {
        w.WriteEndObject(); // delta
        w.WriteNull(s_logprobs);
        w.WriteString(s_finishReason, finishReason);
        w.WriteEndObject();
    }

    private static void EndChunk(PipeWriter pipe, Utf8JsonWriter w, ChatRequest request)
    {
        w.WriteEndArray();
        if (request.IncludeUsage)
        {
            w.WriteNull(s_usage);
        }

        w.WriteEndObject();
        JsonOut.WriteSse(pipe, w);
    }

    /// <summary>Pieces of the streamed content: the reply's tokens, or the tool call arguments in three fragments.</summary>
    private static List<string> StreamPieces(Reply reply)
    {
        if (reply.ToolArguments is string args)
        {
            // {"echo":  +  "<T>"  +  }
            const string head = "{\"echo\":";
            return args.Length > head.Length + 1 && args.StartsWith(head, StringComparison.Ordinal)
                ? [head, args[head.Length..^1], "}"]
                : [args];
        }

        var pieces = new List<string>(reply.WordEnds.Length);
        int start = 0;
        for (int k = 0; k < reply.WordEnds.Length; k++)
        {
            int end = k == reply.WordEnds.Length - 1 ? reply.Text.Length : reply.WordEnds[k];
            pieces.Add(reply.Text[start..end]);
            start = end;
        }

        return pieces;
    }

    /// <summary>When a dropping stream breaks: once its gate lets it, else after <see cref="Fault.DropDelayMs"/>.</summary>
    private static Task DropPointAsync(Fault drop, CancellationToken ct) =>
        drop.GateName is { } gate ? StandInGates.Get(gate).PassAsync(ct) : Task.Delay(Fault.DropDelayMs, ct);

    private static async Task StreamCompletion(HttpContext ctx, ChatRequest request, Reply reply, Fault drop)
    {
        var fault = drop.Kind;
        CancellationToken ct = ctx.RequestAborted;
        var response = ctx.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        PipeWriter pipe = response.BodyWriter;
        bool tool = reply.ToolArguments is not null;

        // 1. Role chunk (for tool calls OpenAI puts the tool call header in the same delta).
        for (int i = 0; i < request.N; i++)
        {
            var w = BeginChunk(request, reply);
            BeginChoice(w, i);
            w.WriteString(s_role, s_assistant);
            if (tool)
            {
                w.WriteNull(s_content);
                w.WriteStartArray(s_toolCalls);
                w.WriteStartObject();
                w.WriteNumber(s_index, 0);
                w.WriteString(s_id, s_toolCallId);
                w.WriteString(s_type, s_function);
                w.WriteStartObject(s_function);
                w.WriteString(s_name, request.ToolName);
                w.WriteString(s_arguments, string.Empty);
                w.WriteEndObject();
                w.WriteEndObject();
                w.WriteEndArray();
            }
            else
            {
                w.WriteString(s_content, string.Empty);
            }

            w.WriteNull(s_refusal);
            EndChoice(w, null);
            EndChunk(pipe, w, request);
        }

        await pipe.FlushAsync(ct);

        // 2. Content (or tool call argument) chunks.
        List<string> pieces = StreamPieces(reply);
        for (int k = 0; k < pieces.Count; k++)
        {
            if (fault == FaultKind.Drip)
            {
                await Task.Delay(Fault.DripDelayMs, ct);
            }

            for (int i = 0; i < request.N; i++)
            {
                var w = BeginChunk(request, reply);
                BeginChoice(w, i);
                if (tool)
                {
                    w.WriteStartArray(s_toolCalls);
                    w.WriteStartObject();
                    w.WriteNumber(s_index, 0);
                    w.WriteStartObject(s_function);
                    w.WriteString(s_arguments, pieces[k]);
                    w.WriteEndObject();
                    w.WriteEndObject();
                    w.WriteEndArray();
                }
                else
                {
                    w.WriteString(s_content, pieces[k]);
                }

                EndChoice(w, null);
                EndChunk(pipe, w, request);
            }

            await pipe.FlushAsync(ct);

            if (drop.Breaks)
            {
                await DropPointAsync(drop, ct);
                drop.Break(ctx);
                return;
            }
        }

        if (fault == FaultKind.Pause)
        {
            await StandInGates.Get(drop.GateName!).PassAsync(ct);
        }

        if (drop.Breaks)
        {
            // Nothing to stream after the role chunk: drop anyway.
            await DropPointAsync(drop, ct);
            drop.Break(ctx);
            return;
        }

        // 3. Finish chunk(s).
        for (int i = 0; i < request.N; i++)
        {
            var w = BeginChunk(request, reply);
            BeginChoice(w, i);
            EndChoice(w, reply.FinishReason);
            EndChunk(pipe, w, request);
        }

        // 4. Usage chunk.
        if (request.IncludeUsage)
        {
            var w = BeginChunk(request, reply);
            w.WriteEndArray();
            WriteUsage(w, reply);
            w.WriteEndObject();
            JsonOut.WriteSse(pipe, w);
        }

        "data: [DONE]\n\n"u8.CopyTo(pipe.GetSpan(14));
        pipe.Advance(14);
        await pipe.FlushAsync(ct);
    }
}
