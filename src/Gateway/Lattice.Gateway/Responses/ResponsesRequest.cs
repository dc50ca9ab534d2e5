using System.Buffers;
using System.Text.Json;
using Lattice.Gateway.OpenAi;
using Lattice.Protocol;

namespace Lattice.Gateway.Responses;

/// <summary>
/// An OpenAI Responses request translated to a chat-completions body. What the chat targets cannot do (built-in tools,
/// reasoning, background runs, <c>include</c>, …) is refused with a 400 naming the field, never dropped.
/// </summary>
/// <remarks>
/// <c>instructions</c> become the first system message; <c>input</c> (a string: one user message) is read item by item:
/// a message (<c>input_text</c> → text parts, <c>input_image</c> → <c>image_url</c> parts, an assistant's
/// <c>output_text</c> → its content, <c>refusal</c> → its refusal), a <c>function_call</c> (joined to the assistant
/// message before it as one of its <c>tool_calls</c>, <c>call_id</c> → <c>id</c>) and a <c>function_call_output</c>
/// (a <c>tool</c> message). Function tools become chat tools, <c>text.format</c> the <c>response_format</c>,
/// <c>max_output_tokens</c> the <c>max_completion_tokens</c>. A continued conversation's items (the stored input and
/// output of <c>previous_response_id</c>) come first; its instructions are not carried over.
/// </remarks>
public static class ResponsesRequest
{
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Fields the chat targets cannot honour: refused when set to anything but null (or false / empty).</summary>
    private static readonly HashSet<string> Refused = new(StringComparer.Ordinal)
    {
        "reasoning", "background", "include", "conversation", "prompt", "top_logprobs", "max_tool_calls", "service_tier",
        "safety_identifier", "context_management",
    };

    /// <summary>Fields read or echoed; anything else is unknown.</summary>
    private static readonly HashSet<string> Known = new(StringComparer.Ordinal)
    {
        "model", "input", "instructions", "tools", "tool_choice", "text", "max_output_tokens", "temperature", "top_p",
        "parallel_tool_calls", "user", "metadata", "stream", "stream_options", "store", "previous_response_id",
        "truncation", "prompt_cache_key", "prompt_cache_retention",
    };

    /// <summary>
    /// The translated request: the chat body; what the Response object echoes (each a JSON value, or null for the
    /// default); and this request's input items as they are stored for a later <c>previous_response_id</c>.
    /// </summary>
    public sealed record Translated(byte[] ChatBody, string Model, bool Stream, bool Store, string? PreviousResponseId, Echo Echo, byte[] InputItems);

    /// <summary>The request's fields a Response object repeats, as JSON text (null: not given).</summary>
    public sealed record Echo(
        string? Instructions, string? MaxOutputTokens, string? Temperature, string? TopP, string? ParallelToolCalls,
        string? ToolChoice, string? Tools, string? Text, string? User, string? Metadata);

    /// <summary>Reads the top of a request without translating it: its JSON, and the conversation it continues.</summary>
    public static (JsonDocument? Document, string? PreviousResponseId, GatewayError Error) Parse(ReadOnlySpan<byte> body)
    {
        if (body.IsEmpty)
        {
            return (null, null, GatewayError.InvalidJson("The request body is empty."));
        }
        // The text checks the chat surface makes on its body, made here on the client's: a string that no .NET string
        // can hold would otherwise throw from the first field read.
        if (Tasks.TaskInputReader.TextProblem(body) is { } problem)
        {
            return (null, null, GatewayError.InvalidJson(problem));
        }
        JsonDocument document;
        try
        {
            var reader = new Utf8JsonReader(body, new JsonReaderOptions { MaxDepth = 64 });
            document = JsonDocument.ParseValue(ref reader);
        }
        catch (JsonException ex)
        {
            return (null, null, GatewayError.InvalidJson($"(line {ex.LineNumber + 1}, position {ex.BytePositionInLine})"));
        }
        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            document.Dispose();
            return (null, null, Invalid("The request body must be a JSON object."));
        }
        if (root.TryGetProperty("previous_response_id", out var previous) && previous.ValueKind != JsonValueKind.Null)
        {
            if (previous.ValueKind != JsonValueKind.String || previous.GetString() is not { Length: > 0 } id)
            {
                document.Dispose();
                return (null, null, Invalid("previous_response_id: must be a non-empty string.", "previous_response_id"));
            }
            return (document, id, default);
        }
        return (document, null, default);
    }

    /// <summary>Translates <paramref name="root"/>, after the <paramref name="history"/> items of the conversation it continues.</summary>
    public static (Translated? Request, GatewayError Error) Translate(JsonElement root, string? previousResponseId, IReadOnlyList<JsonElement> history)
    {
        foreach (var property in root.EnumerateObject())
        {
            if (Refused.Contains(property.Name))
            {
                // service_tier auto / default ask for nothing in particular, which is what a chat target gives.
                if (IsUnset(property.Value) || (property.Name == "service_tier" && property.Value.ValueKind == JsonValueKind.String && property.Value.GetString() is "auto" or "default"))
                {
                    continue;
                }
                return (null, Invalid($"{property.Name}: not supported by the chat-completions targets this model is served by.", property.Name));
            }
            if (!Known.Contains(property.Name))
            {
                return (null, Invalid($"{property.Name}: unknown parameter.", property.Name, ErrorCodes.UnknownParameter));
            }
        }

        if (!root.TryGetProperty("model", out var modelElement) || modelElement.ValueKind != JsonValueKind.String || modelElement.GetString() is not { Length: > 0 } model)
        {
            return (null, Invalid("model: a non-empty string is required.", "model", ErrorCodes.MissingRequiredParameter));
        }
        if (!root.TryGetProperty("input", out var input) || input.ValueKind is not (JsonValueKind.String or JsonValueKind.Array))
        {
            return (null, Invalid("input: a string or an array of input items is required.", "input", ErrorCodes.MissingRequiredParameter));
        }
        if (Bool(root, "stream", out var stream) is { } streamError)
        {
            return (null, streamError);
        }
        if (Bool(root, "store", out var store, defaultValue: true) is { } storeError)
        {
            return (null, storeError);
        }
        if (root.TryGetProperty("stream_options", out var streamOptions) && streamOptions.ValueKind != JsonValueKind.Null)
        {
            if (!stream)
            {
                return (null, Invalid("stream_options: only allowed when stream is true.", "stream_options"));
            }
            if (streamOptions.ValueKind != JsonValueKind.Object
                || streamOptions.EnumerateObject().Any(p => p.Name != "include_obfuscation" || p.Value.ValueKind is not (JsonValueKind.True or JsonValueKind.False)))
            {
                return (null, Invalid("stream_options: only include_obfuscation (a boolean) is known.", "stream_options"));
            }
        }
        if (root.TryGetProperty("truncation", out var truncation) && truncation.ValueKind != JsonValueKind.Null && !truncation.ValueEquals("disabled"u8))
        {
            return (null, Invalid("truncation: only 'disabled' is supported by the chat-completions targets this model is served by.", "truncation"));
        }
        foreach (var hint in (ReadOnlySpan<string>)["prompt_cache_key", "prompt_cache_retention", "user"])
        {
            if (root.TryGetProperty(hint, out var value) && value.ValueKind is not (JsonValueKind.String or JsonValueKind.Null))
            {
                return (null, Invalid($"{hint}: must be a string.", hint));
            }
        }
        if (root.TryGetProperty("metadata", out var metadata) && metadata.ValueKind != JsonValueKind.Null
            && (metadata.ValueKind != JsonValueKind.Object || metadata.EnumerateObject().Any(p => p.Value.ValueKind != JsonValueKind.String)))
        {
            return (null, Invalid("metadata: must be an object of strings.", "metadata"));
        }

        var buffer = new ArrayBufferWriter<byte>(1024);
        var items = new ArrayBufferWriter<byte>(512);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        using (var itemsWriter = new Utf8JsonWriter(items, WriterOptions))
        {
            writer.WriteStartObject();
            writer.WriteString("model", model);
            writer.WriteStartArray("messages");
            if (root.TryGetProperty("instructions", out var instructions) && instructions.ValueKind != JsonValueKind.Null)
            {
                if (instructions.ValueKind != JsonValueKind.String)
                {
                    return (null, Invalid("instructions: must be a string.", "instructions"));
                }
                writer.WriteStartObject();
                writer.WriteString("role", "system");
                writer.WriteString("content", instructions.GetString());
                writer.WriteEndObject();
            }
            var messages = new ChatMessages(writer);
            foreach (var item in history)
            {
                if (messages.Add(item, "previous_response_id") is { } historyError)
                {
                    return (null, historyError);
                }
            }
            itemsWriter.WriteStartArray();
            if (input.ValueKind == JsonValueKind.String)
            {
                // The string is a user message; stored as the item it stands for.
                itemsWriter.WriteStartObject();
                itemsWriter.WriteString("type", "message");
                itemsWriter.WriteString("role", "user");
                itemsWriter.WriteString("content", input.GetString());
                itemsWriter.WriteEndObject();
                messages.Flush();
                writer.WriteStartObject();
                writer.WriteString("role", "user");
                writer.WriteString("content", input.GetString());
                writer.WriteEndObject();
            }
            else
            {
                var i = 0;
                foreach (var item in input.EnumerateArray())
                {
                    if (messages.Add(item, $"input[{i++}]") is { } itemError)
                    {
                        return (null, itemError);
                    }
                    item.WriteTo(itemsWriter);
                }
                messages.Flush();
            }
            itemsWriter.WriteEndArray();
            if (messages.Count == 0 && input.ValueKind == JsonValueKind.Array && history.Count == 0 && instructions.ValueKind != JsonValueKind.String)
            {
                return (null, Invalid("input: must not be empty.", "input"));
            }
            writer.WriteEndArray();

            if (root.TryGetProperty("max_output_tokens", out var maxTokens) && maxTokens.ValueKind != JsonValueKind.Null)
            {
                if (maxTokens.ValueKind != JsonValueKind.Number || !maxTokens.TryGetInt64(out var max) || max < 1)
                {
                    return (null, Invalid("max_output_tokens: must be an integer of at least 1.", "max_output_tokens"));
                }
                writer.WriteNumber("max_completion_tokens", max);
            }
            foreach (var (name, limit) in (ReadOnlySpan<(string, double)>)[("temperature", 2), ("top_p", 1)])
            {
                if (root.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null)
                {
                    if (value.ValueKind != JsonValueKind.Number || value.GetDouble() < 0 || value.GetDouble() > limit)
                    {
                        return (null, Invalid($"{name}: must be a number from 0 to {limit}.", name));
                    }
                    writer.WritePropertyName(name);
                    value.WriteTo(writer);
                }
            }
            if (root.TryGetProperty("user", out var user) && user.ValueKind == JsonValueKind.String)
            {
                writer.WriteString("user", user.GetString());
            }
            if (WriteTools(writer, root) is { } toolsError)
            {
                return (null, toolsError);
            }
            if (WriteFormat(writer, root) is { } formatError)
            {
                return (null, formatError);
            }
            if (stream)
            {
                writer.WriteBoolean("stream", true);
                writer.WriteStartObject("stream_options");
                writer.WriteBoolean("include_usage", true);
                writer.WriteEndObject();
            }
            writer.WriteEndObject();
        }
        var echo = new Echo(
            Raw(root, "instructions"), Raw(root, "max_output_tokens"), Raw(root, "temperature"), Raw(root, "top_p"),
            Raw(root, "parallel_tool_calls"), Raw(root, "tool_choice"), EchoTools(root), Raw(root, "text"), Raw(root, "user"), Raw(root, "metadata"));
        return (new Translated(buffer.WrittenSpan.ToArray(), model, stream, store, previousResponseId, echo, items.WrittenSpan.ToArray()), default);
    }

    /// <summary>
    /// Chat messages from Responses items, in order. <c>function_call</c> items join the assistant message before them
    /// (or one of their own), so a turn's parallel calls are one message with several <c>tool_calls</c>.
    /// </summary>
    private sealed class ChatMessages(Utf8JsonWriter writer)
    {
        private readonly List<(string Id, string Name, string Arguments)> _calls = [];
        private string? _assistantText;
        private string? _assistantRefusal;
        private bool _assistantOpen;

        public int Count { get; private set; }

        public GatewayError? Add(JsonElement item, string path)
        {
            if (item.ValueKind != JsonValueKind.Object)
            {
                return Invalid($"{path}: must be an object.", path);
            }
            string type;
            if (item.TryGetProperty("type", out var typeElement) && typeElement.ValueKind != JsonValueKind.Null)
            {
                if (typeElement.ValueKind != JsonValueKind.String)
                {
                    return Invalid($"{path}.type: must be a string.", $"{path}.type");
                }
                type = typeElement.GetString()!;
            }
            else
            {
                type = "message";
            }
            return type switch
            {
                "message" => AddMessage(item, path),
                "function_call" => AddCall(item, path),
                "function_call_output" => AddOutput(item, path),
                _ => Invalid($"{path}.type: items of type '{type}' are not supported by the chat-completions targets this model is served by.", $"{path}.type"),
            };
        }

        private GatewayError? AddMessage(JsonElement item, string path)
        {
            foreach (var property in item.EnumerateObject())
            {
                if (property.Name is not ("type" or "role" or "content" or "id" or "status"))
                {
                    return Invalid($"{path}.{property.Name}: unknown parameter.", $"{path}.{property.Name}", ErrorCodes.UnknownParameter);
                }
            }
            if (!item.TryGetProperty("role", out var roleElement) || roleElement.GetString() is not ("user" or "assistant" or "system" or "developer") || roleElement.GetString() is not { } role)
            {
                return Invalid($"{path}.role: must be 'user', 'assistant', 'system' or 'developer'.", $"{path}.role");
            }
            if (!item.TryGetProperty("content", out var content) || content.ValueKind is not (JsonValueKind.String or JsonValueKind.Array))
            {
                return Invalid($"{path}.content: a string or an array of content parts is required.", $"{path}.content");
            }
            if (role == "assistant")
            {
                Flush();
                _assistantOpen = true;
                if (content.ValueKind == JsonValueKind.String)
                {
                    _assistantText = content.GetString();
                    return null;
                }
                var j = 0;
                foreach (var part in content.EnumerateArray())
                {
                    var partPath = $"{path}.content[{j++}]";
                    var partType = part.ValueKind == JsonValueKind.Object && part.TryGetProperty("type", out var t) ? t.GetString() : null;
                    var field = partType switch { "output_text" or "input_text" => "text", "refusal" => "refusal", _ => null };
                    if (field is null)
                    {
                        return Invalid($"{partPath}.type: an assistant message's content parts must be 'output_text' or 'refusal'.", $"{partPath}.type");
                    }
                    if (!part.TryGetProperty(field, out var text) || text.ValueKind != JsonValueKind.String)
                    {
                        return Invalid($"{partPath}.{field}: a string is required.", $"{partPath}.{field}");
                    }
                    if (field == "text")
                    {
                        _assistantText += text.GetString();
                    }
                    else
                    {
                        _assistantRefusal += text.GetString();
                    }
                }
                return null;
            }
            Flush();
            writer.WriteStartObject();
            writer.WriteString("role", role);
            if (content.ValueKind == JsonValueKind.String)
            {
                writer.WriteString("content", content.GetString());
            }
            else
            {
                writer.WriteStartArray("content");
                var j = 0;
                foreach (var part in content.EnumerateArray())
                {
                    if (WritePart(part, $"{path}.content[{j++}]") is { } partError)
                    {
                        return partError;
                    }
                }
                writer.WriteEndArray();
            }
            writer.WriteEndObject();
            Count++;
            return null;
        }

        /// <summary><c>input_text</c> as a text part, <c>input_image</c> (by URL) as an <c>image_url</c> part.</summary>
        private GatewayError? WritePart(JsonElement part, string path)
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            {
                return Invalid($"{path}: a content part must be an object with a 'type'.", path);
            }
            switch (type.GetString())
            {
                case "input_text":
                    if (!part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                    {
                        return Invalid($"{path}.text: a string is required.", $"{path}.text");
                    }
                    writer.WriteStartObject();
                    writer.WriteString("type", "text");
                    writer.WriteString("text", text.GetString());
                    writer.WriteEndObject();
                    return null;
                case "input_image":
                    if (part.TryGetProperty("file_id", out var fileId) && fileId.ValueKind != JsonValueKind.Null)
                    {
                        return Invalid($"{path}.file_id: files are not supported by the chat-completions targets this model is served by; send image_url.", $"{path}.file_id");
                    }
                    if (!part.TryGetProperty("image_url", out var url) || url.ValueKind != JsonValueKind.String)
                    {
                        return Invalid($"{path}.image_url: a string is required.", $"{path}.image_url");
                    }
                    writer.WriteStartObject();
                    writer.WriteString("type", "image_url");
                    writer.WriteStartObject("image_url");
                    writer.WriteString("url", url.GetString());
                    if (part.TryGetProperty("detail", out var detail) && detail.ValueKind == JsonValueKind.String)
                    {
                        writer.WriteString("detail", detail.GetString());
                    }
                    writer.WriteEndObject();
                    writer.WriteEndObject();
                    return null;
                default:
                    return Invalid($"{path}.type: content parts of type '{type.GetString()}' are not supported by the chat-completions targets this model is served by.", $"{path}.type");
            }
        }

        private GatewayError? AddCall(JsonElement item, string path)
        {
            foreach (var property in item.EnumerateObject())
            {
                if (property.Name is not ("type" or "call_id" or "name" or "arguments" or "id" or "status"))
                {
                    return Invalid($"{path}.{property.Name}: unknown parameter.", $"{path}.{property.Name}", ErrorCodes.UnknownParameter);
                }
            }
            foreach (var name in (ReadOnlySpan<string>)["call_id", "name", "arguments"])
            {
                if (!item.TryGetProperty(name, out var value) || value.ValueKind != JsonValueKind.String)
                {
                    return Invalid($"{path}.{name}: a string is required.", $"{path}.{name}");
                }
            }
            _assistantOpen = true;
            _calls.Add((item.GetProperty("call_id").GetString()!, item.GetProperty("name").GetString()!, item.GetProperty("arguments").GetString()!));
            return null;
        }

        private GatewayError? AddOutput(JsonElement item, string path)
        {
            foreach (var property in item.EnumerateObject())
            {
                if (property.Name is not ("type" or "call_id" or "output" or "id" or "status"))
                {
                    return Invalid($"{path}.{property.Name}: unknown parameter.", $"{path}.{property.Name}", ErrorCodes.UnknownParameter);
                }
            }
            if (!item.TryGetProperty("call_id", out var callId) || callId.ValueKind != JsonValueKind.String)
            {
                return Invalid($"{path}.call_id: a string is required.", $"{path}.call_id");
            }
            string output;
            if (item.TryGetProperty("output", out var outputElement) && outputElement.ValueKind == JsonValueKind.String)
            {
                output = outputElement.GetString()!;
            }
            else if (outputElement.ValueKind == JsonValueKind.Array)
            {
                var texts = new List<string>();
                var j = 0;
                foreach (var part in outputElement.EnumerateArray())
                {
                    var partPath = $"{path}.output[{j++}]";
                    if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || !type.ValueEquals("input_text"u8)
                        || !part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                    {
                        return Invalid($"{partPath}: only input_text parts are supported in a function call's output.", partPath);
                    }
                    texts.Add(text.GetString()!);
                }
                output = string.Concat(texts);
            }
            else
            {
                return Invalid($"{path}.output: a string or an array of content parts is required.", $"{path}.output");
            }
            Flush();
            writer.WriteStartObject();
            writer.WriteString("role", "tool");
            writer.WriteString("tool_call_id", callId.GetString());
            writer.WriteString("content", output);
            writer.WriteEndObject();
            Count++;
            return null;
        }

        /// <summary>Writes the assistant message being gathered, if any.</summary>
        public void Flush()
        {
            if (!_assistantOpen)
            {
                return;
            }
            writer.WriteStartObject();
            writer.WriteString("role", "assistant");
            if (_assistantText is null)
            {
                writer.WriteNull("content");
            }
            else
            {
                writer.WriteString("content", _assistantText);
            }
            if (_assistantRefusal is not null)
            {
                writer.WriteString("refusal", _assistantRefusal);
            }
            if (_calls.Count > 0)
            {
                writer.WriteStartArray("tool_calls");
                foreach (var (id, name, arguments) in _calls)
                {
                    writer.WriteStartObject();
                    writer.WriteString("id", id);
                    writer.WriteString("type", "function");
                    writer.WriteStartObject("function");
                    writer.WriteString("name", name);
                    writer.WriteString("arguments", arguments);
                    writer.WriteEndObject();
                    writer.WriteEndObject();
                }
                writer.WriteEndArray();
            }
            writer.WriteEndObject();
            Count++;
            _assistantOpen = false;
            _assistantText = null;
            _assistantRefusal = null;
            _calls.Clear();
        }
    }

    /// <summary>Function <c>tools</c> as chat tools; <c>tool_choice</c> and <c>parallel_tool_calls</c> as the chat's.</summary>
    private static GatewayError? WriteTools(Utf8JsonWriter writer, JsonElement root)
    {
        if (root.TryGetProperty("tools", out var tools) && tools.ValueKind != JsonValueKind.Null)
        {
            if (tools.ValueKind != JsonValueKind.Array)
            {
                return Invalid("tools: must be an array.", "tools");
            }
            if (tools.GetArrayLength() > 0)
            {
                writer.WriteStartArray("tools");
                var i = 0;
                foreach (var tool in tools.EnumerateArray())
                {
                    if (WriteTool(writer, tool, $"tools[{i++}]") is { } error)
                    {
                        return error;
                    }
                }
                writer.WriteEndArray();
            }
        }
        if (root.TryGetProperty("tool_choice", out var choice) && choice.ValueKind != JsonValueKind.Null)
        {
            if (choice.ValueKind == JsonValueKind.String && choice.GetString() is "auto" or "none" or "required")
            {
                writer.WriteString("tool_choice", choice.GetString());
            }
            else if (choice.ValueKind == JsonValueKind.Object && choice.TryGetProperty("type", out var type) && type.ValueEquals("function"u8))
            {
                if (!choice.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || name.GetString() is not { Length: > 0 } functionName)
                {
                    return Invalid("tool_choice.name: a non-empty string is required.", "tool_choice.name");
                }
                writer.WriteStartObject("tool_choice");
                writer.WriteString("type", "function");
                writer.WriteStartObject("function");
                writer.WriteString("name", functionName);
                writer.WriteEndObject();
                writer.WriteEndObject();
            }
            else if (choice.ValueKind == JsonValueKind.Object && choice.TryGetProperty("type", out var other) && other.ValueKind == JsonValueKind.String)
            {
                return Invalid($"tool_choice.type: '{other.GetString()}' is not supported by the chat-completions targets this model is served by.", "tool_choice.type");
            }
            else
            {
                return Invalid("tool_choice: must be 'none', 'auto', 'required' or {\"type\":\"function\",\"name\":…}.", "tool_choice");
            }
        }
        if (root.TryGetProperty("parallel_tool_calls", out var parallel) && parallel.ValueKind != JsonValueKind.Null)
        {
            if (parallel.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                return Invalid("parallel_tool_calls: must be a boolean.", "parallel_tool_calls");
            }
            writer.WriteBoolean("parallel_tool_calls", parallel.ValueKind == JsonValueKind.True);
        }
        return null;
    }

    /// <summary>A function tool (<c>name</c>, <c>description</c>, <c>parameters</c>, <c>strict</c>) as a chat function tool.</summary>
    private static GatewayError? WriteTool(Utf8JsonWriter writer, JsonElement tool, string path)
    {
        if (tool.ValueKind != JsonValueKind.Object || !tool.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
        {
            return Invalid($"{path}: must be an object with a 'type'.", path);
        }
        if (!type.ValueEquals("function"u8))
        {
            return Invalid($"{path}.type: built-in tools ('{type.GetString()}') are not supported by the chat-completions targets this model is served by.", $"{path}.type");
        }
        foreach (var property in tool.EnumerateObject())
        {
            if (property.Name is not ("type" or "name" or "description" or "parameters" or "strict"))
            {
                return Invalid($"{path}.{property.Name}: unknown parameter.", $"{path}.{property.Name}", ErrorCodes.UnknownParameter);
            }
        }
        if (!tool.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || name.GetString() is not { Length: > 0 })
        {
            return Invalid($"{path}.name: a non-empty string is required.", $"{path}.name");
        }
        writer.WriteStartObject();
        writer.WriteString("type", "function");
        writer.WriteStartObject("function");
        writer.WriteString("name", name.GetString());
        if (tool.TryGetProperty("description", out var description) && description.ValueKind != JsonValueKind.Null)
        {
            if (description.ValueKind != JsonValueKind.String)
            {
                return Invalid($"{path}.description: must be a string.", $"{path}.description");
            }
            writer.WriteString("description", description.GetString());
        }
        if (tool.TryGetProperty("parameters", out var parameters) && parameters.ValueKind != JsonValueKind.Null)
        {
            if (parameters.ValueKind != JsonValueKind.Object)
            {
                return Invalid($"{path}.parameters: must be an object.", $"{path}.parameters");
            }
            writer.WritePropertyName("parameters");
            parameters.WriteTo(writer);
        }
        if (tool.TryGetProperty("strict", out var strict) && strict.ValueKind != JsonValueKind.Null)
        {
            if (strict.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                return Invalid($"{path}.strict: must be a boolean.", $"{path}.strict");
            }
            writer.WriteBoolean("strict", strict.ValueKind == JsonValueKind.True);
        }
        writer.WriteEndObject();
        writer.WriteEndObject();
        return null;
    }

    /// <summary><c>text.format</c> as the chat's <c>response_format</c>: <c>text</c>, <c>json_object</c> or <c>json_schema</c>.</summary>
    private static GatewayError? WriteFormat(Utf8JsonWriter writer, JsonElement root)
    {
        if (!root.TryGetProperty("text", out var text) || text.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        if (text.ValueKind != JsonValueKind.Object)
        {
            return Invalid("text: must be an object.", "text");
        }
        foreach (var property in text.EnumerateObject())
        {
            if (property.Name == "verbosity" && property.Value.ValueKind != JsonValueKind.Null)
            {
                return Invalid("text.verbosity: not supported by the chat-completions targets this model is served by.", "text.verbosity");
            }
            if (property.Name is not ("format" or "verbosity"))
            {
                return Invalid($"text.{property.Name}: unknown parameter.", $"text.{property.Name}", ErrorCodes.UnknownParameter);
            }
        }
        if (!text.TryGetProperty("format", out var format) || format.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        if (format.ValueKind != JsonValueKind.Object || !format.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
        {
            return Invalid("text.format: must be an object with a 'type'.", "text.format");
        }
        switch (type.GetString())
        {
            case "text":
                return null;
            case "json_object":
                writer.WriteStartObject("response_format");
                writer.WriteString("type", "json_object");
                writer.WriteEndObject();
                return null;
            case "json_schema":
                foreach (var property in format.EnumerateObject())
                {
                    if (property.Name is not ("type" or "name" or "schema" or "description" or "strict"))
                    {
                        return Invalid($"text.format.{property.Name}: unknown parameter.", $"text.format.{property.Name}", ErrorCodes.UnknownParameter);
                    }
                }
                if (!format.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || name.GetString() is not { Length: > 0 })
                {
                    return Invalid("text.format.name: a non-empty string is required.", "text.format.name", ErrorCodes.MissingRequiredParameter);
                }
                if (!format.TryGetProperty("schema", out var schema) || schema.ValueKind != JsonValueKind.Object)
                {
                    return Invalid("text.format.schema: an object is required.", "text.format.schema", ErrorCodes.MissingRequiredParameter);
                }
                writer.WriteStartObject("response_format");
                writer.WriteString("type", "json_schema");
                writer.WriteStartObject("json_schema");
                writer.WriteString("name", name.GetString());
                if (format.TryGetProperty("description", out var description) && description.ValueKind == JsonValueKind.String)
                {
                    writer.WriteString("description", description.GetString());
                }
                writer.WritePropertyName("schema");
                schema.WriteTo(writer);
                if (format.TryGetProperty("strict", out var strict) && strict.ValueKind is JsonValueKind.True or JsonValueKind.False)
                {
                    writer.WriteBoolean("strict", strict.ValueKind == JsonValueKind.True);
                }
                writer.WriteEndObject();
                writer.WriteEndObject();
                return null;
            default:
                return Invalid("text.format.type: must be 'text', 'json_object' or 'json_schema'.", "text.format.type");
        }
    }

    /// <summary>The request's tools as a Response lists them: each function tool with its <c>strict</c> (null when not given).</summary>
    private static string? EchoTools(JsonElement root)
    {
        if (!root.TryGetProperty("tools", out var tools) || tools.ValueKind != JsonValueKind.Array)
        {
            return null;
        }
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            writer.WriteStartArray();
            foreach (var tool in tools.EnumerateArray())
            {
                writer.WriteStartObject();
                writer.WriteString("type", "function");
                writer.WriteString("name", tool.GetProperty("name").GetString());
                writer.WritePropertyName("description");
                (tool.TryGetProperty("description", out var description) ? description : default).WriteOrNull(writer);
                writer.WritePropertyName("parameters");
                (tool.TryGetProperty("parameters", out var parameters) ? parameters : default).WriteOrNull(writer);
                writer.WritePropertyName("strict");
                (tool.TryGetProperty("strict", out var strict) ? strict : default).WriteOrNull(writer);
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static void WriteOrNull(this JsonElement value, Utf8JsonWriter writer)
    {
        if (value.ValueKind == JsonValueKind.Undefined)
        {
            writer.WriteNullValue();
        }
        else
        {
            value.WriteTo(writer);
        }
    }

    /// <summary>A field's compact JSON, or null when absent or null.</summary>
    private static string? Raw(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        var buffer = new ArrayBufferWriter<byte>(64);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            value.WriteTo(writer);
        }
        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static GatewayError? Bool(JsonElement root, string name, out bool value, bool defaultValue = false)
    {
        value = defaultValue;
        if (!root.TryGetProperty(name, out var element) || element.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        if (element.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
        {
            return Invalid($"{name}: must be a boolean.", name);
        }
        value = element.ValueKind == JsonValueKind.True;
        return null;
    }

    /// <summary>Null, false, or an empty array or object: a refused field left at its default.</summary>
    private static bool IsUnset(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Null or JsonValueKind.False => true,
        JsonValueKind.Array => value.GetArrayLength() == 0,
        JsonValueKind.Object => !value.EnumerateObject().Any(p => p.Value.ValueKind != JsonValueKind.Null),
        _ => false,
    };

    private static GatewayError Invalid(string message, string? param = null, string? code = ErrorCodes.InvalidValue) =>
        GatewayError.InvalidRequest(message, param, code);
}
