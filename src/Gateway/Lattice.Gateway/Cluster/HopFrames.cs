using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using Lattice.Gateway.Dispatch;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Runtimes;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Cluster;

/// <summary>
/// The body of an answer one node forwards to another (the hop): records of <c>[type: 1 byte][length: 4 bytes, big
/// endian][payload]</c>. First a start (<c>S</c>: the runtime's status and content type) or a failure before the start
/// (<c>F</c>); then data records (<c>D</c>: the runtime's bytes as they came, never parsed); then the end (<c>E</c>: the
/// runtime's usage) or an error mid-answer (<c>X</c>). Control records are small JSON; see docs/scale-out.md.
/// </summary>
internal static class HopFrames
{
    public const string ContentType = "application/vnd.lattice.hop";
    public const int HeaderSize = 5;

    /// <summary>The largest control record read (a data record may be any length).</summary>
    public const int MaxControlBytes = 64 * 1024;

    public const byte Start = (byte)'S';
    public const byte Failure = (byte)'F';
    public const byte Data = (byte)'D';
    public const byte End = (byte)'E';
    public const byte Error = (byte)'X';

    public static void WriteHeader(IBufferWriter<byte> writer, byte type, int length)
    {
        var span = writer.GetSpan(HeaderSize);
        span[0] = type;
        BinaryPrimitives.WriteInt32BigEndian(span[1..], length);
        writer.Advance(HeaderSize);
    }

    public static void WriteJson<T>(IBufferWriter<byte> writer, byte type, T value, JsonTypeInfo<T> info)
    {
        var payload = JsonSerializer.SerializeToUtf8Bytes(value, info);
        WriteHeader(writer, type, payload.Length);
        writer.Write(payload);
    }

    public static void WriteError(IBufferWriter<byte> writer, byte type, GatewayError error, DispatchFailure failure, bool retryable) =>
        WriteJson(writer, type, new HopError(error.Status, error.Type, error.Code, error.Message, error.Param, failure, retryable), HopJsonContext.Default.HopError);
}

/// <summary>The answer has started; <paramref name="Hop"/> names the forwarded request on the holding node, to cancel it (<see cref="ForwardedHops"/>).</summary>
internal sealed record HopStart(int Status, string ContentType, long Hop = 0);

internal sealed record HopError(int Status, string Type, string? Code, string Message, string? Param, DispatchFailure Failure, bool Retryable)
{
    public GatewayError ToGatewayError() => new(Status, Type, Code, Message, Param);
}

/// <summary>The runtime's count of what it used (null when it gave none: the entry node then counts).</summary>
internal sealed record HopEnd(Usage? Usage);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, UseStringEnumConverter = true)]
[JsonSerializable(typeof(HopStart))]
[JsonSerializable(typeof(HopError))]
[JsonSerializable(typeof(HopEnd))]
internal sealed partial class HopJsonContext : JsonSerializerContext;

/// <summary>One record read from a hop: a piece of a data record, or a whole control record.</summary>
internal readonly record struct HopRecord(byte Type, ReadOnlyMemory<byte> Payload, bool MoreReady)
{
    /// <summary>The hop ended where a record should have been (the holding node went away).</summary>
    public bool Truncated => Type == 0;
}

/// <summary>
/// Reads a hop's records off the response stream. Data records are handed out as they lie in the pipe, a segment at a
/// time, possibly in several pieces: the relay needs no record boundaries, only the bytes in order.
/// </summary>
internal sealed class HopReader(PipeReader pipe, TimeProvider time) : IIdleProgress
{
    // What is left of the data record being read; where the last piece handed out ends.
    private long _dataLeft;
    private SequencePosition? _handedOut;
    private long _lastFrameAt = time.GetTimestamp();

    public long LastFrameAt => Volatile.Read(ref _lastFrameAt);

    public async ValueTask<HopRecord> ReadAsync(CancellationToken cancellationToken)
    {
        if (_handedOut is { } handedOut)
        {
            _handedOut = null;
            pipe.AdvanceTo(handedOut);
        }
        while (true)
        {
            if (!pipe.TryRead(out var result))
            {
                result = await pipe.ReadAsync(cancellationToken);
            }
            var buffer = result.Buffer;
            if (!buffer.IsEmpty)
            {
                Volatile.Write(ref _lastFrameAt, time.GetTimestamp());
            }
            if (_dataLeft > 0)
            {
                foreach (var segment in buffer)
                {
                    if (segment.IsEmpty)
                    {
                        continue;
                    }
                    var piece = segment[..(int)Math.Min(segment.Length, _dataLeft)];
                    _dataLeft -= piece.Length;
                    var end = buffer.GetPosition(piece.Length);
                    _handedOut = end;
                    var rest = buffer.Slice(end);
                    // More to relay at once: the rest of this record, or a next data record, is already here.
                    var more = !rest.IsEmpty && (_dataLeft > 0 || rest.FirstSpan[0] == HopFrames.Data);
                    return new HopRecord(HopFrames.Data, piece, more);
                }
            }
            else if (buffer.Length >= HopFrames.HeaderSize)
            {
                var (type, length) = Header(buffer);
                if (length < 0 || (type != HopFrames.Data && length > HopFrames.MaxControlBytes))
                {
                    pipe.AdvanceTo(buffer.Start);
                    return default;
                }
                if (type == HopFrames.Data)
                {
                    _dataLeft = length;
                    pipe.AdvanceTo(buffer.GetPosition(HopFrames.HeaderSize));
                    continue;
                }
                if (buffer.Length >= HopFrames.HeaderSize + length)
                {
                    var payload = buffer.Slice(HopFrames.HeaderSize, length).ToArray();
                    pipe.AdvanceTo(buffer.GetPosition(HopFrames.HeaderSize + length));
                    return new HopRecord(type, payload, false);
                }
            }
            if (result.IsCompleted)
            {
                pipe.AdvanceTo(buffer.End);
                return default;
            }
            pipe.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static (byte Type, int Length) Header(in ReadOnlySequence<byte> buffer)
    {
        Span<byte> header = stackalloc byte[HopFrames.HeaderSize];
        buffer.Slice(0, HopFrames.HeaderSize).CopyTo(header);
        return (header[0], BinaryPrimitives.ReadInt32BigEndian(header[1..]));
    }

    /// <summary>After the last record: reads the response to its end, so its connection goes back to the pool.</summary>
    public async ValueTask DrainAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await pipe.ReadAsync(cancellationToken);
            pipe.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                return;
            }
        }
    }
}
