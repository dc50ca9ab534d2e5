using System.Buffers.Binary;

namespace Lattice.Runtime.Engines.Audio;

/// <summary>
/// A FLAC decoder (native FLAC container, RFC 9639): constant, verbatim, fixed and LPC subframes, Rice and escaped
/// residuals, wasted bits, and the left/side, right/side and mid/side stereo modes; 4–32 bits per sample.
/// Frame headers are checked with their CRC-8, so a damaged file is reported rather than decoded into noise.
/// No managed FLAC decoder is among the packages this project can use, hence this one.
/// </summary>
internal static class FlacDecoder
{
    private const int MaxBlockSize = 65_535;

    public static void Decode(ReadOnlyMemory<byte> file, AudioSink sink, CancellationToken cancellationToken)
    {
        var data = file.Span;
        var position = AudioDecoder.Id3v2Length(data) + 4; // past "fLaC"

        // Metadata blocks; STREAMINFO comes first.
        var info = default(StreamInfo?);
        while (true)
        {
            if (position + 4 > data.Length)
            {
                throw new InvalidAudioException(AudioDecodeError.Corrupt, "its metadata is truncated");
            }
            var header = data[position];
            var type = header & 0x7F;
            var length = (data[position + 1] << 16) | (data[position + 2] << 8) | data[position + 3];
            position += 4;
            if (position + length > data.Length)
            {
                throw new InvalidAudioException(AudioDecodeError.Corrupt, "its metadata is truncated");
            }
            if (type == 0)
            {
                info = ReadStreamInfo(data.Slice(position, length));
            }
            else if (type == 127)
            {
                throw new InvalidAudioException(AudioDecodeError.Corrupt, "it has an invalid metadata block");
            }
            position += length;
            if ((header & 0x80) != 0)
            {
                break;
            }
        }
        if (info is not { } streamInfo)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, "it has no STREAMINFO block");
        }

        sink.Begin(streamInfo.SampleRate, streamInfo.Channels);
        var channels = streamInfo.Channels;
        var blocks = new long[channels][];
        var blockCapacity = 0;
        var output = Array.Empty<float>();
        long decodedFrames = 0;

        while (position < data.Length)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (streamInfo.TotalSamples > 0 && decodedFrames >= streamInfo.TotalSamples)
            {
                break;
            }
            var start = FindFrame(data, position);
            if (start < 0)
            {
                break;
            }
            var reader = new BitReader(data[start..]);
            FrameHeader frame;
            try
            {
                frame = ReadFrameHeader(ref reader, streamInfo);
                if (frame.Channels != channels)
                {
                    throw new InvalidAudioException(AudioDecodeError.Unsupported, "its channel count changes between frames");
                }
                if (frame.BlockSize > blockCapacity)
                {
                    blockCapacity = frame.BlockSize;
                    for (var c = 0; c < channels; c++)
                    {
                        blocks[c] = new long[blockCapacity];
                    }
                    output = new float[blockCapacity * channels];
                }
                for (var c = 0; c < channels; c++)
                {
                    var extraBit = frame.Assignment switch
                    {
                        8 or 10 => c == 1 ? 1 : 0, // left/side and mid/side: the side channel is the second
                        9 => c == 0 ? 1 : 0,       // side/right: the side channel is the first
                        _ => 0,
                    };
                    ReadSubframe(ref reader, blocks[c].AsSpan(0, frame.BlockSize), frame.BitsPerSample + extraBit);
                }
                reader.AlignToByte();
                reader.Skip(16); // CRC-16 of the frame
            }
            catch (TruncatedException)
            {
                if (decodedFrames > 0)
                {
                    break; // an upload cut short: keep the frames that arrived whole
                }
                throw new InvalidAudioException(AudioDecodeError.Corrupt, "it ends in the middle of its first frame");
            }
            Decorrelate(frame, blocks);

            var count = frame.BlockSize;
            if (streamInfo.TotalSamples > 0)
            {
                count = (int)Math.Min(count, streamInfo.TotalSamples - decodedFrames);
            }
            var scale = 1.0 / (1L << (frame.BitsPerSample - 1));
            for (var i = 0; i < count; i++)
            {
                for (var c = 0; c < channels; c++)
                {
                    output[(i * channels) + c] = (float)Math.Clamp(blocks[c][i] * scale, -1.0, 1.0);
                }
            }
            sink.Write(output.AsSpan(0, count * channels));
            decodedFrames += count;
            position = start + reader.BytePosition;
        }
    }

    private readonly record struct StreamInfo(int SampleRate, int Channels, int BitsPerSample, long TotalSamples);

    private readonly record struct FrameHeader(int BlockSize, int SampleRate, int Channels, int Assignment, int BitsPerSample);

    private static StreamInfo ReadStreamInfo(ReadOnlySpan<byte> block)
    {
        if (block.Length < 34)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, "its STREAMINFO block is truncated");
        }
        var packed = BinaryPrimitives.ReadUInt64BigEndian(block[10..]);
        var sampleRate = (int)(packed >> 44);
        var channels = (int)((packed >> 41) & 0x7) + 1;
        var bits = (int)((packed >> 36) & 0x1F) + 1;
        var total = (long)(packed & 0xF_FFFF_FFFF);
        if (sampleRate == 0)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, "its STREAMINFO has a sample rate of 0");
        }
        if (bits < 4)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, $"its STREAMINFO has {bits} bits per sample");
        }
        return new StreamInfo(sampleRate, channels, bits, total);
    }

    /// <summary>The offset of the next frame header at or after <paramref name="from"/> whose CRC-8 checks, or -1.</summary>
    private static int FindFrame(ReadOnlySpan<byte> data, int from)
    {
        for (var i = from; i + 1 < data.Length; i++)
        {
            if (data[i] != 0xFF || (data[i + 1] & 0xFE) != 0xF8)
            {
                continue;
            }
            if (HeaderChecks(data[i..]))
            {
                return i;
            }
            if (i == from)
            {
                // A frame should start right where the previous one ended.
                throw new InvalidAudioException(AudioDecodeError.Corrupt, "a frame header is damaged");
            }
        }
        // Whatever follows the last frame (an ID3v1 tag, padding) is not audio.
        return -1;
    }

    private static bool HeaderChecks(ReadOnlySpan<byte> data)
    {
        // The header is at most 16 bytes; find its end by parsing, then compare the CRC-8.
        try
        {
            var reader = new BitReader(data);
            reader.Skip(16);
            var blockCode = (int)reader.Read(4);
            var rateCode = (int)reader.Read(4);
            reader.Skip(4 + 3 + 1);
            ReadUtf8Number(ref reader);
            reader.Skip(blockCode == 6 ? 8 : blockCode == 7 ? 16 : 0);
            reader.Skip(rateCode == 12 ? 8 : rateCode is 13 or 14 ? 16 : 0);
            var headerLength = reader.BytePosition;
            var crc = (byte)reader.Read(8);
            return Crc8(data[..headerLength]) == crc;
        }
        catch (Exception e) when (e is InvalidAudioException or TruncatedException)
        {
            return false;
        }
    }

    private static FrameHeader ReadFrameHeader(ref BitReader reader, StreamInfo info)
    {
        reader.Skip(16); // sync code, reserved bit, blocking strategy
        var blockCode = (int)reader.Read(4);
        var rateCode = (int)reader.Read(4);
        var assignment = (int)reader.Read(4);
        var sizeCode = (int)reader.Read(3);
        reader.Skip(1);
        ReadUtf8Number(ref reader);

        var blockSize = blockCode switch
        {
            1 => 192,
            >= 2 and <= 5 => 576 << (blockCode - 2),
            6 => (int)reader.Read(8) + 1,
            7 => (int)reader.Read(16) + 1,
            >= 8 => 256 << (blockCode - 8),
            _ => throw new InvalidAudioException(AudioDecodeError.Corrupt, "a frame has a reserved block size"),
        };
        var sampleRate = rateCode switch
        {
            0 => info.SampleRate,
            1 => 88_200,
            2 => 176_400,
            3 => 192_000,
            4 => 8_000,
            5 => 16_000,
            6 => 22_050,
            7 => 24_000,
            8 => 32_000,
            9 => 44_100,
            10 => 48_000,
            11 => 96_000,
            12 => (int)reader.Read(8) * 1000,
            13 => (int)reader.Read(16),
            14 => (int)reader.Read(16) * 10,
            _ => throw new InvalidAudioException(AudioDecodeError.Corrupt, "a frame has an invalid sample rate"),
        };
        if (sampleRate != info.SampleRate)
        {
            throw new InvalidAudioException(AudioDecodeError.Unsupported, "its sample rate changes between frames");
        }
        var bits = sizeCode switch
        {
            0 => info.BitsPerSample,
            1 => 8,
            2 => 12,
            4 => 16,
            5 => 20,
            6 => 24,
            7 => 32,
            _ => throw new InvalidAudioException(AudioDecodeError.Corrupt, "a frame has a reserved sample size"),
        };
        var channels = assignment switch
        {
            <= 7 => assignment + 1,
            <= 10 => 2,
            _ => throw new InvalidAudioException(AudioDecodeError.Corrupt, "a frame has a reserved channel assignment"),
        };
        reader.Skip(8); // CRC-8, checked by FindFrame
        return new FrameHeader(blockSize, sampleRate, channels, assignment, bits);
    }

    private static void ReadUtf8Number(ref BitReader reader)
    {
        var first = (int)reader.Read(8);
        var extra = first switch
        {
            < 0x80 => 0,
            >= 0xC0 and < 0xE0 => 1,
            >= 0xE0 and < 0xF0 => 2,
            >= 0xF0 and < 0xF8 => 3,
            >= 0xF8 and < 0xFC => 4,
            >= 0xFC and < 0xFE => 5,
            0xFE => 6,
            _ => throw new InvalidAudioException(AudioDecodeError.Corrupt, "a frame number is malformed"),
        };
        for (var i = 0; i < extra; i++)
        {
            if ((reader.Read(8) & 0xC0) != 0x80)
            {
                throw new InvalidAudioException(AudioDecodeError.Corrupt, "a frame number is malformed");
            }
        }
    }

    private static void ReadSubframe(ref BitReader reader, Span<long> samples, int bits)
    {
        if (reader.Read(1) != 0)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, "a subframe header is damaged");
        }
        var type = (int)reader.Read(6);
        var wasted = 0;
        if (reader.Read(1) == 1)
        {
            wasted = 1 + reader.ReadUnary();
            bits -= wasted;
            if (bits < 1)
            {
                throw new InvalidAudioException(AudioDecodeError.Corrupt, "a subframe has more wasted bits than sample bits");
            }
        }

        switch (type)
        {
            case 0:
                samples.Fill(reader.ReadSigned(bits));
                break;
            case 1:
                for (var i = 0; i < samples.Length; i++)
                {
                    samples[i] = reader.ReadSigned(bits);
                }
                break;
            case >= 8 and <= 12:
                ReadFixed(ref reader, samples, bits, type - 8);
                break;
            case >= 32:
                ReadLpc(ref reader, samples, bits, type - 31);
                break;
            default:
                throw new InvalidAudioException(AudioDecodeError.Corrupt, "a subframe has a reserved type");
        }

        if (wasted > 0)
        {
            for (var i = 0; i < samples.Length; i++)
            {
                samples[i] <<= wasted;
            }
        }
    }

    private static void ReadFixed(ref BitReader reader, Span<long> samples, int bits, int order)
    {
        if (order > samples.Length)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, "a subframe's predictor order exceeds its block size");
        }
        for (var i = 0; i < order; i++)
        {
            samples[i] = reader.ReadSigned(bits);
        }
        ReadResidual(ref reader, samples, order);
        for (var i = order; i < samples.Length; i++)
        {
            samples[i] += order switch
            {
                0 => 0,
                1 => samples[i - 1],
                2 => (2 * samples[i - 1]) - samples[i - 2],
                3 => (3 * samples[i - 1]) - (3 * samples[i - 2]) + samples[i - 3],
                _ => (4 * samples[i - 1]) - (6 * samples[i - 2]) + (4 * samples[i - 3]) - samples[i - 4],
            };
        }
    }

    private static void ReadLpc(ref BitReader reader, Span<long> samples, int bits, int order)
    {
        if (order > samples.Length)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, "a subframe's predictor order exceeds its block size");
        }
        for (var i = 0; i < order; i++)
        {
            samples[i] = reader.ReadSigned(bits);
        }
        var precision = (int)reader.Read(4) + 1;
        if (precision == 16)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, "a subframe has an invalid coefficient precision");
        }
        var shift = (int)reader.ReadSigned(5);
        if (shift < 0)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, "a subframe has a negative prediction shift");
        }
        Span<long> coefficients = stackalloc long[order];
        for (var i = 0; i < order; i++)
        {
            coefficients[i] = reader.ReadSigned(precision);
        }
        ReadResidual(ref reader, samples, order);
        for (var i = order; i < samples.Length; i++)
        {
            long prediction = 0;
            for (var j = 0; j < order; j++)
            {
                prediction += coefficients[j] * samples[i - 1 - j];
            }
            samples[i] += prediction >> shift;
        }
    }

    /// <summary>Reads the residual into <c>samples[order..]</c> (the predictions are added afterwards).</summary>
    private static void ReadResidual(ref BitReader reader, Span<long> samples, int order)
    {
        var method = (int)reader.Read(2);
        if (method > 1)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, "a residual uses a reserved coding method");
        }
        var parameterBits = method == 0 ? 4 : 5;
        var escape = (1 << parameterBits) - 1;
        var partitionOrder = (int)reader.Read(4);
        var partitions = 1 << partitionOrder;
        var perPartition = samples.Length >> partitionOrder;
        if (perPartition << partitionOrder != samples.Length || perPartition < order)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, "a residual's partitions do not fit its block");
        }

        var index = order;
        for (var p = 0; p < partitions; p++)
        {
            var count = p == 0 ? perPartition - order : perPartition;
            var parameter = (int)reader.Read(parameterBits);
            if (parameter == escape)
            {
                var rawBits = (int)reader.Read(5);
                for (var i = 0; i < count; i++)
                {
                    samples[index++] = rawBits == 0 ? 0 : reader.ReadSigned(rawBits);
                }
                continue;
            }
            for (var i = 0; i < count; i++)
            {
                var quotient = (long)reader.ReadUnary();
                var value = (quotient << parameter) | (parameter == 0 ? 0 : (long)reader.Read(parameter));
                samples[index++] = (value >> 1) ^ -(value & 1); // zigzag
            }
        }
    }

    private static void Decorrelate(FrameHeader frame, long[][] blocks)
    {
        var n = frame.BlockSize;
        switch (frame.Assignment)
        {
            case 8: // left, side
                for (var i = 0; i < n; i++)
                {
                    blocks[1][i] = blocks[0][i] - blocks[1][i];
                }
                break;
            case 9: // side, right
                for (var i = 0; i < n; i++)
                {
                    blocks[0][i] += blocks[1][i];
                }
                break;
            case 10: // mid, side
                for (var i = 0; i < n; i++)
                {
                    var side = blocks[1][i];
                    var mid = (blocks[0][i] << 1) | (side & 1);
                    blocks[0][i] = (mid + side) >> 1;
                    blocks[1][i] = (mid - side) >> 1;
                }
                break;
        }
    }

    private static byte Crc8(ReadOnlySpan<byte> data)
    {
        byte crc = 0;
        foreach (var b in data)
        {
            crc ^= b;
            for (var i = 0; i < 8; i++)
            {
                crc = (byte)((crc & 0x80) != 0 ? (crc << 1) ^ 0x07 : crc << 1);
            }
        }
        return crc;
    }

    /// <summary>The data ended inside a frame.</summary>
    private sealed class TruncatedException : Exception;

    /// <summary>Reads big-endian bit fields; running past the end throws <see cref="TruncatedException"/>.</summary>
    private ref struct BitReader(ReadOnlySpan<byte> data)
    {
        private readonly ReadOnlySpan<byte> _data = data;
        private long _bit;

        public readonly int BytePosition => (int)((_bit + 7) >> 3);

        public ulong Read(int count)
        {
            if (count == 0)
            {
                return 0;
            }
            if (_bit + count > (long)_data.Length * 8)
            {
                throw new TruncatedException();
            }
            ulong value = 0;
            var remaining = count;
            while (remaining > 0)
            {
                var byteIndex = (int)(_bit >> 3);
                var bitOffset = (int)(_bit & 7);
                var available = 8 - bitOffset;
                var take = Math.Min(available, remaining);
                var bits = (_data[byteIndex] >> (available - take)) & ((1 << take) - 1);
                value = (value << take) | (uint)bits;
                remaining -= take;
                _bit += take;
            }
            return value;
        }

        public long ReadSigned(int count)
        {
            var value = Read(count);
            var shift = 64 - count;
            return (long)(value << shift) >> shift;
        }

        /// <summary>Counts zero bits up to the next one bit (and consumes it).</summary>
        public int ReadUnary()
        {
            var zeros = 0;
            while (true)
            {
                var byteIndex = (int)(_bit >> 3);
                if (byteIndex >= _data.Length)
                {
                    throw new TruncatedException();
                }
                var bitOffset = (int)(_bit & 7);
                var rest = (byte)(_data[byteIndex] << bitOffset);
                if (rest == 0)
                {
                    zeros += 8 - bitOffset;
                    _bit += 8 - bitOffset;
                    if (zeros > MaxBlockSize * 32)
                    {
                        throw new InvalidAudioException(AudioDecodeError.Corrupt, "a residual is malformed");
                    }
                    continue;
                }
                var leading = System.Numerics.BitOperations.LeadingZeroCount((uint)rest) - 24;
                zeros += leading;
                _bit += leading + 1;
                return zeros;
            }
        }

        public void Skip(int count)
        {
            if (_bit + count > (long)_data.Length * 8)
            {
                throw new TruncatedException();
            }
            _bit += count;
        }

        public void AlignToByte() => _bit = (_bit + 7) & ~7L;
    }
}
