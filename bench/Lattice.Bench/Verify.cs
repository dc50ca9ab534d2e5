using System.Text;

namespace Lattice.Bench;

/// <summary>Checks a (sampled) response body: the stand-in answers "You said: hello".</summary>
internal static class Verify
{
    public const string Expected = "You said: hello";

    /// <summary>Null when the body is right, else what is wrong.</summary>
    /// <summary>True in the runtime scenario: bodies come from the fixed engine, not the stand-in.</summary>
    public static bool FixedEngine { get; set; }

    public static string? Body(ChatMode mode, ReadOnlySpan<byte> body, bool anthropic = false)
    {
        if (FixedEngine)
        {
            return FixedBody(mode, body);
        }
        if (anthropic)
        {
            return MessagesBody(mode, body);
        }
        if (mode == ChatMode.NonStreaming)
        {
            return body.IndexOf("\"content\":\"You said: hello\""u8) >= 0 ? null : "body lacks \"You said: hello\": " + Preview(body);
        }

        // SSE: the reply arrives one word per chunk ("You", " said:", " hello"); join every delta's content.
        var text = new StringBuilder();
        var rest = body;
        int at;
        while ((at = rest.IndexOf("\"content\":\""u8)) >= 0)
        {
            rest = rest[(at + 11)..];
            var end = rest.IndexOf((byte)'"');
            if (end < 0)
            {
                return "unterminated content string: " + Preview(body);
            }
            text.Append(Encoding.UTF8.GetString(rest[..end]));
            rest = rest[end..];
        }
        if (text.ToString() != Expected)
        {
            return $"streamed content is \"{text}\", not \"{Expected}\"";
        }
        return body.TrimEnd("\r\n"u8).EndsWith("data: [DONE]"u8) ? null : "stream does not end with data: [DONE]: " + Preview(body);
    }

    /// <summary>An Anthropic Message with the text, or its SSE stream: text_delta events joined, ending with message_stop.</summary>
    private static string? MessagesBody(ChatMode mode, ReadOnlySpan<byte> body)
    {
        if (mode == ChatMode.NonStreaming)
        {
            return body.IndexOf("\"text\":\"You said: hello\""u8) >= 0 ? null : "message lacks \"You said: hello\": " + Preview(body);
        }
        var text = new StringBuilder();
        var rest = body;
        int at;
        ReadOnlySpan<byte> delta = "\"text_delta\",\"text\":\""u8;
        while ((at = rest.IndexOf(delta)) >= 0)
        {
            rest = rest[(at + delta.Length)..];
            var end = rest.IndexOf((byte)'"');
            if (end < 0)
            {
                return "unterminated text string: " + Preview(body);
            }
            text.Append(Encoding.UTF8.GetString(rest[..end]));
            rest = rest[end..];
        }
        if (text.ToString() != Expected)
        {
            return $"streamed text is \"{text}\", not \"{Expected}\"";
        }
        return body.TrimEnd("\r\n"u8).EndsWith("data: {\"type\":\"message_stop\"}"u8) ? null : "stream does not end with message_stop: " + Preview(body);
    }

    /// <summary>The fixed engine answers "Hello from the fixed engine.", or streams "tick " chunks ending with [DONE].</summary>
    private static string? FixedBody(ChatMode mode, ReadOnlySpan<byte> body)
    {
        if (mode == ChatMode.NonStreaming)
        {
            return body.IndexOf("Hello from the fixed engine."u8) >= 0 ? null : "body lacks the fixed engine's answer: " + Preview(body);
        }
        if (body.IndexOf("\"content\":\"tick \""u8) < 0)
        {
            return "stream lacks the fixed engine's chunks: " + Preview(body);
        }
        return body.TrimEnd("\r\n"u8).EndsWith("data: [DONE]"u8) ? null : "stream does not end with data: [DONE]: " + Preview(body);
    }

    public static string Preview(ReadOnlySpan<byte> body) =>
        Encoding.UTF8.GetString(body[..Math.Min(body.Length, 300)]).ReplaceLineEndings("\\n");
}
