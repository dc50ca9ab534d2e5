using System.Buffers.Binary;

namespace Lattice.Runtime.Engines.Audio;

/// <summary>
/// Reads RIFF/RF64 WAVE files: integer PCM of 8 (unsigned), 16, 24 and 32 bits, IEEE float of 32 and 64 bits,
/// A-law and µ-law, plain or as WAVE_FORMAT_EXTENSIBLE, any channel count. A <c>data</c> chunk whose size is 0,
/// 0xFFFFFFFF or past the end of the file (as written by encoders that stream to a pipe) runs to the end of the file.
/// </summary>
internal static class WavDecoder
{
    private const ushort FormatPcm = 1;
    private const ushort FormatFloat = 3;
    private const ushort FormatALaw = 6;
    private const ushort FormatMuLaw = 7;
    private const ushort FormatExtensible = 0xFFFE;

    private const int FramesPerChunk = 4096;

    public static void Decode(ReadOnlyMemory<byte> file, AudioSink sink, CancellationToken cancellationToken)
    {
        var data = file.Span;
        var isRf64 = data[..4].SequenceEqual("RF64"u8);
        long? rf64DataSize = null;

        Format? format = null;
        var position = 12;
        while (position + 8 <= data.Length)
        {
            var id = data.Slice(position, 4);
            long size = BinaryPrimitives.ReadUInt32LittleEndian(data.Slice(position + 4, 4));
            var body = position + 8;

            if (id.SequenceEqual("ds64"u8) && isRf64)
            {
                if (size < 24 || body + 24 > data.Length)
                {
                    throw new InvalidAudioException(AudioDecodeError.Corrupt, "its RF64 'ds64' chunk is truncated");
                }
                rf64DataSize = BinaryPrimitives.ReadInt64LittleEndian(data.Slice(body + 8, 8));
            }
            else if (id.SequenceEqual("fmt "u8))
            {
                if (size < 16 || body + size > data.Length)
                {
                    throw new InvalidAudioException(AudioDecodeError.Corrupt, "its 'fmt ' chunk is truncated");
                }
                format = ReadFormat(data.Slice(body, (int)size));
            }
            else if (id.SequenceEqual("data"u8))
            {
                if (format is null)
                {
                    throw new InvalidAudioException(AudioDecodeError.Corrupt, "its 'data' chunk comes before the 'fmt ' chunk");
                }
                if (isRf64 && size == 0xFFFFFFFF && rf64DataSize is { } large)
                {
                    size = large;
                }
                var available = data.Length - body;
                if (size == 0 || size == 0xFFFFFFFF || size > available)
                {
                    size = available;
                }
                DecodeSamples(file.Slice(body, (int)size), format.Value, sink, cancellationToken);
                return;
            }

            // Chunks are padded to an even length.
            var next = body + size + (size & 1);
            if (next > data.Length)
            {
                break;
            }
            position = (int)next;
        }
        throw new InvalidAudioException(AudioDecodeError.Corrupt, format is null ? "it has no 'fmt ' chunk" : "it has no 'data' chunk");
    }

    private readonly record struct Format(ushort Encoding, int Channels, int SampleRate, int BytesPerSample);

    private static Format ReadFormat(ReadOnlySpan<byte> chunk)
    {
        var encoding = BinaryPrimitives.ReadUInt16LittleEndian(chunk);
        int channels = BinaryPrimitives.ReadUInt16LittleEndian(chunk[2..]);
        var sampleRate = BinaryPrimitives.ReadUInt32LittleEndian(chunk[4..]);
        int blockAlign = BinaryPrimitives.ReadUInt16LittleEndian(chunk[12..]);
        int bitsPerSample = BinaryPrimitives.ReadUInt16LittleEndian(chunk[14..]);

        if (encoding == FormatExtensible)
        {
            if (chunk.Length < 40)
            {
                throw new InvalidAudioException(AudioDecodeError.Corrupt, "its WAVE_FORMAT_EXTENSIBLE header is truncated");
            }
            // The sub-format GUID starts with the plain format tag (…-0000-0010-8000-00aa00389b71).
            encoding = BinaryPrimitives.ReadUInt16LittleEndian(chunk[24..]);
        }

        if (channels == 0)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, "its header says it has 0 channels");
        }
        if (sampleRate is 0 or > int.MaxValue)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, $"its header has an invalid sample rate ({sampleRate})");
        }
        if (blockAlign == 0 || blockAlign % channels != 0)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, $"its block size ({blockAlign} bytes) does not fit {channels} channels");
        }

        // The container size decides the layout; bitsPerSample may be smaller (e.g. 20 valid bits in 24).
        var bytesPerSample = blockAlign / channels;
        var supported = encoding switch
        {
            FormatPcm => bytesPerSample is 1 or 2 or 3 or 4,
            FormatFloat => bytesPerSample is 4 or 8,
            FormatALaw or FormatMuLaw => bytesPerSample == 1,
            _ => false,
        };
        if (!supported)
        {
            var name = encoding switch
            {
                FormatPcm => "integer PCM",
                FormatFloat => "float PCM",
                FormatALaw => "A-law",
                FormatMuLaw => "µ-law",
                2 => "Microsoft ADPCM",
                0x11 => "IMA ADPCM",
                0x55 => "MP3-in-WAV",
                _ => $"format tag 0x{encoding:X4}",
            };
            throw new InvalidAudioException(
                AudioDecodeError.Unsupported, $"WAV {name} with {bitsPerSample}-bit samples in {bytesPerSample}-byte containers is not supported");
        }
        return new Format(encoding, channels, (int)sampleRate, bytesPerSample);
    }

    private static void DecodeSamples(ReadOnlyMemory<byte> samples, Format format, AudioSink sink, CancellationToken cancellationToken)
    {
        sink.Begin(format.SampleRate, format.Channels);
        var frameBytes = format.BytesPerSample * format.Channels;
        var frames = samples.Length / frameBytes;
        var buffer = new float[FramesPerChunk * format.Channels];
        for (var frame = 0; frame < frames; frame += FramesPerChunk)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var count = Math.Min(FramesPerChunk, frames - frame);
            var bytes = samples.Span.Slice(frame * frameBytes, count * frameBytes);
            var output = buffer.AsSpan(0, count * format.Channels);
            Convert(bytes, output, format);
            sink.Write(output);
        }
    }

    private static void Convert(ReadOnlySpan<byte> bytes, Span<float> output, Format format)
    {
        switch (format.Encoding, format.BytesPerSample)
        {
            case (FormatPcm, 1):
                for (var i = 0; i < output.Length; i++)
                {
                    output[i] = (bytes[i] - 128) / 128f;
                }
                break;
            case (FormatPcm, 2):
                for (var i = 0; i < output.Length; i++)
                {
                    output[i] = BinaryPrimitives.ReadInt16LittleEndian(bytes[(i * 2)..]) / 32768f;
                }
                break;
            case (FormatPcm, 3):
                for (var i = 0; i < output.Length; i++)
                {
                    var b = bytes.Slice(i * 3, 3);
                    var value = (b[0] << 8) | (b[1] << 16) | (b[2] << 24); // sign-extends through the top byte
                    output[i] = value / 2147483648f;
                }
                break;
            case (FormatPcm, 4):
                for (var i = 0; i < output.Length; i++)
                {
                    output[i] = (float)(BinaryPrimitives.ReadInt32LittleEndian(bytes[(i * 4)..]) / 2147483648.0);
                }
                break;
            case (FormatFloat, 4):
                for (var i = 0; i < output.Length; i++)
                {
                    output[i] = Sanitize(BinaryPrimitives.ReadSingleLittleEndian(bytes[(i * 4)..]));
                }
                break;
            case (FormatFloat, 8):
                for (var i = 0; i < output.Length; i++)
                {
                    output[i] = Sanitize((float)BinaryPrimitives.ReadDoubleLittleEndian(bytes[(i * 8)..]));
                }
                break;
            case (FormatALaw, 1):
                for (var i = 0; i < output.Length; i++)
                {
                    output[i] = ALaw(bytes[i]) / 32768f;
                }
                break;
            case (FormatMuLaw, 1):
                for (var i = 0; i < output.Length; i++)
                {
                    output[i] = MuLaw(bytes[i]) / 32768f;
                }
                break;
            default:
                throw new InvalidOperationException("Unreachable: the format was validated.");
        }
    }

    // NaN or infinite samples would poison the resampler and the model; clip float audio to the usual range.
    private static float Sanitize(float value) => float.IsFinite(value) ? Math.Clamp(value, -1f, 1f) : 0f;

    // G.711 expansions to 16-bit linear PCM.
    private static short ALaw(byte encoded)
    {
        var a = encoded ^ 0x55;
        var exponent = (a & 0x70) >> 4;
        var mantissa = a & 0x0F;
        var magnitude = exponent == 0 ? (mantissa << 4) + 8 : ((mantissa << 4) + 0x108) << (exponent - 1);
        return (short)((a & 0x80) != 0 ? magnitude : -magnitude);
    }

    private static short MuLaw(byte encoded)
    {
        var u = ~encoded & 0xFF;
        var exponent = (u >> 4) & 0x07;
        var mantissa = u & 0x0F;
        var magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
        return (short)((u & 0x80) != 0 ? -magnitude : magnitude);
    }
}
