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
        return anthropic
            // Anthropic: a Message with the text, or text_delta events joined and a stream ending with message_stop.
            ? Check(mode, body, "\"text\":\"You said: hello\""u8, "\"text_delta\",\"text\":\""u8, "data: {\"type\":\"message_stop\"}"u8)
            // OpenAI: the reply arrives one word per chunk ("You", " said:", " hello"); every delta's content joined.
            : Check(mode, body, "\"content\":\"You said: hello\""u8, "\"content\":\""u8, "data: [DONE]"u8);
    }

    /// <summary>
    /// A whole answer must hold <paramref name="whole"/>; a stream's strings after each <paramref name="piece"/> must join
    /// to <see cref="Expected"/>, and it must end with <paramref name="last"/>.
    /// </summary>
    private static string? Check(ChatMode mode, ReadOnlySpan<byte> body, ReadOnlySpan<byte> whole, ReadOnlySpan<byte> piece, ReadOnlySpan<byte> last)
    {
        if (mode == ChatMode.NonStreaming)
        {
            return body.IndexOf(whole) >= 0 ? null : $"body lacks \"{Expected}\": " + Preview(body);
        }
        var text = new StringBuilder();
        var rest = body;
        int at;
        while ((at = rest.IndexOf(piece)) >= 0)
        {
            rest = rest[(at + piece.Length)..];
            var end = rest.IndexOf((byte)'"');
            if (end < 0)
            {
                return "unterminated string: " + Preview(body);
            }
            text.Append(Encoding.UTF8.GetString(rest[..end]));
            rest = rest[end..];
        }
        if (text.ToString() != Expected)
        {
            return $"streamed text is \"{text}\", not \"{Expected}\"";
        }
        return body.TrimEnd("\r\n"u8).EndsWith(last) ? null : $"stream does not end with {Encoding.UTF8.GetString(last)}: " + Preview(body);
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
