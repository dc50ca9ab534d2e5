using System.Buffers.Binary;
using System.Text;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Metering;

/// <summary>
/// The usage journal's binary form of a <see cref="UsageRecord"/>: every field in the order of the ledger's INSERT
/// parameters, strings as UTF-8, so the commit loop binds a journaled record straight from its slot (no object, no
/// transcoding) and the request path writes one without a serializer.
/// </summary>
/// <remarks>
/// Little-endian. A string is a 2-byte length (<c>0xFFFF</c>: null) and its UTF-8 bytes; times are 8-byte integers.
/// Order: request id, created at (UTC ticks, then its offset in minutes as 2 bytes), workspace, key, app, user, grant,
/// task, model, served by, served-by id, capacity, stream (1 byte), status, HTTP status (4 bytes), prompt, completion,
/// total, cached tokens, audio milliseconds (8 bytes each), estimated (1 byte), cost, time to first byte
/// (<see cref="long.MinValue"/>: none), duration, prices, surface.
/// </remarks>
internal static class UsageRecordCodec
{
    private const ushort NullString = 0xFFFF;
    private const long NoTime = long.MinValue;

    /// <summary>
    /// Writes the record <paramref name="r"/> would be with <paramref name="end"/> (<see cref="UsageEnd.ApplyTo"/>)
    /// without building it: who asked and what for from <paramref name="r"/>, how it ended from <paramref name="end"/>.
    /// </summary>
    public static int Encode(UsageRecord r, in UsageEnd end, Span<byte> destination)
    {
        var w = new Writer(destination);
        w.String(r.RequestId);
        w.Int64(r.CreatedAt.UtcTicks);
        w.Int16((short)r.CreatedAt.TotalOffsetMinutes);
        w.String(r.WorkspaceId);
        w.String(r.KeyId);
        w.String(r.AppId);
        w.String(r.UserId);
        w.String(r.GrantId);
        w.String(r.Task);
        w.String(r.Model);
        w.String(end.ServedBy);
        w.String(end.ServedById);
        w.String(end.Capacity);
        w.Byte(r.Stream ? (byte)1 : (byte)0);
        w.String(end.Status);
        w.Int32(end.HttpStatus);
        w.Int64(end.Usage.PromptTokens);
        w.Int64(end.Usage.CompletionTokens);
        w.Int64(end.Usage.TotalTokens);
        w.Int64(end.Usage.CachedTokens);
        w.Int64(end.Usage.AudioMilliseconds);
        w.Byte(end.Usage.Estimated ? (byte)1 : (byte)0);
        w.Int64(end.CostPicoUsd);
        w.Int64(end.TimeToFirstByteMicroseconds ?? NoTime);
        w.Int64(end.DurationMicroseconds);
        w.String(end.Prices);
        w.String(r.Surface);
        return w.Failed ? -1 : w.Position;
    }

    /// <summary>The record <paramref name="encoded"/> holds; null when the bytes are not one (truncated, or a string that is not UTF-8).</summary>
    public static UsageRecord? Decode(ReadOnlySpan<byte> encoded)
    {
        var r = new Reader(encoded);
        try
        {
            var requestId = r.String();
            var ticks = r.Int64();
            var offset = r.Int16();
            var workspace = r.String();
            var keyId = r.String();
            var appId = r.String();
            var userId = r.String();
            var grantId = r.String();
            var task = r.String();
            var model = r.String();
            var servedBy = r.String();
            var servedById = r.String();
            var capacity = r.String();
            var stream = r.Byte() != 0;
            var status = r.String();
            var httpStatus = r.Int32();
            var usage = new Usage(r.Int64(), r.Int64(), r.Int64(), r.Int64(), r.Int64(), r.Byte() != 0);
            var cost = r.Int64();
            var ttfb = r.Int64();
            var duration = r.Int64();
            var prices = r.String();
            var surface = r.String();
            if (r.Failed || r.Remaining != 0 || requestId is null || workspace is null || task is null || model is null || status is null || surface is null
                || ticks < DateTimeOffset.MinValue.UtcTicks || ticks > DateTimeOffset.MaxValue.UtcTicks || Math.Abs((int)offset) > 14 * 60)
            {
                return null;
            }
            return new UsageRecord
            {
                RequestId = requestId,
                CreatedAt = new DateTimeOffset(ticks, TimeSpan.Zero).ToOffset(TimeSpan.FromMinutes(offset)),
                WorkspaceId = workspace,
                KeyId = keyId,
                AppId = appId,
                UserId = userId,
                GrantId = grantId,
                Task = task,
                Surface = surface,
                Model = model,
                ServedBy = servedBy,
                ServedById = servedById,
                Capacity = capacity,
                Stream = stream,
                Status = status,
                HttpStatus = httpStatus,
                Usage = usage,
                CostPicoUsd = cost,
                Prices = prices,
                TimeToFirstByteMicroseconds = ttfb == NoTime ? null : ttfb,
                DurationMicroseconds = duration,
            };
        }
        catch (ArgumentException)
        {
            // A string that is not UTF-8 (DecoderFallbackException), or an out-of-range time.
            return null;
        }
    }

    /// <summary>Sequential writer; after the first field that does not fit it writes nothing more and <see cref="Failed"/> is set.</summary>
    private ref struct Writer(Span<byte> destination)
    {
        private readonly Span<byte> _destination = destination;

        public int Position { get; private set; }

        public bool Failed { get; private set; }

        public void String(string? value)
        {
            if (value is null)
            {
                Int16(unchecked((short)NullString));
                return;
            }
            if (Failed || _destination.Length - Position < 2)
            {
                Failed = true;
                return;
            }
            var room = _destination[(Position + 2)..];
            if (room.Length > NullString - 1)
            {
                room = room[..(NullString - 1)];
            }
            if (!Encoding.UTF8.TryGetBytes(value, room, out var written))
            {
                Failed = true;
                return;
            }
            BinaryPrimitives.WriteUInt16LittleEndian(_destination[Position..], (ushort)written);
            Position += 2 + written;
        }

        public void Byte(byte value)
        {
            if (Take(1) is var at && at >= 0)
            {
                _destination[at] = value;
            }
        }

        public void Int16(short value)
        {
            if (Take(2) is var at && at >= 0)
            {
                BinaryPrimitives.WriteInt16LittleEndian(_destination[at..], value);
            }
        }

        public void Int32(int value)
        {
            if (Take(4) is var at && at >= 0)
            {
                BinaryPrimitives.WriteInt32LittleEndian(_destination[at..], value);
            }
        }

        public void Int64(long value)
        {
            if (Take(8) is var at && at >= 0)
            {
                BinaryPrimitives.WriteInt64LittleEndian(_destination[at..], value);
            }
        }

        private int Take(int bytes)
        {
            if (Failed || _destination.Length - Position < bytes)
            {
                Failed = true;
                return -1;
            }
            var at = Position;
            Position += bytes;
            return at;
        }
    }

    /// <summary>Sequential reader of an encoded record; the commit loop binds its fields in this order.</summary>
    public ref struct Reader(ReadOnlySpan<byte> encoded)
    {
        private readonly ReadOnlySpan<byte> _encoded = encoded;
        private int _position;

        /// <summary>A field ran past the end: the values read since are zeros and empty.</summary>
        public bool Failed { get; private set; }

        public readonly int Remaining => _encoded.Length - _position;

        /// <summary>The next string's UTF-8 bytes; false for null.</summary>
        public bool Utf8(out ReadOnlySpan<byte> value)
        {
            value = default;
            var length = (ushort)Int16();
            if (length == NullString)
            {
                return false;
            }
            var at = Take(length);
            if (at < 0)
            {
                return false;
            }
            value = _encoded.Slice(at, length);
            return true;
        }

        public string? String() => Utf8(out var utf8) ? Strict.GetString(utf8) : null;

        public byte Byte() => Take(1) is var at && at >= 0 ? _encoded[at] : (byte)0;

        public short Int16() => Take(2) is var at && at >= 0 ? BinaryPrimitives.ReadInt16LittleEndian(_encoded[at..]) : (short)0;

        public int Int32() => Take(4) is var at && at >= 0 ? BinaryPrimitives.ReadInt32LittleEndian(_encoded[at..]) : 0;

        public long Int64() => Take(8) is var at && at >= 0 ? BinaryPrimitives.ReadInt64LittleEndian(_encoded[at..]) : 0;

        private int Take(int bytes)
        {
            if (Failed || _encoded.Length - _position < bytes)
            {
                Failed = true;
                return -1;
            }
            var at = _position;
            _position += bytes;
            return at;
        }
    }

    private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
}
