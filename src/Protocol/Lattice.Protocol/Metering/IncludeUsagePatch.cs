using System.Text.Json;

namespace Lattice.Protocol.Metering;

/// <summary>
/// One edit of a JSON body: replace <see cref="Length"/> bytes at <see cref="Offset"/> with <see cref="Replacement"/>
/// (an insertion when Length is 0). The replacement arrays are shared: never write to them.
/// </summary>
public readonly record struct JsonSplice(int Offset, int Length, byte[] Replacement)
{
    /// <summary>How many bytes longer the body becomes.</summary>
    public int Growth => Replacement.Length - Length;

    /// <summary>The edited body as a new array (for tests and cold paths; the relay writes the three slices instead).</summary>
    public byte[] ApplyTo(ReadOnlySpan<byte> json)
    {
        var result = new byte[json.Length + Growth];
        json[..Offset].CopyTo(result);
        Replacement.CopyTo(result.AsSpan(Offset));
        json[(Offset + Length)..].CopyTo(result.AsSpan(Offset + Replacement.Length));
        return result;
    }
}

/// <summary>
/// Turns on <c>stream_options.include_usage</c> in a streaming chat completions request so the target reports what
/// the stream used — a single splice of the client's bytes, never a re-serialisation. When the client did not ask
/// for usage itself the relay must strip the report again (<see cref="SseUsageFilter"/>, strip mode).
/// </summary>
public static class IncludeUsagePatch
{
    private static readonly byte[] s_streamOptionsMember = "\"stream_options\":{\"include_usage\":true},"u8.ToArray();
    private static readonly byte[] s_streamOptionsOnly = "\"stream_options\":{\"include_usage\":true}"u8.ToArray();
    private static readonly byte[] s_streamOptionsValue = "{\"include_usage\":true}"u8.ToArray();
    private static readonly byte[] s_includeUsageMember = "\"include_usage\":true,"u8.ToArray();
    private static readonly byte[] s_includeUsageOnly = "\"include_usage\":true"u8.ToArray();
    private static readonly byte[] s_true = "true"u8.ToArray();

    /// <summary>
    /// The splice that makes a streaming request report usage; false when none is needed or possible: the request
    /// does not stream, already sets include_usage to true, has a <c>stream_options</c> that is neither an object nor
    /// null (the target will reject it anyway), or is not a JSON object.
    /// </summary>
    public static bool TryCreate(ReadOnlySpan<byte> chatRequestJson, out JsonSplice splice)
    {
        splice = default;
        Shape shape;
        try
        {
            shape = Inspect(chatRequestJson);
        }
        catch (JsonException)
        {
            return false;
        }

        if (!shape.IsObject || !shape.Streams || shape.IncludeUsage == JsonTokenType.True)
        {
            return false;
        }

        switch (shape.StreamOptions)
        {
            case JsonTokenType.None:
                splice = new JsonSplice(shape.RootStart + 1, 0, shape.RootEmpty ? s_streamOptionsOnly : s_streamOptionsMember);
                return true;
            case JsonTokenType.Null:
                splice = new JsonSplice(shape.StreamOptionsStart, 4, s_streamOptionsValue);
                return true;
            case JsonTokenType.StartObject when shape.IncludeUsage == JsonTokenType.None:
                splice = new JsonSplice(shape.StreamOptionsStart + 1, 0, shape.StreamOptionsEmpty ? s_includeUsageOnly : s_includeUsageMember);
                return true;
            case JsonTokenType.StartObject when shape.IncludeUsage is JsonTokenType.False or JsonTokenType.Null:
                splice = new JsonSplice(shape.IncludeUsageStart, shape.IncludeUsage == JsonTokenType.False ? 5 : 4, s_true);
                return true;
            default:
                // include_usage is a string or a number: a request the target rejects; leave its bytes alone.
                return false;
        }
    }

    /// <summary>The body sets <c>stream_options.include_usage</c> to true (so the client wants the usage chunk).</summary>
    public static bool ClientAskedForUsage(ReadOnlySpan<byte> json)
    {
        try
        {
            return Inspect(json).IncludeUsage == JsonTokenType.True;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private struct Shape
    {
        public bool IsObject;
        public int RootStart;
        public bool RootEmpty;
        public bool Streams;
        public JsonTokenType StreamOptions;
        public int StreamOptionsStart;
        public bool StreamOptionsEmpty;
        public JsonTokenType IncludeUsage;
        public int IncludeUsageStart;
    }

    private static Shape Inspect(ReadOnlySpan<byte> json)
    {
        var shape = default(Shape);
        var reader = new Utf8JsonReader(json);
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            return shape;
        }

        shape.IsObject = true;
        shape.RootStart = (int)reader.TokenStartIndex;
        shape.RootEmpty = true;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            shape.RootEmpty = false;
            if (reader.ValueTextEquals("stream"u8))
            {
                reader.Read();
                shape.Streams = reader.TokenType == JsonTokenType.True;
                reader.Skip();
            }
            else if (reader.ValueTextEquals("stream_options"u8))
            {
                reader.Read();
                // A repeated key: the last one wins, as it does for the parsers targets use.
                shape.StreamOptions = reader.TokenType;
                shape.StreamOptionsStart = (int)reader.TokenStartIndex;
                shape.IncludeUsage = JsonTokenType.None;
                if (reader.TokenType == JsonTokenType.StartObject)
                {
                    ReadStreamOptions(ref reader, ref shape);
                }
                else
                {
                    reader.Skip();
                }
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }

        return shape;
    }

    private static void ReadStreamOptions(ref Utf8JsonReader reader, ref Shape shape)
    {
        shape.StreamOptionsEmpty = true;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            shape.StreamOptionsEmpty = false;
            bool includeUsage = reader.ValueTextEquals("include_usage"u8);
            reader.Read();
            if (includeUsage)
            {
                shape.IncludeUsage = reader.TokenType;
                shape.IncludeUsageStart = (int)reader.TokenStartIndex;
            }

            reader.Skip();
        }
    }
}
