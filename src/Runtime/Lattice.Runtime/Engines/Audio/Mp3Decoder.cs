using NLayer;

namespace Lattice.Runtime.Engines.Audio;

/// <summary>MPEG-1/2/2.5 audio (layers I–III, so MP3) through NLayer, a fully managed decoder.</summary>
internal static class Mp3Decoder
{
    private const int SamplesPerRead = 8192;

    /// <summary>True when <paramref name="data"/> starts with an MPEG audio frame header (not ADTS AAC, whose layer bits are 00).</summary>
    public static bool LooksLikeFrameHeader(ReadOnlySpan<byte> data)
    {
        if (data.Length < 4 || data[0] != 0xFF || (data[1] & 0xE0) != 0xE0)
        {
            return false;
        }
        var version = (data[1] >> 3) & 0x03;   // 01 is reserved
        var layer = (data[1] >> 1) & 0x03;     // 00 is reserved (ADTS)
        var bitrate = (data[2] >> 4) & 0x0F;   // 1111 is invalid
        var sampleRate = (data[2] >> 2) & 0x03; // 11 is reserved
        return version != 1 && layer != 0 && bitrate != 0x0F && sampleRate != 0x03;
    }

    /// <remarks>NLayer reads the LAME tag itself and trims the encoder delay and padding, so durations are exact.</remarks>
    public static void Decode(ReadOnlyMemory<byte> data, AudioSink sink, CancellationToken cancellationToken)
    {
        using var stream = AudioStreams.Open(data);
        using var mpeg = new MpegFile(stream);
        var channels = Math.Max(mpeg.Channels, 1);
        var buffer = new float[SamplesPerRead * 2];
        int read;
        var begun = false;
        while ((read = mpeg.ReadSamples(buffer, 0, buffer.Length)) > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (!begun)
            {
                // NLayer knows the format once it has read the first frame.
                channels = mpeg.Channels;
                sink.Begin(mpeg.SampleRate, channels);
                begun = true;
            }
            sink.Write(buffer.AsSpan(0, read - (read % channels)));
        }
        if (!begun)
        {
            throw new InvalidAudioException(AudioDecodeError.Corrupt, "no MPEG audio frame could be decoded");
        }
    }
}

internal static class AudioStreams
{
    /// <summary>A read-only stream over <paramref name="data"/>, without copying when it is backed by an array.</summary>
    public static MemoryStream Open(ReadOnlyMemory<byte> data) =>
        System.Runtime.InteropServices.MemoryMarshal.TryGetArray(data, out var segment)
            ? new MemoryStream(segment.Array!, segment.Offset, segment.Count, writable: false)
            : new MemoryStream(data.ToArray(), writable: false);
}
