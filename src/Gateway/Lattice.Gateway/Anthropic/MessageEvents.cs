using System.Buffers;
using System.Text.Json;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Anthropic;

/// <summary>
/// Writes one assistant Message in Anthropic's shapes: whole (<c>{"type":"message",…}</c>) or as its stream —
/// <c>message_start</c>, <c>content_block_start</c>, <c>ping</c>, <c>content_block_delta</c> (<c>text_delta</c>) …,
/// <c>content_block_stop</c>, <c>message_delta</c> (stop reason and usage), <c>message_stop</c>. A tool call is its own
/// block: <c>content_block_start</c> with an empty <c>input</c>, then <c>input_json_delta</c> fragments of its input.
/// </summary>
/// <remarks>
/// The chat stream reports usage only at its end, so <c>message_start</c> carries zero counts and
/// <c>message_delta</c> the final ones (input tokens included, as Anthropic's own <c>message_delta</c> usage may).
/// </remarks>
public sealed class MessageEvents(string id, string model)
{
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    // Names written on every event, encoded once.
    private static readonly JsonEncodedText TypeName = Name("type");
    private static readonly JsonEncodedText IndexName = Name("index");
    private static readonly JsonEncodedText DeltaName = Name("delta");
    private static readonly JsonEncodedText TextName = Name("text");
    private static readonly JsonEncodedText TextDelta = Name("text_delta");
    private static readonly JsonEncodedText InputJsonDelta = Name("input_json_delta");
    private static readonly JsonEncodedText PartialJsonName = Name("partial_json");
    private static readonly JsonEncodedText MessageStart = Name("message_start");
    private static readonly JsonEncodedText ContentBlockStart = Name("content_block_start");
    private static readonly JsonEncodedText ContentBlockDelta = Name("content_block_delta");
    private static readonly JsonEncodedText ContentBlockStop = Name("content_block_stop");
    private static readonly JsonEncodedText MessageDelta = Name("message_delta");
    private static readonly JsonEncodedText MessageStop = Name("message_stop");
    private static readonly JsonEncodedText PingEvent = Name("ping");

    /// <summary>The open block's index, or -1; whether it is a text block.</summary>
    private int _open = -1;
    private bool _openIsText;
    private int _next;
    private bool _pinged;
    /// <summary>One writer for all of the answer's events, pointed at the output by each <see cref="Begin"/>.</summary>
    private Utf8JsonWriter? _writer;

    public void Start(IBufferWriter<byte> output)
    {
        var w = Begin(output, MessageStart);
        w.WriteStartObject("message");
        WriteHead(w);
        w.WriteStartArray("content");
        w.WriteEndArray();
        w.WriteNull("stop_reason");
        w.WriteNull("stop_sequence");
        WriteUsage(w, default);
        w.WriteEndObject();
        End(output, w);
    }

    /// <summary>A piece of the answer's text (a text block starts with the first one).</summary>
    public void Text(IBufferWriter<byte> output, string text) => Text(output, System.Text.Encoding.UTF8.GetBytes(text));

    /// <summary>A piece of the answer's text, as UTF-8 (a text block starts with the first one).</summary>
    public void Text(IBufferWriter<byte> output, ReadOnlySpan<byte> text)
    {
        if (text.IsEmpty)
        {
            return;
        }
        if (_open < 0 || !_openIsText)
        {
            OpenBlock(output, text: true, null, null);
        }
        Delta(output, TextDelta, TextName, text);
    }

    /// <summary>A tool call starts: its own <c>tool_use</c> block, with an empty input until its fragments arrive.</summary>
    public void ToolStart(IBufferWriter<byte> output, string id, string name) => OpenBlock(output, text: false, id, name);

    /// <summary>A fragment of the open tool call's input JSON.</summary>
    public void ToolInput(IBufferWriter<byte> output, string partialJson) => ToolInput(output, System.Text.Encoding.UTF8.GetBytes(partialJson));

    /// <summary>A fragment of the open tool call's input JSON, as UTF-8.</summary>
    public void ToolInput(IBufferWriter<byte> output, ReadOnlySpan<byte> partialJson)
    {
        if (partialJson.IsEmpty || _open < 0 || _openIsText)
        {
            return;
        }
        Delta(output, InputJsonDelta, PartialJsonName, partialJson);
    }

    /// <summary>A <c>content_block_delta</c> of the open block.</summary>
    private void Delta(IBufferWriter<byte> output, JsonEncodedText type, JsonEncodedText field, ReadOnlySpan<byte> value)
    {
        var w = Begin(output, ContentBlockDelta);
        w.WriteNumber(IndexName, _open);
        w.WriteStartObject(DeltaName);
        w.WriteString(TypeName, type);
        w.WriteString(field, value);
        w.WriteEndObject();
        End(output, w);
    }

    private void OpenBlock(IBufferWriter<byte> output, bool text, string? id, string? name)
    {
        CloseBlock(output);
        _open = _next++;
        _openIsText = text;
        var start = Begin(output, ContentBlockStart);
        start.WriteNumber(IndexName, _open);
        start.WriteStartObject("content_block");
        if (text)
        {
            start.WriteString(TypeName, TextName);
            start.WriteString(TextName, ""u8);
        }
        else
        {
            start.WriteString(TypeName, "tool_use");
            start.WriteString("id", id);
            start.WriteString("name", name);
            start.WriteStartObject("input");
            start.WriteEndObject();
        }
        start.WriteEndObject();
        End(output, start);
        Ping(output);
    }

    private void CloseBlock(IBufferWriter<byte> output)
    {
        if (_open < 0)
        {
            return;
        }
        var stop = Begin(output, ContentBlockStop);
        stop.WriteNumber(IndexName, _open);
        End(output, stop);
        _open = -1;
    }

    /// <summary>The closing events: the text block's stop, the stop reason and usage, the message's stop.</summary>
    public void End(IBufferWriter<byte> output, string stopReason, string? stopSequence, Usage usage)
    {
        CloseBlock(output);
        Ping(output);
        var delta = Begin(output, MessageDelta);
        delta.WriteStartObject(DeltaName);
        WriteStop(delta, stopReason, stopSequence);
        delta.WriteEndObject();
        WriteUsage(delta, usage);
        End(output, delta);
        End(output, Begin(output, MessageStop));
    }

    /// <summary>The whole Message.</summary>
    /// <remarks>Each tool call's arguments must be valid JSON (<see cref="ToolCall.Input"/>); they are written as its input.</remarks>
    public void WriteMessage(IBufferWriter<byte> output, string text, IEnumerable<ToolCall> tools, string stopReason, string? stopSequence, Usage usage)
    {
        using var w = new Utf8JsonWriter(output, WriterOptions);
        w.WriteStartObject();
        WriteHead(w);
        w.WriteStartArray("content");
        if (text.Length > 0)
        {
            w.WriteStartObject();
            w.WriteString("type", "text");
            w.WriteString("text", text);
            w.WriteEndObject();
        }
        foreach (var tool in tools)
        {
            w.WriteStartObject();
            w.WriteString("type", "tool_use");
            w.WriteString("id", tool.Id);
            w.WriteString("name", tool.Name);
            w.WritePropertyName("input");
            w.WriteRawValue(tool.Input.Length == 0 ? "{}" : tool.Input.ToString());
            w.WriteEndObject();
        }
        w.WriteEndArray();
        WriteStop(w, stopReason, stopSequence);
        WriteUsage(w, usage);
        w.WriteEndObject();
    }

    private void Ping(IBufferWriter<byte> output)
    {
        if (_pinged)
        {
            return;
        }
        _pinged = true;
        End(output, Begin(output, PingEvent));
    }

    private void WriteHead(Utf8JsonWriter w)
    {
        w.WriteString("id", id);
        w.WriteString(TypeName, "message");
        w.WriteString("role", "assistant");
        w.WriteString("model", model);
    }

    private static void WriteStop(Utf8JsonWriter w, string stopReason, string? stopSequence)
    {
        w.WriteString("stop_reason", stopReason);
        if (stopSequence is null)
        {
            w.WriteNull("stop_sequence");
        }
        else
        {
            w.WriteString("stop_sequence", stopSequence);
        }
    }

    /// <summary>Anthropic counts cache reads apart from <c>input_tokens</c>; the chat usage counts them inside the prompt.</summary>
    private static void WriteUsage(Utf8JsonWriter w, Usage usage)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("input_tokens", Math.Max(0, usage.PromptTokens - usage.CachedTokens));
        w.WriteNumber("cache_creation_input_tokens", 0);
        w.WriteNumber("cache_read_input_tokens", usage.CachedTokens);
        w.WriteNumber("output_tokens", usage.CompletionTokens);
        w.WriteEndObject();
    }

    /// <summary><c>event: NAME</c>, then a <c>data:</c> object whose <c>type</c> is the name; the caller writes the rest.</summary>
    private Utf8JsonWriter Begin(IBufferWriter<byte> output, JsonEncodedText name)
    {
        output.Write("event: "u8);
        output.Write(name.EncodedUtf8Bytes);
        output.Write("\ndata: "u8);
        var w = _writer;
        if (w is null)
        {
            _writer = w = new Utf8JsonWriter(output, WriterOptions);
        }
        else
        {
            w.Reset(output);
        }
        w.WriteStartObject();
        w.WriteString(TypeName, name);
        return w;
    }

    private static void End(IBufferWriter<byte> output, Utf8JsonWriter w)
    {
        w.WriteEndObject();
        w.Flush();
        output.Write("\n\n"u8);
    }

    private static JsonEncodedText Name(string name) => JsonEncodedText.Encode(name, WriterOptions.Encoder);
}

/// <summary>A tool call of the answer: its <c>toolu_</c> id, its name, and its input JSON as received so far.</summary>
public sealed record ToolCall(string Id, string Name)
{
    public System.Text.StringBuilder Input { get; } = new();

    /// <summary>
    /// The <c>tool_use</c> id for a chat tool call id: kept when it already starts with <c>toolu_</c>, else <c>toolu_</c>
    /// and the id's own part (what follows <c>call_</c>).
    /// </summary>
    public static string IdFor(string callId) => callId.StartsWith("toolu_", StringComparison.Ordinal) ? callId
        : "toolu_" + (callId.StartsWith("call_", StringComparison.Ordinal) ? callId[5..] : callId);
}
