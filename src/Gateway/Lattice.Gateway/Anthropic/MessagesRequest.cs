using System.Buffers;
using System.Text.Json;
using Lattice.Gateway.OpenAi;

namespace Lattice.Gateway.Anthropic;

/// <summary>
/// An Anthropic Messages request translated to a chat-completions body. What the chat task cannot carry yet (tools,
/// images, <c>top_k</c>, …) is refused with a 400 naming the field, never dropped.
/// </summary>
public static class MessagesRequest
{
    /// <summary>Fields the gateway does not translate yet: a request using one is refused, naming it.</summary>
    private static readonly HashSet<string> NotYet = new(StringComparer.Ordinal)
    {
        "tools", "tool_choice", "thinking", "mcp_servers", "container", "context_management", "service_tier", "output_format",
    };

    /// <summary>The translated request: the chat body, and what the answer must echo.</summary>
    public sealed record Translated(byte[] ChatBody, string Model, bool Stream, IReadOnlyList<string> StopSequences);

    public static (Translated? Request, GatewayError Error) Translate(ReadOnlySpan<byte> body)
    {
        if (body.IsEmpty)
        {
            return (null, Invalid("The request body is empty."));
        }
        JsonDocument document;
        try
        {
            var reader = new Utf8JsonReader(body, new JsonReaderOptions { MaxDepth = 64 });
            document = JsonDocument.ParseValue(ref reader);
        }
        catch (JsonException ex)
        {
            return (null, Invalid($"The request body is not valid JSON (line {ex.LineNumber + 1}, position {ex.BytePositionInLine})."));
        }
        using (document)
        {
            return Translate(document.RootElement);
        }
    }

    private static (Translated?, GatewayError) Translate(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            return (null, Invalid("The request body must be a JSON object."));
        }
        foreach (var property in root.EnumerateObject())
        {
            if (NotYet.Contains(property.Name))
            {
                return (null, Invalid($"{property.Name}: not supported yet by this gateway's Messages API.", property.Name));
            }
            if (property.Name == "top_k")
            {
                return (null, Invalid("top_k: not supported by the chat-completions targets this model is served by.", "top_k"));
            }
            // cache_control (automatic prompt caching) is a hint with no effect on the answer; the chat targets have no such cache.
            if (property.Name is not ("model" or "max_tokens" or "messages" or "system" or "stop_sequences" or "temperature" or "top_p" or "metadata" or "stream" or "cache_control"))
            {
                return (null, Invalid($"{property.Name}: unknown field.", property.Name));
            }
        }

        if (!root.TryGetProperty("model", out var modelElement) || modelElement.ValueKind != JsonValueKind.String || modelElement.GetString() is not { Length: > 0 } model)
        {
            return (null, Invalid("model: a non-empty string is required.", "model"));
        }
        if (!root.TryGetProperty("max_tokens", out var maxTokens) || maxTokens.ValueKind != JsonValueKind.Number
            || !maxTokens.TryGetInt64(out var maxTokensValue) || maxTokensValue < 1)
        {
            return (null, Invalid("max_tokens: an integer of at least 1 is required.", "max_tokens"));
        }
        if (!root.TryGetProperty("messages", out var messages) || messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
        {
            return (null, Invalid("messages: a non-empty array is required.", "messages"));
        }
        var stream = false;
        if (root.TryGetProperty("stream", out var streamElement) && streamElement.ValueKind != JsonValueKind.Null)
        {
            if (streamElement.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                return (null, Invalid("stream: must be a boolean.", "stream"));
            }
            stream = streamElement.ValueKind == JsonValueKind.True;
        }

        var buffer = new ArrayBufferWriter<byte>(1024);
        var stops = new List<string>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("model", model);
            writer.WriteStartArray("messages");
            if (root.TryGetProperty("system", out var system) && system.ValueKind != JsonValueKind.Null)
            {
                writer.WriteStartObject();
                writer.WriteString("role", "system");
                if (WriteContent(writer, system, "system") is { } systemError)
                {
                    return (null, systemError);
                }
                writer.WriteEndObject();
            }
            var i = 0;
            foreach (var message in messages.EnumerateArray())
            {
                var path = $"messages.{i++}";
                if (message.ValueKind != JsonValueKind.Object)
                {
                    return (null, Invalid($"{path}: must be an object with 'role' and 'content'.", path));
                }
                foreach (var property in message.EnumerateObject())
                {
                    if (property.Name is not ("role" or "content"))
                    {
                        return (null, Invalid($"{path}.{property.Name}: unknown field.", $"{path}.{property.Name}"));
                    }
                }
                if (!message.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String
                    || role.GetString() is not ("user" or "assistant") || role.GetString() is not { } roleName)
                {
                    return (null, Invalid($"{path}.role: must be 'user' or 'assistant'.", $"{path}.role"));
                }
                if (!message.TryGetProperty("content", out var content))
                {
                    return (null, Invalid($"{path}.content: is required.", $"{path}.content"));
                }
                writer.WriteStartObject();
                writer.WriteString("role", roleName);
                if (WriteContent(writer, content, $"{path}.content") is { } contentError)
                {
                    return (null, contentError);
                }
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
            writer.WriteNumber("max_tokens", maxTokensValue);

            if (root.TryGetProperty("stop_sequences", out var stopSequences) && stopSequences.ValueKind != JsonValueKind.Null)
            {
                if (stopSequences.ValueKind != JsonValueKind.Array || stopSequences.EnumerateArray().Any(s => s.ValueKind != JsonValueKind.String))
                {
                    return (null, Invalid("stop_sequences: must be an array of strings.", "stop_sequences"));
                }
                if (stopSequences.GetArrayLength() > MaxStopSequences)
                {
                    return (null, Invalid($"stop_sequences: at most {MaxStopSequences} are supported by the chat-completions targets.", "stop_sequences"));
                }
                if (stopSequences.GetArrayLength() > 0)
                {
                    writer.WriteStartArray("stop");
                    foreach (var s in stopSequences.EnumerateArray())
                    {
                        stops.Add(s.GetString()!);
                        writer.WriteStringValue(s.GetString());
                    }
                    writer.WriteEndArray();
                }
            }
            foreach (var name in (ReadOnlySpan<string>)["temperature", "top_p"])
            {
                if (root.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null)
                {
                    if (value.ValueKind != JsonValueKind.Number || value.GetDouble() is < 0 or > 1)
                    {
                        return (null, Invalid($"{name}: must be a number from 0 to 1.", name));
                    }
                    writer.WritePropertyName(name);
                    value.WriteTo(writer);
                }
            }
            if (root.TryGetProperty("metadata", out var metadata) && metadata.ValueKind != JsonValueKind.Null)
            {
                if (metadata.ValueKind != JsonValueKind.Object)
                {
                    return (null, Invalid("metadata: must be an object.", "metadata"));
                }
                foreach (var property in metadata.EnumerateObject())
                {
                    if (property.Name != "user_id")
                    {
                        return (null, Invalid($"metadata.{property.Name}: unknown field.", $"metadata.{property.Name}"));
                    }
                    if (property.Value.ValueKind == JsonValueKind.String)
                    {
                        writer.WriteString("user", property.Value.GetString());
                    }
                    else if (property.Value.ValueKind != JsonValueKind.Null)
                    {
                        return (null, Invalid("metadata.user_id: must be a string.", "metadata.user_id"));
                    }
                }
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
        return (new Translated(buffer.WrittenSpan.ToArray(), model, stream, stops), default);
    }

    /// <summary>OpenAI's chat completions take at most four stop sequences.</summary>
    private const int MaxStopSequences = 4;

    /// <summary>
    /// A <c>content</c> (or <c>system</c>) value: a string as it is; text blocks as a string when there is one, else as
    /// text parts. Any other block is refused, naming it.
    /// </summary>
    private static GatewayError? WriteContent(Utf8JsonWriter writer, JsonElement content, string path)
    {
        if (content.ValueKind == JsonValueKind.String)
        {
            writer.WriteString("content", content.GetString());
            return null;
        }
        if (content.ValueKind != JsonValueKind.Array)
        {
            return Invalid($"{path}: must be a string or an array of content blocks.", path);
        }
        if (content.GetArrayLength() == 0)
        {
            return Invalid($"{path}: must not be empty.", path);
        }
        var texts = new List<string>(content.GetArrayLength());
        var j = 0;
        foreach (var block in content.EnumerateArray())
        {
            var blockPath = $"{path}.{j++}";
            if (block.ValueKind != JsonValueKind.Object || !block.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            {
                return Invalid($"{blockPath}: a content block must be an object with a 'type'.", blockPath);
            }
            if (!type.ValueEquals("text"u8))
            {
                return Invalid($"{blockPath}: content blocks of type '{type.GetString()}' are not supported yet by this gateway's Messages API.", $"{blockPath}.type");
            }
            foreach (var property in block.EnumerateObject())
            {
                // cache_control is a caching hint with no effect on the answer; the chat targets have no such cache.
                if (property.Name is "type" or "text" or "cache_control" || (property.Name == "citations" && property.Value.ValueKind == JsonValueKind.Null))
                {
                    continue;
                }
                return Invalid($"{blockPath}.{property.Name}: not supported yet by this gateway's Messages API.", $"{blockPath}.{property.Name}");
            }
            if (!block.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
            {
                return Invalid($"{blockPath}.text: a string is required.", $"{blockPath}.text");
            }
            texts.Add(text.GetString()!);
        }
        if (texts.Count == 1)
        {
            writer.WriteString("content", texts[0]);
            return null;
        }
        writer.WriteStartArray("content");
        foreach (var text in texts)
        {
            writer.WriteStartObject();
            writer.WriteString("type", "text");
            writer.WriteString("text", text);
            writer.WriteEndObject();
        }
        writer.WriteEndArray();
        return null;
    }

    private static GatewayError Invalid(string message, string? param = null) => GatewayError.InvalidRequest(message, param);
}
