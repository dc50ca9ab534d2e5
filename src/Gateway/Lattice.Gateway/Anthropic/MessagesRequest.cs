using System.Buffers;
using System.Text.Json;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Tasks;

namespace Lattice.Gateway.Anthropic;

/// <summary>
/// An Anthropic Messages request translated to a chat-completions body. What the chat task cannot carry (documents,
/// images in tool results, <c>top_k</c>, server tools, …) is refused with a 400 naming the field, never dropped.
/// </summary>
/// <remarks>
/// Tools: <c>tools</c> become function tools (<c>input_schema</c> → <c>parameters</c>); <c>tool_choice</c> <c>auto</c> /
/// <c>any</c> / <c>tool</c> / <c>none</c> become <c>"auto"</c> / <c>"required"</c> / a named function / <c>"none"</c>, and
/// <c>disable_parallel_tool_use</c> becomes <c>parallel_tool_calls: false</c>. An assistant turn's <c>tool_use</c> blocks
/// become its <c>tool_calls</c> (the input as a JSON string); a user turn's <c>tool_result</c> blocks become <c>tool</c>
/// messages right after it, and the turn's text a user message after those. The chat <c>tool</c> message has no error
/// flag, so an <c>is_error</c> result's content is prefixed with <c>"Error: "</c>.
/// Images: a user turn's <c>image</c> blocks become <c>image_url</c> parts — a <c>base64</c> source as a
/// <c>data:</c> URL, a <c>url</c> source as its URL. The chat <c>tool</c> message carries text only, so an image in a
/// <c>tool_result</c> is refused.
/// </remarks>
public static class MessagesRequest
{
    /// <summary>Fields the gateway does not translate yet: a request using one is refused, naming it.</summary>
    private static readonly HashSet<string> NotYet = new(StringComparer.Ordinal)
    {
        "thinking", "mcp_servers", "container", "context_management", "service_tier", "output_format",
    };

    /// <summary>The translated request: the chat body, and what the answer must echo.</summary>
    public sealed record Translated(byte[] ChatBody, string Model, bool Stream, IReadOnlyList<string> StopSequences)
    {
        /// <summary><c>max_tokens</c> (none when counting tokens).</summary>
        public long? MaxTokens { get; init; }

        /// <summary>Where the <c>model</c> value (quotes included) is in <see cref="ChatBody"/>.</summary>
        public (int Start, int Length) ModelValue { get; init; }

        /// <summary>
        /// The chat task's input: the translator's own body, trusted as it is. It is valid against the chat schema by
        /// construction — every field it writes is checked on the way in, more strictly than the chat schema would,
        /// and the writer emits only valid UTF-8 — so it is not parsed and checked a second time.
        /// </summary>
        public TaskInput ChatInput() => new()
        {
            Body = ChatBody,
            Length = ChatBody.Length,
            Model = Model,
            Stream = Stream,
            // A stream asks for its usage chunk (stream_options.include_usage), which message_delta reports.
            IncludeUsage = Stream,
            MaxTokens = MaxTokens,
            ContentType = "application/json",
            ModelValueStart = ModelValue.Start,
            ModelValueLength = ModelValue.Length,
        };
    }

    /// <summary>The fields a <c>count_tokens</c> body may have: Anthropic's list, less what is refused for messages too.</summary>
    private static bool CountsField(string name) => name is "model" or "messages" or "system" or "tools" or "tool_choice" or "cache_control";

    /// <summary>
    /// Translates a <c>POST /v1/messages</c> body, or with <paramref name="forCounting"/> a <c>count_tokens</c> body: the
    /// same conversation without <c>max_tokens</c> and the sampling fields (which Anthropic's counting does not take).
    /// </summary>
    public static (Translated? Request, GatewayError Error) Translate(ReadOnlySpan<byte> body, bool forCounting = false)
    {
        if (body.IsEmpty)
        {
            return (null, Invalid("The request body is empty."));
        }
        // The text checks the chat surface makes on its body, made here on the client's: a string that no .NET string
        // can hold would otherwise fail the translation itself.
        if (TaskInputReader.TextProblem(body) is { } problem)
        {
            return (null, Invalid(problem));
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
            return Translate(document.RootElement, forCounting);
        }
    }

    private static (Translated?, GatewayError) Translate(JsonElement root, bool forCounting)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            return (null, Invalid("The request body must be a JSON object."));
        }
        foreach (var property in root.EnumerateObject())
        {
            // The fields a request usually has pass without their names being made into strings.
            if (!forCounting && (property.NameEquals("model"u8) || property.NameEquals("max_tokens"u8) || property.NameEquals("messages"u8)
                || property.NameEquals("stream"u8) || property.NameEquals("system"u8)))
            {
                continue;
            }
            if (forCounting && !CountsField(property.Name) && !NotYet.Contains(property.Name))
            {
                return (null, Invalid($"{property.Name}: unknown field (counting tokens takes model, messages, system, tools and tool_choice).", property.Name));
            }
            if (NotYet.Contains(property.Name))
            {
                return (null, Invalid($"{property.Name}: not supported yet by this gateway's Messages API.", property.Name));
            }
            if (property.Name == "top_k")
            {
                return (null, Invalid("top_k: not supported by the chat-completions targets this model is served by.", "top_k"));
            }
            // cache_control (automatic prompt caching) is a hint with no effect on the answer; the chat targets have no such cache.
            if (property.Name is not ("model" or "max_tokens" or "messages" or "system" or "stop_sequences" or "temperature" or "top_p" or "metadata" or "stream" or "cache_control" or "tools" or "tool_choice"))
            {
                return (null, Invalid($"{property.Name}: unknown field.", property.Name));
            }
        }

        if (!root.TryGetProperty("model"u8, out var modelElement) || modelElement.ValueKind != JsonValueKind.String || modelElement.GetString() is not { Length: > 0 } model)
        {
            return (null, Invalid("model: a non-empty string is required.", "model"));
        }
        long maxTokensValue = 0;
        if (!forCounting && (!root.TryGetProperty("max_tokens"u8, out var maxTokens) || maxTokens.ValueKind != JsonValueKind.Number
            || !maxTokens.TryGetInt64(out maxTokensValue) || maxTokensValue < 1))
        {
            return (null, Invalid("max_tokens: an integer of at least 1 is required.", "max_tokens"));
        }
        if (!root.TryGetProperty("messages"u8, out var messages) || messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
        {
            return (null, Invalid("messages: a non-empty array is required.", "messages"));
        }
        var stream = false;
        if (root.TryGetProperty("stream"u8, out var streamElement) && streamElement.ValueKind != JsonValueKind.Null)
        {
            if (streamElement.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                return (null, Invalid("stream: must be a boolean.", "stream"));
            }
            stream = streamElement.ValueKind == JsonValueKind.True;
        }

        var (buffer, writer) = RentWriter();
        var stops = new List<string>();
        (int, int) modelValue;
        try
        {
            writer.WriteStartObject();
            var modelStart = writer.BytesPending + "\"model\":".Length;
            writer.WriteString("model", model);
            modelValue = ((int)modelStart, (int)(writer.BytesPending - modelStart));
            writer.WriteStartArray("messages");
            if (root.TryGetProperty("system"u8, out var system) && system.ValueKind != JsonValueKind.Null)
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
                var path = new MessagePath(i++);
                if (message.ValueKind != JsonValueKind.Object)
                {
                    return (null, Invalid($"{path}: must be an object with 'role' and 'content'.", path.ToString()));
                }
                foreach (var property in message.EnumerateObject())
                {
                    if (!property.NameEquals("role"u8) && !property.NameEquals("content"u8))
                    {
                        return (null, Invalid($"{path}.{property.Name}: unknown field.", $"{path}.{property.Name}"));
                    }
                }
                if (!message.TryGetProperty("role"u8, out var role) || role.ValueKind != JsonValueKind.String
                    || (role.ValueEquals("user"u8) ? "user" : role.ValueEquals("assistant"u8) ? "assistant" : null) is not { } roleName)
                {
                    return (null, Invalid($"{path}.role: must be 'user' or 'assistant'.", $"{path}.role"));
                }
                if (!message.TryGetProperty("content"u8, out var content))
                {
                    return (null, Invalid($"{path}.content: is required.", $"{path}.content"));
                }
                if (WriteMessage(writer, roleName, content, path) is { } contentError)
                {
                    return (null, contentError);
                }
            }
            writer.WriteEndArray();
            if (!forCounting)
            {
                writer.WriteNumber("max_tokens", maxTokensValue);
            }

            if (root.TryGetProperty("stop_sequences"u8, out var stopSequences) && stopSequences.ValueKind != JsonValueKind.Null)
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
            if (root.TryGetProperty("metadata"u8, out var metadata) && metadata.ValueKind != JsonValueKind.Null)
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
            if (WriteTools(writer, root) is { } toolsError)
            {
                return (null, toolsError);
            }
            if (stream)
            {
                writer.WriteBoolean("stream", true);
                writer.WriteStartObject("stream_options");
                writer.WriteBoolean("include_usage", true);
                writer.WriteEndObject();
            }
            writer.WriteEndObject();
            writer.Flush();
            return (new Translated(buffer.WrittenSpan.ToArray(), model, stream, stops)
            {
                MaxTokens = forCounting ? null : maxTokensValue,
                ModelValue = modelValue,
            }, default);
        }
        finally
        {
            ReturnWriter(buffer, writer);
        }
    }

    /// <summary>This thread's buffer and writer for a chat body (translation is synchronous, so one per thread is enough).</summary>
    [ThreadStatic]
    private static (ArrayBufferWriter<byte> Buffer, Utf8JsonWriter Writer)? _cached;

    /// <summary>A buffer kept for the next translation only up to this size, so one huge request does not stay in memory.</summary>
    private const int KeptBufferBytes = 64 * 1024;

    private static (ArrayBufferWriter<byte>, Utf8JsonWriter) RentWriter()
    {
        if (_cached is { } cached)
        {
            _cached = null;
            return cached;
        }
        var buffer = new ArrayBufferWriter<byte>(1024);
        return (buffer, new Utf8JsonWriter(buffer));
    }

    private static void ReturnWriter(ArrayBufferWriter<byte> buffer, Utf8JsonWriter writer)
    {
        if (buffer.Capacity > KeptBufferBytes)
        {
            return;
        }
        buffer.Clear();
        writer.Reset(buffer);
        _cached = (buffer, writer);
    }

    /// <summary><c>messages.N</c>, made into a string only when an error names it.</summary>
    private readonly record struct MessagePath(int Index)
    {
        public override string ToString() => $"messages.{Index}";
    }

    /// <summary>OpenAI's chat completions take at most four stop sequences.</summary>
    private const int MaxStopSequences = 4;

    /// <summary>
    /// A <c>content</c> (or <c>system</c>) value of text only: a string as it is; text blocks as a string when there is
    /// one, else as text parts. Any other block is refused, naming it.
    /// </summary>
    private static GatewayError? WriteContent(Utf8JsonWriter writer, JsonElement content, string path)
    {
        if (content.ValueKind == JsonValueKind.String)
        {
            writer.WriteString("content", content.GetString());
            return null;
        }
        if (CheckBlocks(content, path) is { } error)
        {
            return error;
        }
        var texts = new List<Part>(content.GetArrayLength());
        var j = 0;
        foreach (var block in content.EnumerateArray())
        {
            var blockPath = $"{path}.{j++}";
            if (ReadText(block, blockPath, texts) is { } textError)
            {
                return textError;
            }
        }
        WriteParts(writer, texts);
        return null;
    }

    /// <summary>
    /// One conversation turn. Text only is one message as <see cref="WriteContent"/> writes it; an assistant turn's
    /// <c>tool_use</c> blocks become its <c>tool_calls</c>; a user turn's <c>tool_result</c> blocks become <c>tool</c>
    /// messages, written first, and its text a user message after them.
    /// </summary>
    private static GatewayError? WriteMessage(Utf8JsonWriter writer, string role, JsonElement content, MessagePath message)
    {
        if (content.ValueKind == JsonValueKind.String)
        {
            writer.WriteStartObject();
            writer.WriteString("role"u8, role);
            writer.WriteString("content"u8, content.GetString());
            writer.WriteEndObject();
            return null;
        }
        var path = $"{message}.content";
        if (CheckBlocks(content, path) is { } error)
        {
            return error;
        }
        var parts = new List<Part>(content.GetArrayLength());
        var toolBlocks = new List<(JsonElement Block, string Path)>();
        var toolType = role == "assistant" ? "tool_use"u8 : "tool_result"u8;
        var j = 0;
        foreach (var block in content.EnumerateArray())
        {
            var blockPath = $"{path}.{j++}";
            var type = block.GetProperty("type");
            if (type.ValueEquals(toolType))
            {
                toolBlocks.Add((block, blockPath));
            }
            else if (type.ValueEquals("tool_use"u8) || type.ValueEquals("tool_result"u8))
            {
                return Invalid($"{blockPath}: '{type.GetString()}' blocks belong in {(role == "assistant" ? "a user" : "an assistant")} turn.", $"{blockPath}.type");
            }
            else if (role == "user" && type.ValueEquals("image"u8))
            {
                if (ReadImage(block, blockPath, parts) is { } imageError)
                {
                    return imageError;
                }
            }
            else if (ReadText(block, blockPath, parts) is { } textError)
            {
                return textError;
            }
        }
        if (role == "assistant")
        {
            writer.WriteStartObject();
            writer.WriteString("role", role);
            if (parts.Count == 0)
            {
                writer.WriteNull("content");
            }
            else
            {
                WriteParts(writer, parts);
            }
            if (toolBlocks.Count > 0)
            {
                writer.WriteStartArray("tool_calls");
                foreach (var (block, blockPath) in toolBlocks)
                {
                    if (WriteToolCall(writer, block, blockPath) is { } toolError)
                    {
                        return toolError;
                    }
                }
                writer.WriteEndArray();
            }
            writer.WriteEndObject();
            return null;
        }
        foreach (var (block, blockPath) in toolBlocks)
        {
            if (WriteToolResult(writer, block, blockPath) is { } toolError)
            {
                return toolError;
            }
        }
        if (parts.Count > 0)
        {
            writer.WriteStartObject();
            writer.WriteString("role", role);
            WriteParts(writer, parts);
            writer.WriteEndObject();
        }
        return null;
    }

    private static GatewayError? CheckBlocks(JsonElement content, string path)
    {
        if (content.ValueKind != JsonValueKind.Array)
        {
            return Invalid($"{path}: must be a string or an array of content blocks.", path);
        }
        if (content.GetArrayLength() == 0)
        {
            return Invalid($"{path}: must not be empty.", path);
        }
        var j = 0;
        foreach (var block in content.EnumerateArray())
        {
            var blockPath = $"{path}.{j++}";
            if (block.ValueKind != JsonValueKind.Object || !block.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            {
                return Invalid($"{blockPath}: a content block must be an object with a 'type'.", blockPath);
            }
        }
        return null;
    }

    /// <summary>A <c>text</c> block's text, added to <paramref name="parts"/>; any other block is refused, naming it.</summary>
    private static GatewayError? ReadText(JsonElement block, string blockPath, List<Part> parts)
    {
        var type = block.GetProperty("type");
        if (type.ValueEquals("document"u8))
        {
            return Invalid($"{blockPath}: 'document' blocks (PDFs and text documents) are not supported by the chat-completions targets this model is served by.", $"{blockPath}.type");
        }
        if (type.ValueEquals("image"u8))
        {
            return Invalid($"{blockPath}: 'image' blocks are only supported in a user turn's content; the chat-completions targets this model is served by take no images here.", $"{blockPath}.type");
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
        parts.Add(new Part(text.GetString()!, null));
        return null;
    }

    /// <summary>The media types Anthropic accepts in an image block.</summary>
    private static readonly string[] ImageMediaTypes = ["image/jpeg", "image/png", "image/gif", "image/webp"];

    /// <summary>
    /// An <c>image</c> block as an <c>image_url</c> part: a <c>base64</c> source (one of Anthropic's media types, valid
    /// base64) as a <c>data:</c> URL, a <c>url</c> source (absolute http or https) as it is. A <c>file</c> source
    /// (Anthropic's Files API) has nothing to point at here, so it is refused.
    /// </summary>
    private static GatewayError? ReadImage(JsonElement block, string path, List<Part> parts)
    {
        foreach (var property in block.EnumerateObject())
        {
            if (property.Name is not ("type" or "source" or "cache_control"))
            {
                return Invalid($"{path}.{property.Name}: unknown field.", $"{path}.{property.Name}");
            }
        }
        var sourcePath = path + ".source";
        if (!block.TryGetProperty("source", out var source) || source.ValueKind != JsonValueKind.Object
            || !source.TryGetProperty("type", out var sourceType) || sourceType.ValueKind != JsonValueKind.String)
        {
            return Invalid($"{sourcePath}: an object with a 'type' ('base64' or 'url') is required.", sourcePath);
        }
        if (sourceType.ValueEquals("base64"u8))
        {
            foreach (var property in source.EnumerateObject())
            {
                if (property.Name is not ("type" or "media_type" or "data"))
                {
                    return Invalid($"{sourcePath}.{property.Name}: unknown field.", $"{sourcePath}.{property.Name}");
                }
            }
            if (!source.TryGetProperty("media_type", out var mediaType) || mediaType.ValueKind != JsonValueKind.String
                || Array.IndexOf(ImageMediaTypes, mediaType.GetString()) < 0)
            {
                return Invalid($"{sourcePath}.media_type: must be one of {string.Join(", ", ImageMediaTypes.Select(m => $"'{m}'"))}.", $"{sourcePath}.media_type");
            }
            if (!source.TryGetProperty("data", out var data) || data.ValueKind != JsonValueKind.String
                || data.GetString() is not { Length: > 0 } base64 || !System.Buffers.Text.Base64.IsValid(base64))
            {
                return Invalid($"{sourcePath}.data: a non-empty base64 string is required.", $"{sourcePath}.data");
            }
            parts.Add(new Part(null, $"data:{mediaType.GetString()};base64,{base64}"));
            return null;
        }
        if (sourceType.ValueEquals("url"u8))
        {
            foreach (var property in source.EnumerateObject())
            {
                if (property.Name is not ("type" or "url"))
                {
                    return Invalid($"{sourcePath}.{property.Name}: unknown field.", $"{sourcePath}.{property.Name}");
                }
            }
            if (!source.TryGetProperty("url", out var url) || url.ValueKind != JsonValueKind.String
                || !Uri.TryCreate(url.GetString(), UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
            {
                return Invalid($"{sourcePath}.url: an absolute http or https URL is required.", $"{sourcePath}.url");
            }
            parts.Add(new Part(null, url.GetString()));
            return null;
        }
        return Invalid($"{sourcePath}.type: must be 'base64' or 'url' (image sources of type '{sourceType.GetString()}' are not supported by this gateway).", $"{sourcePath}.type");
    }

    /// <summary>A piece of a chat message's content: a text, or an image's URL.</summary>
    private readonly record struct Part(string? Text, string? ImageUrl);

    /// <summary><c>content</c>: one text as a string, anything else as parts (<c>text</c> and <c>image_url</c>).</summary>
    private static void WriteParts(Utf8JsonWriter writer, List<Part> parts)
    {
        if (parts is [{ Text: { } only }])
        {
            writer.WriteString("content", only);
            return;
        }
        writer.WriteStartArray("content");
        foreach (var part in parts)
        {
            writer.WriteStartObject();
            if (part.Text is { } text)
            {
                writer.WriteString("type", "text");
                writer.WriteString("text", text);
            }
            else
            {
                writer.WriteString("type", "image_url");
                writer.WriteStartObject("image_url");
                writer.WriteString("url", part.ImageUrl);
                writer.WriteEndObject();
            }
            writer.WriteEndObject();
        }
        writer.WriteEndArray();
    }

    /// <summary>A <c>tool_use</c> block as a chat tool call: its id, name, and input as a JSON string.</summary>
    private static GatewayError? WriteToolCall(Utf8JsonWriter writer, JsonElement block, string path)
    {
        foreach (var property in block.EnumerateObject())
        {
            if (property.Name is not ("type" or "id" or "name" or "input" or "cache_control"))
            {
                return Invalid($"{path}.{property.Name}: unknown field.", $"{path}.{property.Name}");
            }
        }
        if (RequiredString(block, "id", path, out var id) is { } idError)
        {
            return idError;
        }
        if (RequiredString(block, "name", path, out var name) is { } nameError)
        {
            return nameError;
        }
        if (!block.TryGetProperty("input", out var input) || input.ValueKind != JsonValueKind.Object)
        {
            return Invalid($"{path}.input: an object is required.", $"{path}.input");
        }
        writer.WriteStartObject();
        writer.WriteString("id", id);
        writer.WriteString("type", "function");
        writer.WriteStartObject("function");
        writer.WriteString("name", name);
        writer.WriteString("arguments", Compact(input));
        writer.WriteEndObject();
        writer.WriteEndObject();
        return null;
    }

    /// <summary>
    /// A <c>tool_result</c> block as a <c>tool</c> message: its content (a string, or text blocks joined by newlines),
    /// prefixed with <c>"Error: "</c> when <c>is_error</c> is true — the chat tool message has no error flag.
    /// </summary>
    private static GatewayError? WriteToolResult(Utf8JsonWriter writer, JsonElement block, string path)
    {
        foreach (var property in block.EnumerateObject())
        {
            if (property.Name is not ("type" or "tool_use_id" or "content" or "is_error" or "cache_control"))
            {
                return Invalid($"{path}.{property.Name}: unknown field.", $"{path}.{property.Name}");
            }
        }
        if (RequiredString(block, "tool_use_id", path, out var toolUseId) is { } idError)
        {
            return idError;
        }
        var isError = false;
        if (block.TryGetProperty("is_error", out var isErrorElement) && isErrorElement.ValueKind != JsonValueKind.Null)
        {
            if (isErrorElement.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                return Invalid($"{path}.is_error: must be a boolean.", $"{path}.is_error");
            }
            isError = isErrorElement.ValueKind == JsonValueKind.True;
        }
        var text = "";
        if (block.TryGetProperty("content", out var content) && content.ValueKind != JsonValueKind.Null)
        {
            if (content.ValueKind == JsonValueKind.String)
            {
                text = content.GetString()!;
            }
            else if (content.ValueKind == JsonValueKind.Array)
            {
                var texts = new List<Part>(content.GetArrayLength());
                var j = 0;
                foreach (var inner in content.EnumerateArray())
                {
                    var innerPath = $"{path}.content.{j++}";
                    if (inner.ValueKind != JsonValueKind.Object || !inner.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
                    {
                        return Invalid($"{innerPath}: a content block must be an object with a 'type'.", innerPath);
                    }
                    if (type.ValueEquals("image"u8))
                    {
                        return Invalid($"{innerPath}: images in a tool_result are not supported: the chat-completions tool message this model is served by carries text only.", $"{innerPath}.type");
                    }
                    if (ReadText(inner, innerPath, texts) is { } textError)
                    {
                        return textError;
                    }
                }
                text = string.Join('\n', texts.Select(t => t.Text));
            }
            else
            {
                return Invalid($"{path}.content: must be a string or an array of content blocks.", $"{path}.content");
            }
        }
        writer.WriteStartObject();
        writer.WriteString("role", "tool");
        writer.WriteString("tool_call_id", toolUseId);
        writer.WriteString("content", isError ? "Error: " + text : text);
        writer.WriteEndObject();
        return null;
    }

    /// <summary><c>tools</c> as function tools, <c>tool_choice</c> as the chat's, and parallel calls turned off if asked.</summary>
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
                    if (WriteTool(writer, tool, $"tools.{i++}") is { } error)
                    {
                        return error;
                    }
                }
                writer.WriteEndArray();
            }
        }
        if (!root.TryGetProperty("tool_choice", out var choice) || choice.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        if (choice.ValueKind != JsonValueKind.Object || !choice.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
        {
            return Invalid("tool_choice: must be an object with a 'type'.", "tool_choice");
        }
        var disableParallel = false;
        foreach (var property in choice.EnumerateObject())
        {
            if (property.Name == "disable_parallel_tool_use" && property.Value.ValueKind is JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null)
            {
                disableParallel = property.Value.ValueKind == JsonValueKind.True;
            }
            else if (property.Name == "disable_parallel_tool_use")
            {
                return Invalid("tool_choice.disable_parallel_tool_use: must be a boolean.", "tool_choice.disable_parallel_tool_use");
            }
            else if (property.Name is not ("type" or "name"))
            {
                return Invalid($"tool_choice.{property.Name}: unknown field.", $"tool_choice.{property.Name}");
            }
        }
        switch (type.GetString())
        {
            case var plain when MessagesMapping.ChatToolChoice(plain) is { } chatChoice:
                writer.WriteString("tool_choice", chatChoice);
                break;
            case "tool":
                if (RequiredString(choice, "name", "tool_choice", out var name) is { } nameError)
                {
                    return nameError;
                }
                writer.WriteStartObject("tool_choice");
                writer.WriteString("type", "function");
                writer.WriteStartObject("function");
                writer.WriteString("name", name);
                writer.WriteEndObject();
                writer.WriteEndObject();
                break;
            default:
                return Invalid("tool_choice.type: must be 'auto', 'any', 'tool' or 'none'.", "tool_choice.type");
        }
        if (disableParallel)
        {
            writer.WriteBoolean("parallel_tool_calls", false);
        }
        return null;
    }

    /// <summary>A client tool (<c>name</c>, <c>description</c>, <c>input_schema</c>) as a chat function tool.</summary>
    private static GatewayError? WriteTool(Utf8JsonWriter writer, JsonElement tool, string path)
    {
        if (tool.ValueKind != JsonValueKind.Object)
        {
            return Invalid($"{path}: must be an object.", path);
        }
        foreach (var property in tool.EnumerateObject())
        {
            if (property.Name == "type" && !(property.Value.ValueKind == JsonValueKind.Null || property.Value.ValueEquals("custom"u8)))
            {
                return Invalid($"{path}.type: Anthropic server tools ('{property.Value}') are not supported by the chat-completions targets this model is served by.", $"{path}.type");
            }
            if (property.Name is not ("type" or "name" or "description" or "input_schema" or "cache_control"))
            {
                return Invalid($"{path}.{property.Name}: not supported yet by this gateway's Messages API.", $"{path}.{property.Name}");
            }
        }
        if (RequiredString(tool, "name", path, out var name) is { } nameError)
        {
            return nameError;
        }
        if (!tool.TryGetProperty("input_schema", out var schema) || schema.ValueKind != JsonValueKind.Object)
        {
            return Invalid($"{path}.input_schema: an object is required.", $"{path}.input_schema");
        }
        writer.WriteStartObject();
        writer.WriteString("type", "function");
        writer.WriteStartObject("function");
        writer.WriteString("name", name);
        if (tool.TryGetProperty("description", out var description) && description.ValueKind != JsonValueKind.Null)
        {
            if (description.ValueKind != JsonValueKind.String)
            {
                return Invalid($"{path}.description: must be a string.", $"{path}.description");
            }
            writer.WriteString("description", description.GetString());
        }
        // The client's body may nest up to the reader's limit; one level deeper here, a schema at that limit would make
        // a chat body no JSON reader with the same limit (the upstream's included) accepts.
        if (writer.CurrentDepth + Nesting(schema, MaxChatDepth - writer.CurrentDepth + 1) > MaxChatDepth)
        {
            return Invalid($"{path}.input_schema: nested too deeply (a chat body nests at most {MaxChatDepth} levels).", $"{path}.input_schema");
        }
        writer.WritePropertyName("parameters");
        schema.WriteTo(writer);
        writer.WriteEndObject();
        writer.WriteEndObject();
        return null;
    }

    /// <summary>How deep a chat body may nest: the limit the gateway (and System.Text.Json) reads JSON with.</summary>
    private const int MaxChatDepth = 64;

    /// <summary>How many levels of objects and arrays <paramref name="value"/> nests (1 for a flat one), counted up to <paramref name="limit"/>.</summary>
    private static int Nesting(JsonElement value, int limit)
    {
        if (value.ValueKind is not (JsonValueKind.Object or JsonValueKind.Array))
        {
            return 0;
        }
        var deepest = 0;
        if (limit > 1)
        {
            if (value.ValueKind == JsonValueKind.Object)
            {
                foreach (var property in value.EnumerateObject())
                {
                    deepest = Math.Max(deepest, Nesting(property.Value, limit - 1));
                }
            }
            else
            {
                foreach (var item in value.EnumerateArray())
                {
                    deepest = Math.Max(deepest, Nesting(item, limit - 1));
                }
            }
        }
        return deepest + 1;
    }

    private static GatewayError? RequiredString(JsonElement element, string name, string path, out string value)
    {
        if (element.TryGetProperty(name, out var property) && property.ValueKind == JsonValueKind.String && property.GetString() is { Length: > 0 } text)
        {
            value = text;
            return null;
        }
        value = "";
        return Invalid($"{path}.{name}: a non-empty string is required.", $"{path}.{name}");
    }

    /// <summary>A JSON value as compact JSON text.</summary>
    private static string Compact(JsonElement value)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            value.WriteTo(writer);
        }
        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static GatewayError Invalid(string message, string? param = null) => GatewayError.InvalidRequest(message, param);
}
