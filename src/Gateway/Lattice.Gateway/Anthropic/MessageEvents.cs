using System.Buffers;
using System.Text.Json;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Anthropic;

/// <summary>
/// Writes one assistant Message in Anthropic's shapes: whole (<c>{"type":"message",…}</c>) or as its stream —
/// <c>message_start</c>, <c>content_block_start</c>, <c>ping</c>, <c>content_block_delta</c> (<c>text_delta</c>) …,
/// <c>content_block_stop</c>, <c>message_delta</c> (stop reason and usage), <c>message_stop</c>.
/// </summary>
/// <remarks>
/// The chat stream reports usage only at its end, so <c>message_start</c> carries zero counts and
/// <c>message_delta</c> the final ones (input tokens included, as Anthropic's own <c>message_delta</c> usage may).
/// </remarks>
public sealed class MessageEvents(string id, string model)
{
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private bool _blockOpen;
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

    /// <summary>A piece of the answer's text (the text block starts with the first one).</summary>
    public void Text(IBufferWriter<byte> output, string text)
    {
        if (text.Length == 0)
        {
            return;
        }
        if (!_blockOpen)
        {
            _blockOpen = true;
            using (var start = Begin(output, "content_block_start"))
            {
                start.WriteNumber("index", 0);
                start.WriteStartObject("content_block");
                start.WriteString("type", "text");
                start.WriteString("text", "");
                start.WriteEndObject();
                End(output, start);
            }
            Ping(output);
        }
        using var w = Begin(output, "content_block_delta");
        w.WriteNumber("index", 0);
        w.WriteStartObject("delta");
        w.WriteString("type", "text_delta");
        w.WriteString("text", text);
        w.WriteEndObject();
        End(output, w);
    }

    /// <summary>The closing events: the text block's stop, the stop reason and usage, the message's stop.</summary>
    public void End(IBufferWriter<byte> output, string stopReason, string? stopSequence, Usage usage)
    {
        if (_blockOpen)
        {
            using var stop = Begin(output, "content_block_stop");
            stop.WriteNumber("index", 0);
            End(output, stop);
        }
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
    public void WriteMessage(IBufferWriter<byte> output, string text, string stopReason, string? stopSequence, Usage usage)
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
