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

    /// <summary>The open block's index, or -1; whether it is a text block.</summary>
    private int _open = -1;
    private bool _openIsText;
    private int _next;
    private bool _pinged;

    public void Start(IBufferWriter<byte> output)
    {
        using var w = Begin(output, "message_start");
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
    public void Text(IBufferWriter<byte> output, string text)
    {
        if (text.Length == 0)
        {
            return;
        }
        if (_open < 0 || !_openIsText)
        {
            OpenBlock(output, text: true, null, null);
        }
        using var w = Begin(output, "content_block_delta");
        w.WriteNumber("index", _open);
        w.WriteStartObject("delta");
        w.WriteString("type", "text_delta");
        w.WriteString("text", text);
        w.WriteEndObject();
        End(output, w);
    }

    /// <summary>A tool call starts: its own <c>tool_use</c> block, with an empty input until its fragments arrive.</summary>
    public void ToolStart(IBufferWriter<byte> output, string id, string name) => OpenBlock(output, text: false, id, name);

    /// <summary>A fragment of the open tool call's input JSON.</summary>
    public void ToolInput(IBufferWriter<byte> output, string partialJson)
    {
        if (partialJson.Length == 0 || _open < 0 || _openIsText)
        {
            return;
        }
        using var w = Begin(output, "content_block_delta");
        w.WriteNumber("index", _open);
        w.WriteStartObject("delta");
        w.WriteString("type", "input_json_delta");
        w.WriteString("partial_json", partialJson);
        w.WriteEndObject();
        End(output, w);
    }

    private void OpenBlock(IBufferWriter<byte> output, bool text, string? id, string? name)
    {
        CloseBlock(output);
        _open = _next++;
        _openIsText = text;
        using (var start = Begin(output, "content_block_start"))
        {
            start.WriteNumber("index", _open);
            start.WriteStartObject("content_block");
            if (text)
            {
                start.WriteString("type", "text");
                start.WriteString("text", "");
            }
            else
            {
                start.WriteString("type", "tool_use");
                start.WriteString("id", id);
                start.WriteString("name", name);
                start.WriteStartObject("input");
                start.WriteEndObject();
            }
            start.WriteEndObject();
            End(output, start);
        }
        Ping(output);
    }

    private void CloseBlock(IBufferWriter<byte> output)
    {
        if (_open < 0)
        {
            return;
        }
        using var stop = Begin(output, "content_block_stop");
        stop.WriteNumber("index", _open);
        End(output, stop);
        _open = -1;
    }

    /// <summary>The closing events: the text block's stop, the stop reason and usage, the message's stop.</summary>
    public void End(IBufferWriter<byte> output, string stopReason, string? stopSequence, Usage usage)
    {
        CloseBlock(output);
        Ping(output);
        using (var delta = Begin(output, "message_delta"))
        {
            delta.WriteStartObject("delta");
            WriteStop(delta, stopReason, stopSequence);
            delta.WriteEndObject();
            WriteUsage(delta, usage);
            End(output, delta);
        }
        using var end = Begin(output, "message_stop");
        End(output, end);
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
        using var w = Begin(output, "ping");
        End(output, w);
    }

    private void WriteHead(Utf8JsonWriter w)
    {
        w.WriteString("id", id);
        w.WriteString("type", "message");
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
    private static Utf8JsonWriter Begin(IBufferWriter<byte> output, string name)
    {
        output.Write("event: "u8);
        System.Text.EncodingExtensions.GetBytes(System.Text.Encoding.UTF8, name, output);
        output.Write("\ndata: "u8);
        var w = new Utf8JsonWriter(output, WriterOptions);
        w.WriteStartObject();
        w.WriteString("type", name);
        return w;
    }

    private static void End(IBufferWriter<byte> output, Utf8JsonWriter w)
    {
        w.WriteEndObject();
        w.Flush();
        output.Write("\n\n"u8);
    }
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
