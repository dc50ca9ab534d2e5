using System.Buffers;
using System.Text;
using System.Text.Json;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Responses;

/// <summary>
/// One Response being built from a chat answer, and its two renderings: the Response object, and — when
/// <see cref="Live"/> — its stream, written as the parts arrive: <c>response.output_item.added</c>,
/// <c>response.content_part.added</c>, <c>response.output_text.delta</c> (or <c>response.refusal.delta</c>) …
/// <c>response.output_text.done</c>, <c>response.content_part.done</c>, <c>response.output_item.done</c>; a function call
/// is its own item with <c>response.function_call_arguments.delta</c> / <c>.done</c>. Every event carries its
/// <c>sequence_number</c>, counted from 0 at <c>response.created</c>.
/// </summary>
public sealed class ResponseOutput(string id, long createdAt, ResponsesRequest.Translated request)
{
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly List<Item> _items = [];
    /// <summary>Function call items by the chat's tool call index.</summary>
    private readonly Dictionary<int, Item> _calls = [];
    private readonly string _suffix = id.StartsWith("resp_", StringComparison.Ordinal) ? id[5..] : id;
    private int _sequence;
    private IBufferWriter<byte>? _live;

    public string Id => id;

    /// <summary>Where events go while the answer streams; null while a whole answer is gathered.</summary>
    public IBufferWriter<byte>? Live
    {
        get => _live;
        set => _live = value;
    }

    /// <summary>The first two events: <c>response.created</c> and <c>response.in_progress</c>.</summary>
    public void Start(IBufferWriter<byte> output)
    {
        foreach (var name in (ReadOnlySpan<string>)["response.created", "response.in_progress"])
        {
            using var w = Begin(output, name);
            w.WritePropertyName("response");
            WriteResponse(w, "in_progress", null, null, null, null);
            End(output, w);
        }
    }

    public void Text(string text) => Append(text, refusal: false);

    public void Refusal(string text) => Append(text, refusal: true);

    public void ToolCallStarted(int index, string callId, string name)
    {
        CloseOpen();
        var item = new Item($"fc_{_suffix}_{_items.Count}", Call: true) { CallId = callId, Name = name };
        _items.Add(item);
        _calls[index] = item;
        if (_live is { } output)
        {
            using var w = Begin(output, "response.output_item.added");
            w.WriteNumber("output_index", _items.Count - 1);
            w.WritePropertyName("item");
            WriteItem(w, item);
            End(output, w);
        }
    }

    public void ToolCallArguments(int index, string fragment)
    {
        if (!_calls.TryGetValue(index, out var item))
        {
            return;
        }
        item.Arguments.Append(fragment);
        if (_live is { } output)
        {
            using var w = Begin(output, "response.function_call_arguments.delta");
            w.WriteString("item_id", item.Id);
            w.WriteNumber("output_index", _items.IndexOf(item));
            w.WriteString("delta", fragment);
            End(output, w);
        }
    }

    /// <summary>Ends every open item (their <c>.done</c> events when live).</summary>
    public void CloseOpen()
    {
        for (var i = 0; i < _items.Count; i++)
        {
            var item = _items[i];
            if (item.Done)
            {
                continue;
            }
            item.Done = true;
            if (_live is not { } output)
            {
                continue;
            }
            if (item.Call)
            {
                using var w = Begin(output, "response.function_call_arguments.done");
                w.WriteString("item_id", item.Id);
                w.WriteString("name", item.Name);
                w.WriteNumber("output_index", i);
                w.WriteString("arguments", item.Arguments.ToString());
                End(output, w);
            }
            else
            {
                for (var p = 0; p < item.Parts.Count; p++)
                {
                    var part = item.Parts[p];
                    using (var w = Begin(output, part.Refusal ? "response.refusal.done" : "response.output_text.done"))
                    {
                        WritePartPosition(w, item, i, p);
                        w.WriteString(part.Refusal ? "refusal" : "text", part.Text.ToString());
                        if (!part.Refusal)
                        {
                            w.WriteStartArray("logprobs");
                            w.WriteEndArray();
                        }
                        End(output, w);
                    }
                    using (var w = Begin(output, "response.content_part.done"))
                    {
                        WritePartPosition(w, item, i, p);
                        w.WritePropertyName("part");
                        WritePart(w, part);
                        End(output, w);
                    }
                }
            }
            using (var w = Begin(output, "response.output_item.done"))
            {
                w.WriteNumber("output_index", i);
                w.WritePropertyName("item");
                WriteItem(w, item);
                End(output, w);
            }
        }
    }

    /// <summary>The closing event: <c>response.completed</c>, or <c>response.incomplete</c> with the reason.</summary>
    public void End(IBufferWriter<byte> output, string? incompleteReason, Usage usage, long completedAt)
    {
        EnsureOutput();
        CloseOpen();
        using var w = Begin(output, incompleteReason is null ? "response.completed" : "response.incomplete");
        w.WritePropertyName("response");
        WriteResponse(w, incompleteReason is null ? "completed" : "incomplete", incompleteReason, usage, completedAt, null);
        End(output, w);
    }

    /// <summary>A stream that broke: <c>response.failed</c>, the Response with its error.</summary>
    public void Fail(IBufferWriter<byte> output, string message)
    {
        using var w = Begin(output, "response.failed");
        w.WritePropertyName("response");
        WriteResponse(w, "failed", null, null, null, message);
        End(output, w);
    }

    /// <summary>The whole Response object.</summary>
    public byte[] Render(string? incompleteReason, Usage usage, long completedAt)
    {
        EnsureOutput();
        CloseOpen();
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            WriteResponse(w, incompleteReason is null ? "completed" : "incomplete", incompleteReason, usage, completedAt, null);
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>The output items as a JSON array, for the stored conversation.</summary>
    public byte[] RenderItems()
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            WriteItems(w);
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>An answer with nothing in it is still one message, of empty text, as clients read <c>output[0]</c>.</summary>
    private void EnsureOutput()
    {
        if (_items.Count == 0)
        {
            Append("", refusal: false);
        }
    }

    private void Append(string text, bool refusal)
    {
        var item = _items.Count > 0 ? _items[^1] : null;
        if (item is null || item.Call || item.Done)
        {
            CloseOpen();
            item = new Item($"msg_{_suffix}" + (_items.Count == 0 ? "" : $"_{_items.Count}"), Call: false);
            _items.Add(item);
            if (_live is { } added)
            {
                using var w = Begin(added, "response.output_item.added");
                w.WriteNumber("output_index", _items.Count - 1);
                w.WritePropertyName("item");
                WriteItem(w, item);
                End(added, w);
            }
        }
        var part = item.Parts.Count > 0 ? item.Parts[^1] : null;
        if (part is null || part.Refusal != refusal)
        {
            part = new Part(refusal);
            item.Parts.Add(part);
            if (_live is { } added)
            {
                using var w = Begin(added, "response.content_part.added");
                WritePartPosition(w, item, _items.Count - 1, item.Parts.Count - 1);
                w.WritePropertyName("part");
                WritePart(w, new Part(refusal));
                End(added, w);
            }
        }
        part.Text.Append(text);
        if (_live is { } output && text.Length > 0)
        {
            using var w = Begin(output, refusal ? "response.refusal.delta" : "response.output_text.delta");
            WritePartPosition(w, item, _items.Count - 1, item.Parts.Count - 1);
            w.WriteString("delta", text);
            if (!refusal)
            {
                w.WriteStartArray("logprobs");
                w.WriteEndArray();
            }
            End(output, w);
        }
    }

    private static void WritePartPosition(Utf8JsonWriter w, Item item, int outputIndex, int contentIndex)
    {
        w.WriteString("item_id", item.Id);
        w.WriteNumber("output_index", outputIndex);
        w.WriteNumber("content_index", contentIndex);
    }

    private void WriteResponse(Utf8JsonWriter w, string status, string? incompleteReason, Usage? usage, long? completedAt, string? error)
    {
        var echo = request.Echo;
        w.WriteStartObject();
        w.WriteString("id", id);
        w.WriteString("object", "response");
        w.WriteNumber("created_at", createdAt);
        w.WriteString("status", status);
        if (completedAt is { } completed)
        {
            w.WriteNumber("completed_at", completed);
        }
        else
        {
            w.WriteNull("completed_at");
        }
        if (error is null)
        {
            w.WriteNull("error");
        }
        else
        {
            w.WriteStartObject("error");
            w.WriteString("code", "server_error");
            w.WriteString("message", error);
            w.WriteEndObject();
        }
        if (incompleteReason is null)
        {
            w.WriteNull("incomplete_details");
        }
        else
        {
            w.WriteStartObject("incomplete_details");
            w.WriteString("reason", incompleteReason);
            w.WriteEndObject();
        }
        Raw(w, "instructions", echo.Instructions, null);
        Raw(w, "max_output_tokens", echo.MaxOutputTokens, null);
        w.WriteString("model", request.Model);
        w.WritePropertyName("output");
        if (status == "in_progress" || status == "failed")
        {
            w.WriteStartArray();
            w.WriteEndArray();
        }
        else
        {
            WriteItems(w);
        }
        Raw(w, "parallel_tool_calls", echo.ParallelToolCalls, "true");
        if (request.PreviousResponseId is { } previous)
        {
            w.WriteString("previous_response_id", previous);
        }
        else
        {
            w.WriteNull("previous_response_id");
        }
        w.WriteStartObject("reasoning");
        w.WriteNull("effort");
        w.WriteNull("summary");
        w.WriteEndObject();
        w.WriteBoolean("store", request.Store);
        Raw(w, "temperature", echo.Temperature, "1.0");
        Raw(w, "text", echo.Text, """{"format":{"type":"text"}}""");
        Raw(w, "tool_choice", echo.ToolChoice, "\"auto\"");
        Raw(w, "tools", echo.Tools, "[]");
        Raw(w, "top_p", echo.TopP, "1.0");
        w.WriteString("truncation", "disabled");
        if (usage is { } u)
        {
            w.WriteStartObject("usage");
            w.WriteNumber("input_tokens", u.PromptTokens);
            w.WriteStartObject("input_tokens_details");
            w.WriteNumber("cached_tokens", u.CachedTokens);
            w.WriteNumber("cache_write_tokens", 0);
            w.WriteEndObject();
            w.WriteNumber("output_tokens", u.CompletionTokens);
            w.WriteStartObject("output_tokens_details");
            w.WriteNumber("reasoning_tokens", 0);
            w.WriteEndObject();
            w.WriteNumber("total_tokens", u.PromptTokens + u.CompletionTokens);
            w.WriteEndObject();
        }
        else
        {
            w.WriteNull("usage");
        }
        Raw(w, "user", echo.User, null);
        Raw(w, "metadata", echo.Metadata, "{}");
        w.WriteEndObject();
    }

    private void WriteItems(Utf8JsonWriter w)
    {
        w.WriteStartArray();
        foreach (var item in _items)
        {
            WriteItem(w, item);
        }
        w.WriteEndArray();
    }

    private static void WriteItem(Utf8JsonWriter w, Item item)
    {
        w.WriteStartObject();
        w.WriteString("id", item.Id);
        if (item.Call)
        {
            w.WriteString("type", "function_call");
            w.WriteString("status", item.Done ? "completed" : "in_progress");
            w.WriteString("arguments", item.Done ? item.Arguments.ToString() : "");
            w.WriteString("call_id", item.CallId);
            w.WriteString("name", item.Name);
        }
        else
        {
            w.WriteString("type", "message");
            w.WriteString("status", item.Done ? "completed" : "in_progress");
            w.WriteString("role", "assistant");
            w.WriteStartArray("content");
            if (item.Done)
            {
                foreach (var part in item.Parts)
                {
                    WritePart(w, part);
                }
            }
            w.WriteEndArray();
        }
        w.WriteEndObject();
    }

    private static void WritePart(Utf8JsonWriter w, Part part)
    {
        w.WriteStartObject();
        if (part.Refusal)
        {
            w.WriteString("type", "refusal");
            w.WriteString("refusal", part.Text.ToString());
        }
        else
        {
            w.WriteString("type", "output_text");
            w.WriteStartArray("annotations");
            w.WriteEndArray();
            w.WriteStartArray("logprobs");
            w.WriteEndArray();
            w.WriteString("text", part.Text.ToString());
        }
        w.WriteEndObject();
    }

    private static void Raw(Utf8JsonWriter w, string name, string? json, string? fallback)
    {
        w.WritePropertyName(name);
        if ((json ?? fallback) is { } value)
        {
            w.WriteRawValue(value, skipInputValidation: true);
        }
        else
        {
            w.WriteNullValue();
        }
    }

    private Utf8JsonWriter Begin(IBufferWriter<byte> output, string name)
    {
        output.Write("event: "u8);
        Encoding.UTF8.GetBytes(name, output);
        output.Write("\ndata: "u8);
        var w = new Utf8JsonWriter(output, WriterOptions);
        w.WriteStartObject();
        w.WriteString("type", name);
        w.WriteNumber("sequence_number", _sequence++);
        return w;
    }

    private static void End(IBufferWriter<byte> output, Utf8JsonWriter w)
    {
        w.WriteEndObject();
        w.Flush();
        output.Write("\n\n"u8);
    }

    /// <summary>An output item: a message of text / refusal parts, or a function call.</summary>
    private sealed record Item(string Id, bool Call)
    {
        public bool Done { get; set; }
        public List<Part> Parts { get; } = [];
        public string CallId { get; init; } = "";
        public string Name { get; init; } = "";
        public StringBuilder Arguments { get; } = new();
    }

    private sealed record Part(bool Refusal)
    {
        public StringBuilder Text { get; } = new();
    }
}
