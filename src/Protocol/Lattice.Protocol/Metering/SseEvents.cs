namespace Lattice.Protocol.Metering;

/// <summary>Byte-level pieces of the server-sent events format (lines end in LF or CRLF) that metering needs.</summary>
internal static class SseEvents
{
    /// <summary>
    /// Counts the <c>data</c> lines of one event and gives the value of the first (after <c>data:</c> and one optional
    /// space, without its line ending), as an offset into <paramref name="sseEvent"/>.
    /// </summary>
    public static int FindData(ReadOnlySpan<byte> sseEvent, out int start, out int length)
    {
        start = 0;
        length = 0;
        int count = 0;
        int lineStart = 0;
        while (lineStart < sseEvent.Length)
        {
            int lf = sseEvent[lineStart..].IndexOf((byte)'\n');
            int lineEnd = lf < 0 ? sseEvent.Length : lineStart + lf;
            ReadOnlySpan<byte> line = sseEvent[lineStart..lineEnd];
            if (line.Length > 0 && line[^1] == '\r')
            {
                line = line[..^1];
            }

            if (line.StartsWith("data:"u8))
            {
                if (count == 0)
                {
                    int offset = line.Length > 5 && line[5] == ' ' ? 6 : 5;
                    start = lineStart + offset;
                    length = line.Length - offset;
                }

                count++;
            }

            lineStart = lineEnd + 1;
        }

        return count;
    }

    /// <summary>Writes the values of all data lines joined by LF; <paramref name="destination"/> is at least as long as the event.</summary>
    public static int JoinData(ReadOnlySpan<byte> sseEvent, Span<byte> destination)
    {
        int written = 0;
        bool first = true;
        int lineStart = 0;
        while (lineStart < sseEvent.Length)
        {
            int lf = sseEvent[lineStart..].IndexOf((byte)'\n');
            int lineEnd = lf < 0 ? sseEvent.Length : lineStart + lf;
            ReadOnlySpan<byte> line = sseEvent[lineStart..lineEnd];
            if (line.Length > 0 && line[^1] == '\r')
            {
                line = line[..^1];
            }

            if (line.StartsWith("data:"u8))
            {
                ReadOnlySpan<byte> value = line[(line.Length > 5 && line[5] == ' ' ? 6 : 5)..];
                if (!first)
                {
                    destination[written++] = (byte)'\n';
                }

                value.CopyTo(destination[written..]);
                written += value.Length;
                first = false;
            }

            lineStart = lineEnd + 1;
        }

        return written;
    }

    /// <summary>True for the stream's end marker, <c>data: [DONE]</c>.</summary>
    public static bool IsDone(ReadOnlySpan<byte> sseEvent) =>
        FindData(sseEvent, out int start, out int length) == 1 && sseEvent.Slice(start, length).SequenceEqual("[DONE]"u8);

    /// <summary>
    /// The index just past the blank line that ends the first complete event in <paramref name="next"/>, where the
    /// event began in <paramref name="held"/> (bytes of it already received); -1 when the event is not complete yet.
    /// A blank line is an LF that directly follows a line ending (LF or CRLF), or the event's start.
    /// </summary>
    public static int FindEventEnd(ReadOnlySpan<byte> held, ReadOnlySpan<byte> next)
    {
        int from = 0;
        while (from < next.Length)
        {
            int lf = next[from..].IndexOf((byte)'\n');
            if (lf < 0)
            {
                return -1;
            }

            int i = from + lf;
            byte before = At(held, next, i - 1);
            if (before == '\n' || (before == '\r' && At(held, next, i - 2) == '\n'))
            {
                return i + 1;
            }

            from = i + 1;
        }

        return -1;
    }

    // Bytes before the event's start read as LF: the previous event ended with a line ending, so a line ending at the
    // very start of an event is a blank line of its own.
    private static byte At(ReadOnlySpan<byte> held, ReadOnlySpan<byte> next, int index)
    {
        if (index >= 0)
        {
            return next[index];
        }

        index += held.Length;
        return index >= 0 ? held[index] : (byte)'\n';
    }
}
