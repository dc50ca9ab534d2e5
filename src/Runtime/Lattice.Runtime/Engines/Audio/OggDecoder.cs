using System.Buffers.Binary;
using Concentus.Structs;
using NVorbis;

namespace Lattice.Runtime.Engines.Audio;

/// <summary>
/// Ogg files: Vorbis through NVorbis, Opus through Concentus (both fully managed) with the small Ogg demuxer below.
/// Only the first logical stream is decoded (chained or multiplexed streams after it are ignored).
/// </summary>
internal static class OggDecoder
{
    private const int OpusRate = 48_000;
    // Opus can decode straight to 16 kHz; its pre-skip and granule positions stay in 48 kHz units.
    private const int OpusDecodeRate = AudioDecoder.TargetSampleRate;
    private const int OpusRateDivisor = OpusRate / OpusDecodeRate;
    private const int MaxOpusFrameMs = 120;

    /// <summary><c>ogg-vorbis</c>, <c>ogg-opus</c>, or <c>ogg-&lt;codec&gt;</c> / <c>ogg</c> for what is not supported.</summary>
    public static string DetectCodec(ReadOnlySpan<byte> data)
    {
        foreach (var page in OggPage.Enumerate(data))
        {
            if (!page.IsBeginningOfStream)
            {
                break;
            }
            var body = page.Body;
            if (body.Length >= 7 && body[0] == 1 && body[1..7].SequenceEqual("vorbis"u8))
            {
                return "ogg-vorbis";
            }
            if (body.Length >= 8 && body[..8].SequenceEqual("OpusHead"u8))
            {
                return "ogg-opus";
            }
            if (body.Length >= 5 && body[0] == 0x7F && body[1..5].SequenceEqual("FLAC"u8))
            {
                return "ogg-flac";
            }
            if (body.Length >= 8 && body[..8].SequenceEqual("Speex   "u8))
            {
                return "ogg-speex";
            }
        }
        return "ogg";
    }

    public static void DecodeVorbis(ReadOnlyMemory<byte> data, AudioSink sink, CancellationToken cancellationToken)
    {
        using var stream = AudioStreams.Open(data);
        using var reader = new VorbisReader(stream, closeOnDispose: false);
        var channels = reader.Channels;
        sink.Begin(reader.SampleRate, channels);
        var buffer = new float[4096 * channels];
        int read;
        while ((read = reader.ReadSamples(buffer, 0, buffer.Length)) > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            sink.Write(buffer.AsSpan(0, read - (read % channels)));
        }
    }

    public static void DecodeOpus(ReadOnlyMemory<byte> data, AudioSink sink, CancellationToken cancellationToken)
    {
        var (head, packets, lastGranule) = ReadOpusStream(data.Span);
        var channels = head.Channels;
        sink.Begin(OpusDecodeRate, channels);

        // Concentus' factory would pick a system libopus when one is installed; the managed decoder behaves the same
        // on every machine, and there is no native code to feed untrusted uploads to.
#pragma warning disable CS0618
        using var decoder = new OpusMSDecoder(OpusDecodeRate, channels, head.Streams, head.CoupledStreams, head.Mapping);
#pragma warning restore CS0618
        var maxFrame = OpusDecodeRate * MaxOpusFrameMs / 1000;
        var pcm = new float[maxFrame * channels];
        var skip = (long)head.PreSkip / OpusRateDivisor;
        // The last page's granule position is the end of the audio (plus pre-skip), which trims the final packet.
        long? remaining = lastGranule > 0 ? Math.Max(0, (lastGranule - head.PreSkip) / OpusRateDivisor) : null;
        var gain = head.OutputGainQ8 == 0 ? 1f : (float)Math.Pow(10, head.OutputGainQ8 / (20.0 * 256));

        foreach (var packet in packets)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var frames = decoder.DecodeMultistream(packet.Span, pcm, maxFrame, false);
            if (frames < 0)
            {
                throw new InvalidAudioException(AudioDecodeError.Corrupt, "an Opus packet is invalid");
            }
            var start = (int)Math.Min(skip, frames);
            skip -= start;
            var count = frames - start;
            if (remaining is { } left)
            {
                count = (int)Math.Min(count, left);
                remaining = left - count;
            }
            if (count <= 0)
            {
                continue;
            }
            var samples = pcm.AsSpan(start * channels, count * channels);
            if (gain != 1f)
            {
                foreach (ref var sample in samples)
                {
                    sample = Math.Clamp(sample * gain, -1f, 1f);
                }
            }
            sink.Write(samples);
        }
    }

    private sealed record OpusHead(int Channels, int PreSkip, int OutputGainQ8, int Streams, int CoupledStreams, byte[] Mapping);

    private static (OpusHead Head, List<ReadOnlyMemory<byte>> Packets, long LastGranule) ReadOpusStream(ReadOnlySpan<byte> data)
    {
        uint? serial = null;
        OpusHead? head = null;
        var headers = 0;
        var packets = new List<ReadOnlyMemory<byte>>();
        var partial = new List<byte>();
        long lastGranule = -1;

        foreach (var page in OggPage.Enumerate(data))
        {
            if (serial is null)
            {
                if (!page.IsBeginningOfStream)
                {
                    break;
                }
                if (page.Body.Length < 8 || !page.Body[..8].SequenceEqual("OpusHead"u8))
                {
                    continue; // another multiplexed stream's header
                }
                serial = page.Serial;
            }
            else if (page.Serial != serial)
            {
                continue;
            }

            if (!page.IsContinuation)
            {
                partial.Clear();
            }
            var offset = 0;
            var segments = page.SegmentTable;
            for (var i = 0; i < segments.Length; i++)
            {
                var length = segments[i];
                partial.AddRange(page.Body.Slice(offset, length));
                offset += length;
                if (length == 255)
                {
                    continue; // the packet goes on in the next segment (possibly on the next page)
                }
                var packet = partial.ToArray();
                partial.Clear();
                if (headers == 0)
                {
                    head = ParseOpusHead(packet);
                    headers++;
                }
                else if (headers == 1)
                {
                    headers++; // OpusTags: comments only
                }
                else
                {
                    packets.Add(packet);
                }
            }
            if (page.Granule >= 0)
            {
                lastGranule = page.Granule;
            }
            if (page.IsEndOfStream)
            {
                break;
            }
        }

        if (head is null)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, "its Opus header is missing");
        }
        return (head, packets, lastGranule);
    }

    private static OpusHead ParseOpusHead(ReadOnlySpan<byte> packet)
    {
        if (packet.Length < 19 || (packet[8] & 0xF0) != 0)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, "its Opus header is truncated or of an unknown version");
        }
        int channels = packet[9];
        int preSkip = BinaryPrimitives.ReadUInt16LittleEndian(packet[10..]);
        int gain = BinaryPrimitives.ReadInt16LittleEndian(packet[16..]);
        var family = packet[18];
        if (channels == 0)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, "its Opus header says it has 0 channels");
        }
        if (family == 0)
        {
            if (channels > 2)
            {
                throw new InvalidAudioException(AudioDecodeError.Corrupt, "its Opus header has more than 2 channels for mapping family 0");
            }
            return new OpusHead(channels, preSkip, gain, 1, channels - 1, channels == 1 ? [0] : [0, 1]);
        }
        if (packet.Length < 21 + channels)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, "its Opus channel mapping is truncated");
        }
        int streams = packet[19];
        int coupled = packet[20];
        if (streams == 0 || coupled > streams)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, "its Opus channel mapping is invalid");
        }
        return new OpusHead(channels, preSkip, gain, streams, coupled, packet.Slice(21, channels).ToArray());
    }

    /// <summary>One Ogg page (RFC 3533).</summary>
    private readonly ref struct OggPage
    {
        private const int HeaderLength = 27;

        public OggPage(ReadOnlySpan<byte> header, ReadOnlySpan<byte> segmentTable, ReadOnlySpan<byte> body)
        {
            Flags = header[5];
            Granule = BinaryPrimitives.ReadInt64LittleEndian(header[6..]);
            Serial = BinaryPrimitives.ReadUInt32LittleEndian(header[14..]);
            SegmentTable = segmentTable;
            Body = body;
        }

        public byte Flags { get; }
        public long Granule { get; }
        public uint Serial { get; }
        public ReadOnlySpan<byte> SegmentTable { get; }
        public ReadOnlySpan<byte> Body { get; }
        public bool IsContinuation => (Flags & 0x01) != 0;
        public bool IsBeginningOfStream => (Flags & 0x02) != 0;
        public bool IsEndOfStream => (Flags & 0x04) != 0;

        public static Enumerator Enumerate(ReadOnlySpan<byte> data) => new(data);

        public ref struct Enumerator(ReadOnlySpan<byte> data)
        {
            private readonly ReadOnlySpan<byte> _data = data;
            private int _position;

            public OggPage Current { get; private set; }

            public readonly Enumerator GetEnumerator() => this;

            /// <summary>Moves to the next whole page; a truncated or damaged page ends the enumeration.</summary>
            public bool MoveNext()
            {
                if (_position + HeaderLength > _data.Length)
                {
                    return false;
                }
                var header = _data.Slice(_position, HeaderLength);
                if (!header[..4].SequenceEqual("OggS"u8) || header[4] != 0)
                {
                    if (_position == 0)
                    {
                        throw new InvalidAudioException(AudioDecodeError.Corrupt, "it does not start with an Ogg page");
                    }
                    return false;
                }
                int segmentCount = header[26];
                if (_position + HeaderLength + segmentCount > _data.Length)
                {
                    return false;
                }
                var table = _data.Slice(_position + HeaderLength, segmentCount);
                var bodyLength = 0;
                foreach (var length in table)
                {
                    bodyLength += length;
                }
                var bodyStart = _position + HeaderLength + segmentCount;
                if (bodyStart + bodyLength > _data.Length)
                {
                    return false;
                }
                Current = new OggPage(header, table, _data.Slice(bodyStart, bodyLength));
                _position = bodyStart + bodyLength;
                return true;
            }
        }
    }
}
