using System.Buffers;
using System.Text.Json;

namespace Lattice.Protocol.Metering;

/// <summary>
/// Reads a target's own usage report out of the bytes the gateway relays, without building a DOM: one forward pass
/// of <see cref="Utf8JsonReader"/> that skips every value not on the usage path.
/// </summary>
/// <remarks>
/// Understands the shapes OpenAI-compatible targets report: chat/embeddings
/// (<c>prompt_tokens</c>, <c>completion_tokens</c>, <c>total_tokens</c>, <c>prompt_tokens_details.cached_tokens</c>),
/// Responses/Anthropic (<c>input_tokens</c>, <c>output_tokens</c>, <c>input_tokens_details.cached_tokens</c>,
/// <c>cache_read_input_tokens</c>), and transcription (<c>{"type":"duration","seconds":N}</c> or
/// <c>{"type":"tokens",...}</c>).
/// </remarks>
public static class UsageReader
{
    private const string SecondsUnit = "seconds";
    private const string RequestsUnit = "requests";

    // Deep enough for any usage object; keeps a hostile body from costing more than a bounded walk.
    private static readonly JsonReaderOptions s_options = new() { MaxDepth = 64, CommentHandling = JsonCommentHandling.Skip };

    /// <summary>
    /// Reads the usage at <paramref name="usagePath"/> (dotted, e.g. <c>usage</c> or <c>response.usage</c>; a numeric
    /// segment indexes an array) of a complete JSON document.
    /// </summary>
    /// <param name="unit">The task's metering unit: <c>tokens</c>, <c>seconds</c> or <c>requests</c>.</param>
    /// <returns>
    /// False when there is nothing to read: no path declared, unit <c>requests</c> (nothing is read from the
    /// answer), the path is missing or its value is null, or the document is not JSON.
    /// </returns>
    public static bool TryRead(ReadOnlySpan<byte> json, string? usagePath, string unit, out Usage usage)
    {
        usage = default;
        if (string.IsNullOrEmpty(usagePath) || string.Equals(unit, RequestsUnit, StringComparison.Ordinal))
        {
            return false;
        }

        try
        {
            var reader = new Utf8JsonReader(json, s_options);
            return reader.Read() && SeekPath(ref reader, usagePath) && ReadUsage(ref reader, unit, out usage);
        }
        catch (JsonException)
        {
            // A target that answers malformed JSON reported no usage; the caller estimates instead.
            usage = default;
            return false;
        }
    }

    /// <summary>
    /// Reads the usage value that starts at <paramref name="valueStart"/> of <paramref name="json"/> (whitespace may come
    /// first), where a caller that scanned the document already found it (<see cref="ModelFieldRewriter.WatchedValueOffset"/>):
    /// only that value is read, whatever the document holds before or after it.
    /// </summary>
    /// <returns>False for unit <c>requests</c>, an offset outside the document, and a value that is not usage.</returns>
    public static bool TryReadAt(ReadOnlySpan<byte> json, int valueStart, string unit, out Usage usage)
    {
        usage = default;
        if ((uint)valueStart > (uint)json.Length || string.Equals(unit, RequestsUnit, StringComparison.Ordinal))
        {
            return false;
        }

        try
        {
            var reader = new Utf8JsonReader(json[valueStart..], s_options);
            return reader.Read() && ReadUsage(ref reader, unit, out usage);
        }
        catch (JsonException)
        {
            usage = default;
            return false;
        }
    }

    /// <summary>
    /// Reads the usage of one server-sent event (its field lines, e.g. <c>data: {...}\n\n</c>): the event's data is
    /// the JSON document. Multi-line data is joined with <c>\n</c> as the SSE spec says.
    /// </summary>
    public static bool TryReadSseEvent(ReadOnlySpan<byte> sseEvent, string? usagePath, string unit, out Usage usage)
    {
        usage = default;
        int dataLines = SseEvents.FindData(sseEvent, out int start, out int length);
        if (dataLines == 0)
        {
            return false;
        }

        if (dataLines == 1)
        {
            return TryRead(sseEvent.Slice(start, length), usagePath, unit, out usage);
        }

        // Rare: a JSON document split over several data lines. Join them once into a pooled buffer.
        byte[] joined = ArrayPool<byte>.Shared.Rent(sseEvent.Length);
        try
        {
            int n = SseEvents.JoinData(sseEvent, joined);
            return TryRead(joined.AsSpan(0, n), usagePath, unit, out usage);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(joined);
        }
    }

    /// <summary>
    /// Reads the usage value the reader stands on (the first token of the value: an object, a bare count, or null) of
    /// a document being read for something else, so a caller that walks the document anyway reads it in the same pass.
    /// The reader is left where it was: the caller skips the value itself.
    /// </summary>
    /// <returns>False for unit <c>requests</c> (nothing is read from the answer) and for a value that is not usage.</returns>
    internal static bool TryReadValue(Utf8JsonReader reader, string unit, out Usage usage)
    {
        usage = default;
        if (string.Equals(unit, RequestsUnit, StringComparison.Ordinal))
        {
            return false;
        }

        try
        {
            // The reader is a copy: a malformed usage object cannot move the caller's reader off the value's end.
            return ReadUsage(ref reader, unit, out usage);
        }
        catch (JsonException)
        {
            usage = default;
            return false;
        }
    }

    /// <summary>Leaves the reader on the first token of the value at the path; false when a segment is missing.</summary>
    private static bool SeekPath(ref Utf8JsonReader reader, ReadOnlySpan<char> path)
    {
        while (true)
        {
            int dot = path.IndexOf('.');
            ReadOnlySpan<char> segment = dot < 0 ? path : path[..dot];
            if (!SeekMember(ref reader, segment))
            {
                return false;
            }

            if (dot < 0)
            {
                return true;
            }

            path = path[(dot + 1)..];
        }
    }

    private static bool SeekMember(ref Utf8JsonReader reader, ReadOnlySpan<char> segment)
    {
        if (reader.TokenType == JsonTokenType.StartObject)
        {
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                bool match = reader.ValueTextEquals(segment);
                reader.Read();
                if (match)
                {
                    return true;
                }

                reader.Skip();
            }

            return false;
        }

        if (reader.TokenType == JsonTokenType.StartArray && int.TryParse(segment, System.Globalization.NumberStyles.None,
                System.Globalization.CultureInfo.InvariantCulture, out int index))
        {
            for (int i = 0; reader.Read() && reader.TokenType != JsonTokenType.EndArray; i++)
            {
                if (i == index)
                {
                    return true;
                }

                reader.Skip();
            }
        }

        return false;
    }

    private static bool ReadUsage(ref Utf8JsonReader reader, string unit, out Usage usage)
    {
        usage = default;
        switch (reader.TokenType)
        {
            case JsonTokenType.Number:
                // A bare number is the whole count: seconds of audio, or tokens for an admin-added task that points
                // its usage path straight at a total.
                usage = string.Equals(unit, SecondsUnit, StringComparison.Ordinal)
                    ? new Usage(AudioMilliseconds: Milliseconds(ref reader))
                    : new Usage(TotalTokens: Whole(ref reader));
                return true;
            case JsonTokenType.StartObject:
                usage = ReadObject(ref reader);
                return true;
            default:
                // null, or a value no target uses for usage.
                return false;
        }
    }

    private static Usage ReadObject(ref Utf8JsonReader reader)
    {
        long prompt = 0, completion = 0, cached = 0, cacheRead = 0, cacheCreation = 0, milliseconds = 0;
        long? total = null;
        bool anthropicCache = false;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("prompt_tokens"u8) || reader.ValueTextEquals("input_tokens"u8))
            {
                prompt = ReadWhole(ref reader);
            }
            else if (reader.ValueTextEquals("completion_tokens"u8) || reader.ValueTextEquals("output_tokens"u8))
            {
                completion = ReadWhole(ref reader);
            }
            else if (reader.ValueTextEquals("total_tokens"u8))
            {
                reader.Read();
                total = reader.TokenType == JsonTokenType.Number ? Whole(ref reader) : null;
            }
            else if (reader.ValueTextEquals("prompt_tokens_details"u8) || reader.ValueTextEquals("input_tokens_details"u8))
            {
                reader.Read();
                cached = CachedTokens(ref reader, cached);
            }
            else if (reader.ValueTextEquals("cache_read_input_tokens"u8))
            {
                cacheRead = ReadWhole(ref reader);
                anthropicCache = true;
            }
            else if (reader.ValueTextEquals("cache_creation_input_tokens"u8))
            {
                cacheCreation = ReadWhole(ref reader);
                anthropicCache = true;
            }
            else if (reader.ValueTextEquals("seconds"u8))
            {
                reader.Read();
                milliseconds = reader.TokenType == JsonTokenType.Number ? Milliseconds(ref reader) : 0;
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }

        if (anthropicCache)
        {
            // Anthropic's input_tokens leaves out cache reads and writes; OpenAI's prompt_tokens includes its cached
            // tokens. Add them back so cached is always a part of prompt, whichever target answered.
            prompt += cacheRead + cacheCreation;
            cached = cacheRead;
        }

        return new Usage(prompt, completion, total ?? prompt + completion, cached, milliseconds);
    }

    private static long CachedTokens(ref Utf8JsonReader reader, long current)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            reader.Skip();
            return current;
        }

        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("cached_tokens"u8))
            {
                current = ReadWhole(ref reader);
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }

        return current;
    }

    private static long ReadWhole(ref Utf8JsonReader reader)
    {
        reader.Read();
        if (reader.TokenType == JsonTokenType.Number)
        {
            return Whole(ref reader);
        }

        reader.Skip();
        return 0;
    }

    private static long Whole(ref Utf8JsonReader reader) =>
        reader.TryGetInt64(out long value) ? value : (long)Math.Round(reader.GetDouble(), MidpointRounding.AwayFromZero);

    private static long Milliseconds(ref Utf8JsonReader reader) =>
        reader.TryGetInt64(out long seconds) && seconds < long.MaxValue / 1000
            ? seconds * 1000
            : (long)Math.Round(reader.GetDouble() * 1000, MidpointRounding.AwayFromZero);
}
