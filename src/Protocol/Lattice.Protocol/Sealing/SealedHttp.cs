using System.Buffers.Binary;

namespace Lattice.Protocol.Sealing;

/// <summary>
/// How a sealed request and its answer travel over HTTP (docs/sealed-dispatch.md). The request body is a sealed request
/// (<see cref="SealedRequest"/>) with <see cref="ContentType"/>; what the gateway routes on is in headers. The answer
/// body, with the same content type, is a sequence of records <c>u32 BE length || sealed chunk</c>, the last one final.
/// </summary>
public static class SealedHttp
{
    /// <summary>The content type of a sealed request body and of a sealed answer.</summary>
    public const string ContentType = "application/vnd.lattice.sealed";

    /// <summary>The model the request goes to: a personal runtime, <c>lattice:personal:lat_…</c>.</summary>
    public const string ModelHeader = "Lattice-Model";

    /// <summary><c>true</c> for a streamed answer (the sealed body's <c>"stream"</c>, which the gateway cannot read).</summary>
    public const string StreamHeader = "Lattice-Stream";

    /// <summary>The request id bound into the associated data, chosen by the app.</summary>
    public const string RequestIdHeader = "Lattice-Sealed-Request-Id";

    /// <summary>The longest request id accepted (ASCII letters, digits, <c>_</c> and <c>-</c>).</summary>
    public const int MaxRequestIdLength = 128;

    /// <summary>Bytes of a record's length prefix.</summary>
    public const int RecordHeaderBytes = 4;

    /// <summary>The largest sealed chunk a reader accepts in one record.</summary>
    public const int MaxRecordBytes = 16 * 1024 * 1024;

    /// <summary>Whether <paramref name="id"/> may be a sealed request id: 1–128 of <c>[A-Za-z0-9_-]</c>.</summary>
    public static bool IsValidRequestId(string? id)
    {
        if (id is not { Length: > 0 and <= MaxRequestIdLength })
        {
            return false;
        }
        foreach (var c in id)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>Whether a Content-Type header value names a sealed body.</summary>
    public static bool IsSealed(string? contentType) =>
        contentType is not null && contentType.StartsWith(ContentType, StringComparison.OrdinalIgnoreCase)
        && (contentType.Length == ContentType.Length || contentType[ContentType.Length] is ';' or ' ');

    /// <summary>One record of a sealed answer: the chunk's length (u32 BE), then the chunk.</summary>
    public static byte[] Record(ReadOnlySpan<byte> chunk)
    {
        var record = new byte[RecordHeaderBytes + chunk.Length];
        BinaryPrimitives.WriteUInt32BigEndian(record, (uint)chunk.Length);
        chunk.CopyTo(record.AsSpan(RecordHeaderBytes));
        return record;
    }

    /// <summary>
    /// Reads the next record's chunk from <paramref name="stream"/>; null at the end of the stream (between records).
    /// Throws <see cref="SealedMessageException"/> for a record cut short or larger than <see cref="MaxRecordBytes"/>.
    /// </summary>
    public static async ValueTask<byte[]?> ReadRecordAsync(Stream stream, CancellationToken cancellationToken)
    {
        var header = new byte[RecordHeaderBytes];
        var read = await stream.ReadAtLeastAsync(header, RecordHeaderBytes, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
        if (read == 0)
        {
            return null;
        }
        if (read < RecordHeaderBytes)
        {
            throw new SealedMessageException("the sealed answer ended inside a record");
        }
        var length = BinaryPrimitives.ReadUInt32BigEndian(header);
        if (length > MaxRecordBytes)
        {
            throw new SealedMessageException("a sealed answer record is too large");
        }
        var chunk = new byte[length];
        if (await stream.ReadAtLeastAsync(chunk, (int)length, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false) < length)
        {
            throw new SealedMessageException("the sealed answer ended inside a record");
        }
        return chunk;
    }
}
