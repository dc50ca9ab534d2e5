using System.Buffers;
using System.Text.Json;
using Lattice.Gateway.OpenAi;
using Lattice.Protocol;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Anthropic;

/// <summary>
/// An Anthropic upstream's answer translated for a chat-completions client: the reverse of <see cref="MessagesSink"/>.
/// A Message becomes a <c>chat.completion</c>; its stream becomes <c>chat.completion.chunk</c> events ending with
/// <c>data: [DONE]</c>; an error envelope becomes OpenAI's.
/// </summary>
/// <remarks>
/// Usage is told in chat's terms (<c>prompt_tokens</c> counts cache reads and writes, as <see cref="UsageReader"/> reads
/// Anthropic's usage), so the relay meters a translated answer exactly as a native one.
/// </remarks>
public static class MessagesToChat
{
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>A whole Message as a <c>chat.completion</c>; null when the bytes are not a Message.</summary>
    public static byte[]? Completion(ReadOnlySpan<byte> message, long created)
    {
        try
        {
            var reader = new Utf8JsonReader(message);
            using var document = JsonDocument.ParseValue(ref reader);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("type", out var type) || !type.ValueEquals("message"u8)
                || !root.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.Array)
            {
                return null;
            }
            var text = new System.Text.StringBuilder();
            var buffer = new ArrayBufferWriter<byte>(message.Length + 256);
            using (var w = new Utf8JsonWriter(buffer, WriterOptions))
            {
                w.WriteStartObject();
                w.WriteString("id", String(root, "id"));
                w.WriteString("object", "chat.completion");
                w.WriteNumber("created", created);
                w.WriteString("model", String(root, "model"));
                w.WriteStartArray("choices");
                w.WriteStartObject();
                w.WriteNumber("index", 0);
                w.WriteStartObject("message");
                w.WriteString("role", "assistant");
                var calls = 0;
                foreach (var block in content.EnumerateArray())
                {
                    if (block.TryGetProperty("type", out var blockType) && blockType.ValueEquals("text"u8))
                    {
                        text.Append(String(block, "text"));
                    }
                }
                if (text.Length == 0)
                {
                    w.WriteNull("content");
                }
                else
                {
                    w.WriteString("content", text.ToString());
                }
                w.WriteNull("refusal");
                foreach (var block in content.EnumerateArray())
                {
                    if (!block.TryGetProperty("type", out var blockType) || !blockType.ValueEquals("tool_use"u8))
                    {
                        continue;
                    }
                    if (calls++ == 0)
                    {
                        w.WriteStartArray("tool_calls");
                    }
                    w.WriteStartObject();
                    w.WriteString("id", String(block, "id"));
                    w.WriteString("type", "function");
                    w.WriteStartObject("function");
                    w.WriteString("name", String(block, "name"));
                    w.WriteString("arguments", block.TryGetProperty("input", out var input) ? input.GetRawText() : "{}");
                    w.WriteEndObject();
                    w.WriteEndObject();
                }
                if (calls > 0)
                {
                    w.WriteEndArray();
                }
                w.WriteEndObject();
                w.WriteNull("logprobs");
                w.WriteString("finish_reason", MessagesMapping.FinishReasonFor(root.TryGetProperty("stop_reason", out var stop) && stop.ValueKind == JsonValueKind.String ? stop.GetString() : null));
                w.WriteEndObject();
                w.WriteEndArray();
                WriteUsage(w, ReadUsage(message, "usage"));
                w.WriteEndObject();
            }
            return buffer.WrittenSpan.ToArray();
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>
    /// An Anthropic error envelope (<c>{"type":"error","error":{"type","message"}}</c>) as OpenAI's, keeping Anthropic's
    /// error type; null when the bytes are not one.
    /// </summary>
    public static byte[]? ErrorEnvelope(ReadOnlySpan<byte> body, int status) =>
        ReadError(body, status) is { } error ? OpenAiErrors.Serialize(error) : null;

    private static GatewayError? ReadError(ReadOnlySpan<byte> body, int status)
    {
        try
        {
            var reader = new Utf8JsonReader(body);
            using var document = JsonDocument.ParseValue(ref reader);
            return document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty("error", out var error)
                ? ErrorOf(error, status)
                : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static GatewayError? ErrorOf(JsonElement error, int status) =>
        error.ValueKind == JsonValueKind.Object && error.TryGetProperty("message", out var message) && message.ValueKind == JsonValueKind.String
            ? new GatewayError(status, String(error, "type") is { Length: > 0 } type ? type : ErrorTypes.Api, null, message.GetString()!)
            : null;

    /// <summary>The usage object at <paramref name="path"/> of a JSON document, in the gateway's terms (the one reader the relay meters with).</summary>
    internal static Usage ReadUsage(ReadOnlySpan<byte> json, string path) =>
        UsageReader.TryRead(json, path, Catalog.MeteringUnits.Tokens, out var read) ? read : default;

    /// <summary>Chat's usage object: prompt (cache reads and writes included), completion, total, and the cached part.</summary>
    private static void WriteUsage(Utf8JsonWriter w, Usage usage)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", usage.PromptTokens);
        w.WriteNumber("completion_tokens", usage.CompletionTokens);
        w.WriteNumber("total_tokens", usage.PromptTokens + usage.CompletionTokens);
        w.WriteStartObject("prompt_tokens_details");
        w.WriteNumber("cached_tokens", usage.CachedTokens);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static string String(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString()! : "";

    /// <summary>
    /// A Messages stream translated event by event as it arrives: <c>message_start</c> → the role chunk, text and
    /// <c>input_json_delta</c> deltas → content and tool call argument chunks, <c>message_stop</c> → the finish chunk, the
    /// usage chunk and <c>data: [DONE]</c>. An <c>error</c> event becomes OpenAI's in-stream error (and no <c>[DONE]</c>).
    /// </summary>
    /// <param name="withUsage">
    /// Write chat's <c>stream_options.include_usage</c> shape: <c>"usage":null</c> on every chunk and a usage chunk with
    /// no choices before <c>[DONE]</c> — what the client asked for, or what the relay meters and takes out again.
    /// </param>
    public sealed class Stream(long created, bool withUsage)
    {
        private readonly ArrayBufferWriter<byte> _line = new(1024);
        private string _id = "";
        private string _model = "";
        private readonly MessageStreamUsage _usage = new();
        /// <summary>Tool call ordinal by content block index.</summary>
        private readonly Dictionary<int, int> _tools = [];
        private string? _stopReason;

        /// <summary>The Messages stream ended with <c>message_stop</c> (and <c>[DONE]</c> was written).</summary>
        public bool Completed { get; private set; }

        /// <summary>Translates every whole line of <paramref name="received"/> (a partial one waits for the next bytes).</summary>
        public void Push(ReadOnlySpan<byte> received, IBufferWriter<byte> output)
        {
            while (received.Length > 0)
            {
                var newline = received.IndexOf((byte)'\n');
                if (newline < 0)
                {
                    _line.Write(received);
                    return;
                }
                if (_line.WrittenCount > 0)
                {
                    _line.Write(received[..newline]);
                    Line(_line.WrittenSpan, output);
                    _line.ResetWrittenCount();
                }
                else
                {
                    Line(received[..newline], output);
                }
                received = received[(newline + 1)..];
            }
        }

        /// <summary>The end of the upstream's body: a last line without its newline is still read.</summary>
        public void Finish(IBufferWriter<byte> output)
        {
            if (_line.WrittenCount > 0)
            {
                Line(_line.WrittenSpan, output);
                _line.ResetWrittenCount();
            }
        }

        private void Line(ReadOnlySpan<byte> line, IBufferWriter<byte> output)
        {
            line = line.TrimEnd((byte)'\r');
            // The event's type is also the data's "type"; event: lines, blank lines and pings carry nothing else.
            if (Completed || !line.StartsWith("data:"u8))
            {
                return;
            }
            try
            {
                var json = line[5..].TrimStart((byte)' ');
                var reader = new Utf8JsonReader(json);
                using var document = JsonDocument.ParseValue(ref reader);
                Event(document.RootElement, json, output);
            }
            catch (JsonException)
            {
                // Not an event this translation knows; the stream's end decides whether the answer was whole.
            }
        }

        private void Event(JsonElement data, ReadOnlySpan<byte> json, IBufferWriter<byte> output)
        {
            if (data.ValueKind != JsonValueKind.Object || !data.TryGetProperty("type", out var type))
            {
                return;
            }
            switch (type.GetString())
            {
                case "message_start" when data.TryGetProperty("message", out var message):
                    _id = String(message, "id");
                    _model = String(message, "model");
                    _usage.Start(ReadUsage(json, "message.usage"));
                    using (var w = Chunk(output))
                    {
                        w.WriteString("role", "assistant");
                        w.WriteString("content", "");
                        w.WriteNull("refusal");
                        EndChunk(output, w, null);
                    }
                    break;
                case "content_block_start" when data.TryGetProperty("content_block", out var block):
                    var index = Index(data);
                    if (block.TryGetProperty("type", out var blockType) && blockType.ValueEquals("tool_use"u8))
                    {
                        var ordinal = _tools.Count;
                        _tools[index] = ordinal;
                        using var w = Chunk(output);
                        w.WriteStartArray("tool_calls");
                        w.WriteStartObject();
                        w.WriteNumber("index", ordinal);
                        w.WriteString("id", String(block, "id"));
                        w.WriteString("type", "function");
                        w.WriteStartObject("function");
                        w.WriteString("name", String(block, "name"));
                        w.WriteString("arguments", "");
                        w.WriteEndObject();
                        w.WriteEndObject();
                        w.WriteEndArray();
                        EndChunk(output, w, null);
                    }
                    else if (String(block, "text") is { Length: > 0 } initial)
                    {
                        Text(output, initial);
                    }
                    break;
                case "content_block_delta" when data.TryGetProperty("delta", out var delta):
                    if (String(delta, "type") == "text_delta")
                    {
                        Text(output, String(delta, "text"));
                    }
                    else if (String(delta, "type") == "input_json_delta" && _tools.TryGetValue(Index(data), out var call)
                        && String(delta, "partial_json") is { Length: > 0 } fragment)
                    {
                        using var w = Chunk(output);
                        w.WriteStartArray("tool_calls");
                        w.WriteStartObject();
                        w.WriteNumber("index", call);
                        w.WriteStartObject("function");
                        w.WriteString("arguments", fragment);
                        w.WriteEndObject();
                        w.WriteEndObject();
                        w.WriteEndArray();
                        EndChunk(output, w, null);
                    }
                    break;
                case "message_delta":
                    if (data.TryGetProperty("delta", out var messageDelta) && messageDelta.TryGetProperty("stop_reason", out var stop) && stop.ValueKind == JsonValueKind.String)
                    {
                        _stopReason = stop.GetString();
                    }
                    _usage.Delta(ReadUsage(json, "usage"));
                    break;
                case "message_stop":
                    using (var w = Chunk(output))
                    {
                        EndChunk(output, w, MessagesMapping.FinishReasonFor(_stopReason));
                    }
                    if (withUsage)
                    {
                        using var w = Begin(output);
                        w.WriteEndArray();
                        WriteUsage(w, _usage.Total);
                        w.WriteEndObject();
                        w.Flush();
                        output.Write("\n\n"u8);
                    }
                    output.Write("data: [DONE]\n\n"u8);
                    Completed = true;
                    break;
                case "error":
                    var error = data.TryGetProperty("error", out var e) ? ErrorOf(e, StatusCodes.Status502BadGateway) : null;
                    output.Write(OpenAiErrors.SseEvent(error ?? GatewayError.UpstreamFailed("The model's provider failed in the middle of the answer.")));
                    break;
            }
        }

        private static int Index(JsonElement data) => data.TryGetProperty("index", out var index) && index.TryGetInt32(out var i) ? i : -1;

        private void Text(IBufferWriter<byte> output, string text)
        {
            if (text.Length == 0)
            {
                return;
            }
            using var w = Chunk(output);
            w.WriteString("content", text);
            EndChunk(output, w, null);
        }

        /// <summary><c>data: {"id",…,"choices":[</c> — the head every chunk shares.</summary>
        private Utf8JsonWriter Begin(IBufferWriter<byte> output)
        {
            output.Write("data: "u8);
            var w = new Utf8JsonWriter(output, WriterOptions);
            w.WriteStartObject();
            w.WriteString("id", _id);
            w.WriteString("object", "chat.completion.chunk");
            w.WriteNumber("created", created);
            w.WriteString("model", _model);
            w.WriteStartArray("choices");
            return w;
        }

        /// <summary>A chunk of one choice, open at its <c>delta</c>.</summary>
        private Utf8JsonWriter Chunk(IBufferWriter<byte> output)
        {
            var w = Begin(output);
            w.WriteStartObject();
            w.WriteNumber("index", 0);
            w.WriteStartObject("delta");
            return w;
        }

        private void EndChunk(IBufferWriter<byte> output, Utf8JsonWriter w, string? finishReason)
        {
            w.WriteEndObject();
            w.WriteNull("logprobs");
            if (finishReason is null)
            {
                w.WriteNull("finish_reason");
            }
            else
            {
                w.WriteString("finish_reason", finishReason);
            }
            w.WriteEndObject();
            w.WriteEndArray();
            if (withUsage)
            {
                // Last, so that the relay's filter can take it out again without parsing the chunk.
                w.WriteNull("usage");
            }
            w.WriteEndObject();
            w.Flush();
            output.Write("\n\n"u8);
        }
    }
}

/// <summary>
/// A Messages stream's usage: <c>message_start</c> gives the input (and cache) counts, <c>message_delta</c> the output
/// so far (and, in newer API versions, the input again). Read the same way whether the stream is relayed or translated.
/// </summary>
public sealed class MessageStreamUsage
{
    private Usage _start;
    private Usage? _delta;

    public void Start(Usage usage) => _start = usage;

    public void Delta(Usage usage) => _delta = usage;

    /// <summary>The counts as a whole Message would give them.</summary>
    public Usage Total
    {
        get
        {
            var prompt = Math.Max(_start.PromptTokens, _delta?.PromptTokens ?? 0);
            var completion = _delta?.CompletionTokens ?? _start.CompletionTokens;
            return new Usage(prompt, completion, prompt + completion, Math.Max(_start.CachedTokens, _delta?.CachedTokens ?? 0));
        }
    }
}
