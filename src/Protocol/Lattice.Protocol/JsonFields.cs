using System.Text.Json;

namespace Lattice.Protocol;

/// <summary>Finding a field in JSON bytes without building a document, so bytes that are only forwarded stay as they are.</summary>
public static class JsonFields
{
    /// <summary>
    /// Position of the raw token (quotes included) of a top-level string property; the last one wins, as in a JSON
    /// parser. (-1, 0) when the document is not an object or has no such string property; throws
    /// <see cref="JsonException"/> when the bytes are not JSON.
    /// </summary>
    public static (int Start, int Length) FindTopLevelString(ReadOnlySpan<byte> json, ReadOnlySpan<byte> name)
    {
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 64 });
        var found = (-1, 0);
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            return found;
        }
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var isTarget = reader.ValueTextEquals(name);
            reader.Read();
            if (isTarget && reader.TokenType == JsonTokenType.String)
            {
                var start = (int)reader.TokenStartIndex;
                found = (start, reader.ValueSpan.Length + 2);
            }
            else
            {
                reader.Skip();
            }
        }
        return found;
    }
}
