using System.Buffers;
using System.Text.Json;
using Lattice.Gateway.OpenAi;

namespace Lattice.Gateway.Anthropic;

/// <summary>
/// A chat-completions body translated to a Messages request, for an Anthropic upstream: the reverse of
/// <see cref="MessagesRequest"/>. What a Messages request cannot carry (several choices, log probabilities, JSON
/// response formats, audio, …) is refused with a 400 naming the field, never dropped.
/// </summary>
/// <remarks>
/// System and developer messages become <c>system</c> text blocks; user, assistant and tool messages become turns of
/// content blocks — an assistant's <c>tool_calls</c> its <c>tool_use</c> blocks (the arguments parsed as the input), a
/// <c>tool</c> message a <c>tool_result</c> block of a user turn — and consecutive messages of one role one turn.
/// Chat tool call ids become <c>toolu_</c> ids the way the Anthropic surface names them (<see cref="ToolCall.IdFor"/>).
/// </remarks>
public static class ChatToMessages
{
    /// <summary>Chat fields whose neutral value (null, or the one given here) is all a Messages request can carry.</summary>
    private static readonly Dictionary<string, Func<JsonElement, bool>> NeutralOnly = new(StringComparer.Ordinal)
    {
        ["n"] = v => v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var n) && n == 1,
        ["logprobs"] = v => v.ValueKind == JsonValueKind.False,
        ["frequency_penalty"] = IsZero,
        ["presence_penalty"] = IsZero,
        ["store"] = v => v.ValueKind == JsonValueKind.False,
        ["response_format"] = v => v.ValueKind == JsonValueKind.Object && v.TryGetProperty("type", out var t) && t.ValueEquals("text"u8),
        ["modalities"] = v => v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 1 && v[0].ValueEquals("text"u8),
    };

    /// <summary>The Messages body, or the 400 naming what cannot be carried.</summary>
    /// <param name="defaultMaxTokens">The <c>max_tokens</c> to send (Anthropic requires one) when the client names none.</param>
    public static (byte[]? Body, GatewayError Error) Translate(ReadOnlySpan<byte> chatBody, string upstreamModel, int defaultMaxTokens)
    {
        JsonDocument document;
        try
        {
            var reader = new Utf8JsonReader(chatBody, new JsonReaderOptions { MaxDepth = 64 });
            document = JsonDocument.ParseValue(ref reader);
        }
        catch (JsonException)
        {
            return (null, Invalid("The request body is not valid JSON."));
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return (null, Invalid("The request body must be a JSON object."));
            }
            try
            {
                return (Write(root, upstreamModel, defaultMaxTokens), default);
            }
            catch (Refused refused)
            {
                return (null, refused.Error);
            }
        }
    }

    private static byte[] Write(JsonElement root, string upstreamModel, int defaultMaxTokens)
    {
        foreach (var property in root.EnumerateObject())
        {
            var value = property.Value;
            if (value.ValueKind == JsonValueKind.Null || property.Name is "model" or "messages" or "stream" or "stream_options" or "tools" or "tool_choice"
                or "parallel_tool_calls" or "stop" or "temperature" or "top_p" or "user" or "max_tokens" or "max_completion_tokens")
            {
                continue;
            }
            if (NeutralOnly.TryGetValue(property.Name, out var neutral) && neutral(value))
            {
                continue;
            }
            throw Refuse($"{property.Name}: not supported by this model's Anthropic upstream.", property.Name);
        }

        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("model", upstreamModel);
            w.WriteNumber("max_tokens", MaxTokens(root) ?? defaultMaxTokens);
            WriteMessages(w, Required(root, "messages", JsonValueKind.Array));
            if (Optional(root, "stop") is { } stop)
            {
                w.WriteStartArray("stop_sequences");
                if (stop.ValueKind == JsonValueKind.String)
                {
                    w.WriteStringValue(stop.GetString());
                }
                else if (stop.ValueKind == JsonValueKind.Array)
                {
                    foreach (var s in stop.EnumerateArray())
                    {
                        w.WriteStringValue(s.ValueKind == JsonValueKind.String ? s.GetString() : throw Refuse("stop: must be a string or an array of strings.", "stop"));
                    }
                }
                else
                {
                    throw Refuse("stop: must be a string or an array of strings.", "stop");
                }
                w.WriteEndArray();
            }
            if (Optional(root, "temperature") is { } temperature)
            {
                // Anthropic's range is 0 to 1; OpenAI's goes to 2, and rescaling would change what the client asked for.
                if (temperature.ValueKind != JsonValueKind.Number || temperature.GetDouble() is < 0 or > 1)
                {
                    throw Refuse("temperature: this model's Anthropic upstream takes a number from 0 to 1.", "temperature");
                }
                w.WritePropertyName("temperature");
                temperature.WriteTo(w);
            }
            if (Optional(root, "top_p") is { } topP)
            {
                w.WritePropertyName("top_p");
                topP.WriteTo(w);
            }
            if (Optional(root, "user") is { } user)
            {
                w.WriteStartObject("metadata");
                w.WriteString("user_id", user.ValueKind == JsonValueKind.String ? user.GetString() : throw Refuse("user: must be a string.", "user"));
                w.WriteEndObject();
            }
            WriteTools(w, root);
            if (Optional(root, "stream") is { ValueKind: JsonValueKind.True })
            {
                w.WriteBoolean("stream", true);
            }
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary><c>max_completion_tokens</c>, else <c>max_tokens</c>; null when the client names neither.</summary>
    private static long? MaxTokens(JsonElement root)
    {
        foreach (var name in (ReadOnlySpan<string>)["max_completion_tokens", "max_tokens"])
        {
            if (Optional(root, name) is { } value)
            {
                return value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var n) && n >= 1
                    ? n
                    : throw Refuse($"{name}: must be an integer of at least 1.", name);
            }
        }
        return null;
    }

    /// <summary>One turn being built: its role and content blocks, written when the role changes.</summary>
    private sealed class Turn(string role)
    {
        public string Role { get; } = role;
        public List<Action<Utf8JsonWriter>> Blocks { get; } = [];
    }

    private static void WriteMessages(Utf8JsonWriter w, JsonElement messages)
    {
        var system = new List<string>();
        var turns = new List<Turn>();
        var i = 0;
        foreach (var message in messages.EnumerateArray())
        {
            var path = $"messages[{i++}]";
            if (message.ValueKind != JsonValueKind.Object)
            {
                throw Refuse($"{path}: must be an object.", path);
            }
            var role = message.TryGetProperty("role", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString() : null;
            foreach (var property in message.EnumerateObject())
            {
                if (property.Value.ValueKind == JsonValueKind.Null || property.Name is "role" or "content"
                    || (property.Name == "tool_calls" && role == "assistant") || (property.Name == "tool_call_id" && role == "tool"))
                {
                    continue;
                }
                throw Refuse($"{path}.{property.Name}: not supported by this model's Anthropic upstream.", $"{path}.{property.Name}");
            }
            switch (role)
            {
                case "system" or "developer":
                    system.AddRange(Texts(message, path));
                    break;
                case "user":
                    foreach (var text in Texts(message, path))
                    {
                        Into(turns, "user").Add(TextBlock(text));
                    }
                    break;
                case "assistant":
                    var blocks = Into(turns, "assistant");
                    foreach (var text in Texts(message, path))
                    {
                        blocks.Add(TextBlock(text));
                    }
                    if (Optional(message, "tool_calls") is { } calls)
                    {
                        var j = 0;
                        foreach (var call in calls.EnumerateArray())
                        {
                            blocks.Add(ToolUse(call, $"{path}.tool_calls[{j++}]"));
                        }
                    }
                    break;
                case "tool":
                    Into(turns, "user").Add(ToolResult(message, path));
                    break;
                default:
                    throw Refuse($"{path}.role: '{role}' messages are not supported by this model's Anthropic upstream.", $"{path}.role");
            }
        }

        if (system.Count > 0)
        {
            w.WriteStartArray("system");
            foreach (var text in system)
            {
                TextBlock(text)(w);
            }
            w.WriteEndArray();
        }
        w.WriteStartArray("messages");
        foreach (var turn in turns)
        {
            if (turn.Blocks.Count == 0)
            {
                continue;
            }
            w.WriteStartObject();
            w.WriteString("role", turn.Role);
            w.WriteStartArray("content");
            foreach (var block in turn.Blocks)
            {
                block(w);
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    /// <summary>The blocks of the last turn when it has <paramref name="role"/>, else of a new turn.</summary>
    private static List<Action<Utf8JsonWriter>> Into(List<Turn> turns, string role)
    {
        if (turns.Count == 0 || turns[^1].Role != role)
        {
            turns.Add(new Turn(role));
        }
        return turns[^1].Blocks;
    }

    /// <summary>A message's texts: its string content, or its text parts (empty ones left out: Anthropic refuses empty text blocks).</summary>
    private static List<string> Texts(JsonElement message, string path)
    {
        var texts = new List<string>();
        if (Optional(message, "content") is not { } content)
        {
            return texts;
        }
        if (content.ValueKind == JsonValueKind.String)
        {
            if (content.GetString() is { Length: > 0 } text)
            {
                texts.Add(text);
            }
            return texts;
        }
        if (content.ValueKind != JsonValueKind.Array)
        {
            throw Refuse($"{path}.content: must be a string or an array of content parts.", $"{path}.content");
        }
        var j = 0;
        foreach (var part in content.EnumerateArray())
        {
            var partPath = $"{path}.content[{j++}]";
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || !type.ValueEquals("text"u8))
            {
                var name = part.ValueKind == JsonValueKind.Object && part.TryGetProperty("type", out var t) ? t.ToString() : "?";
                throw Refuse($"{partPath}.type: '{name}' content parts are not supported by this model's Anthropic upstream.", $"{partPath}.type");
            }
            if (!part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
            {
                throw Refuse($"{partPath}.text: a string is required.", $"{partPath}.text");
            }
            if (text.GetString() is { Length: > 0 } value)
            {
                texts.Add(value);
            }
        }
        return texts;
    }

    private static Action<Utf8JsonWriter> TextBlock(string text) => w =>
    {
        w.WriteStartObject();
        w.WriteString("type", "text");
        w.WriteString("text", text);
        w.WriteEndObject();
    };

    /// <summary>An assistant's tool call as a <c>tool_use</c> block: its arguments must be a JSON object (the input).</summary>
    private static Action<Utf8JsonWriter> ToolUse(JsonElement call, string path)
    {
        var id = RequiredString(call, "id", path);
        var function = Required(call, "function", JsonValueKind.Object, path);
        var name = RequiredString(function, "name", $"{path}.function");
        var arguments = Optional(function, "arguments") is { ValueKind: JsonValueKind.String } given ? given.GetString()! : "";
        string input;
        try
        {
            using var parsed = JsonDocument.Parse(arguments.Length == 0 ? "{}" : arguments);
            if (parsed.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new JsonException();
            }
            input = parsed.RootElement.GetRawText();
        }
        catch (JsonException)
        {
            throw Refuse($"{path}.function.arguments: must be a JSON object for this model's Anthropic upstream.", $"{path}.function.arguments");
        }
        return w =>
        {
            w.WriteStartObject();
            w.WriteString("type", "tool_use");
            w.WriteString("id", ToolCall.IdFor(id));
            w.WriteString("name", name);
            w.WritePropertyName("input");
            w.WriteRawValue(input);
            w.WriteEndObject();
        };
    }

    /// <summary>A <c>tool</c> message as a <c>tool_result</c> block: its text, for the tool call of the same id.</summary>
    private static Action<Utf8JsonWriter> ToolResult(JsonElement message, string path)
    {
        var id = RequiredString(message, "tool_call_id", path);
        var text = string.Join("", Texts(message, path));
        return w =>
        {
            w.WriteStartObject();
            w.WriteString("type", "tool_result");
            w.WriteString("tool_use_id", ToolCall.IdFor(id));
            w.WriteString("content", text);
            w.WriteEndObject();
        };
    }

    /// <summary>Function tools as client tools (<c>parameters</c> → <c>input_schema</c>), <c>tool_choice</c> and parallel calls as Anthropic's.</summary>
    private static void WriteTools(Utf8JsonWriter w, JsonElement root)
    {
        var hasTools = false;
        if (Optional(root, "tools") is { } tools)
        {
            if (tools.ValueKind != JsonValueKind.Array)
            {
                throw Refuse("tools: must be an array.", "tools");
            }
            hasTools = tools.GetArrayLength() > 0;
            if (hasTools)
            {
                w.WriteStartArray("tools");
                var i = 0;
                foreach (var tool in tools.EnumerateArray())
                {
                    WriteTool(w, tool, $"tools[{i++}]");
                }
                w.WriteEndArray();
            }
        }

        var parallel = Optional(root, "parallel_tool_calls") is not { ValueKind: JsonValueKind.False };
        var choice = Optional(root, "tool_choice");
        if (choice is null && (parallel || !hasTools))
        {
            return;
        }
        w.WriteStartObject("tool_choice");
        if (choice is not { } given)
        {
            w.WriteString("type", "auto");
        }
        else if (given.ValueKind == JsonValueKind.String && MessagesMapping.MessagesToolChoice(given.GetString()) is { } type)
        {
            w.WriteString("type", type);
        }
        else if (given.ValueKind == JsonValueKind.Object && Optional(given, "function") is { ValueKind: JsonValueKind.Object } function)
        {
            w.WriteString("type", "tool");
            w.WriteString("name", RequiredString(function, "name", "tool_choice.function"));
        }
        else
        {
            throw Refuse("tool_choice: must be 'none', 'auto', 'required' or a named function.", "tool_choice");
        }
        if (!parallel && hasTools)
        {
            w.WriteBoolean("disable_parallel_tool_use", true);
        }
        w.WriteEndObject();
    }

    private static void WriteTool(Utf8JsonWriter w, JsonElement tool, string path)
    {
        if (tool.ValueKind != JsonValueKind.Object || Optional(tool, "type") is not { } type || !type.ValueEquals("function"u8))
        {
            throw Refuse($"{path}.type: only function tools are supported by this model's Anthropic upstream.", $"{path}.type");
        }
        var function = Required(tool, "function", JsonValueKind.Object, path);
        foreach (var property in function.EnumerateObject())
        {
            if (property.Name == "strict" && property.Value.ValueKind == JsonValueKind.True)
            {
                throw Refuse($"{path}.function.strict: not supported by this model's Anthropic upstream.", $"{path}.function.strict");
            }
        }
        w.WriteStartObject();
        w.WriteString("name", RequiredString(function, "name", $"{path}.function"));
        if (Optional(function, "description") is { ValueKind: JsonValueKind.String } description)
        {
            w.WriteString("description", description.GetString());
        }
        w.WritePropertyName("input_schema");
        if (Optional(function, "parameters") is { ValueKind: JsonValueKind.Object } parameters)
        {
            parameters.WriteTo(w);
        }
        else
        {
            // A function without parameters takes none; Anthropic requires a schema.
            w.WriteStartObject();
            w.WriteString("type", "object");
            w.WriteStartObject("properties");
            w.WriteEndObject();
            w.WriteEndObject();
        }
        w.WriteEndObject();
    }

    private static bool IsZero(JsonElement value) => value.ValueKind == JsonValueKind.Number && value.GetDouble() == 0;

    private static JsonElement? Optional(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;

    private static JsonElement Required(JsonElement element, string name, JsonValueKind kind, string? path = null)
    {
        var full = path is null ? name : $"{path}.{name}";
        return Optional(element, name) is { } value && value.ValueKind == kind ? value : throw Refuse($"{full}: is required.", full);
    }

    private static string RequiredString(JsonElement element, string name, string path) =>
        Optional(element, name) is { ValueKind: JsonValueKind.String } value && value.GetString() is { Length: > 0 } text
            ? text
            : throw Refuse($"{path}.{name}: a non-empty string is required.", $"{path}.{name}");

    private static GatewayError Invalid(string message, string? param = null) => GatewayError.InvalidRequest(message, param);

    private static Refused Refuse(string message, string param) => new(Invalid(message, param));

    /// <summary>Unwinds the walk to the one place that turns it into the 400 (never escapes <see cref="Translate"/>).</summary>
    private sealed class Refused(GatewayError error) : Exception(error.Message)
    {
        public GatewayError Error { get; } = error;
    }
}
