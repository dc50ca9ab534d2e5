using System.Buffers.Binary;
using Lattice.Testing;

namespace Lattice.Runtime.Tests.Engines.Whisper;

/// <summary>Audio for the tests: the shared fixtures, the files beside this class, and WAVs made on the fly.</summary>
public static class TestAudio
{
    public static string JfkPath => Path.Combine(RepoPaths.SharedDir, "models", "audio", "jfk.wav");

    public static string HelloPath => Path.Combine(RepoPaths.SharedDir, "models", "audio", "hello-espeak-16k.wav");

    public static string FixturePath(string name) =>
        Path.Combine(RepoPaths.RepoRoot, "test", "Lattice.Runtime.Tests", "Engines", "Whisper", "Fixtures", name);

    public enum SampleFormat
    {
        UInt8,
        Int16,
        Int24,
        Int32,
        Float32,
        Float64,
    }

    /// <summary>
    /// A WAV file of <paramref name="seconds"/> seconds whose channel <c>c</c> at time <c>t</c> holds
    /// <paramref name="signal"/>(c, t) (values in [-1, 1]).
    /// </summary>
    public static byte[] Wav(int sampleRate, int channels, SampleFormat format, double seconds, Func<int, double, double> signal, bool extensible = false)
    {
        var frames = (int)Math.Round(seconds * sampleRate);
        var bytesPerSample = format switch
        {
            SampleFormat.UInt8 => 1,
            SampleFormat.Int16 => 2,
            SampleFormat.Int24 => 3,
            SampleFormat.Int32 or SampleFormat.Float32 => 4,
            _ => 8,
        };
        var isFloat = format is SampleFormat.Float32 or SampleFormat.Float64;
        var dataLength = frames * channels * bytesPerSample;
        var fmtLength = extensible ? 40 : 16;
        var file = new byte[12 + 8 + fmtLength + 8 + dataLength];
        var span = file.AsSpan();

        "RIFF"u8.CopyTo(span);
        BinaryPrimitives.WriteInt32LittleEndian(span[4..], file.Length - 8);
        "WAVE"u8.CopyTo(span[8..]);
        "fmt "u8.CopyTo(span[12..]);
        BinaryPrimitives.WriteInt32LittleEndian(span[16..], fmtLength);
        var fmt = span.Slice(20, fmtLength);
        ushort tag = isFloat ? (ushort)3 : (ushort)1;
        BinaryPrimitives.WriteUInt16LittleEndian(fmt, extensible ? (ushort)0xFFFE : tag);
        BinaryPrimitives.WriteUInt16LittleEndian(fmt[2..], (ushort)channels);
        BinaryPrimitives.WriteInt32LittleEndian(fmt[4..], sampleRate);
        BinaryPrimitives.WriteInt32LittleEndian(fmt[8..], sampleRate * channels * bytesPerSample);
        BinaryPrimitives.WriteUInt16LittleEndian(fmt[12..], (ushort)(channels * bytesPerSample));
        BinaryPrimitives.WriteUInt16LittleEndian(fmt[14..], (ushort)(bytesPerSample * 8));
        if (extensible)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(fmt[16..], 22);
            BinaryPrimitives.WriteUInt16LittleEndian(fmt[18..], (ushort)(bytesPerSample * 8));
            BinaryPrimitives.WriteUInt32LittleEndian(fmt[20..], 0); // channel mask
            BinaryPrimitives.WriteUInt16LittleEndian(fmt[24..], tag);
            new byte[] { 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71 }.CopyTo(fmt[26..]);
        }
        var dataStart = 20 + fmtLength;
        "data"u8.CopyTo(span[dataStart..]);
        BinaryPrimitives.WriteInt32LittleEndian(span[(dataStart + 4)..], dataLength);

        var offset = dataStart + 8;
        for (var f = 0; f < frames; f++)
        {
            var t = f / (double)sampleRate;
            for (var c = 0; c < channels; c++)
            {
                var value = Math.Clamp(signal(c, t), -1, 1);
                var target = span[offset..];
                switch (format)
                {
                    case SampleFormat.UInt8:
                        target[0] = (byte)Math.Clamp(Math.Round((value * 127) + 128), 0, 255);
                        break;
                    case SampleFormat.Int16:
                        BinaryPrimitives.WriteInt16LittleEndian(target, (short)Math.Round(value * 32767));
                        break;
                    case SampleFormat.Int24:
                        var v24 = (int)Math.Round(value * 8388607);
                        target[0] = (byte)v24;
                        target[1] = (byte)(v24 >> 8);
                        target[2] = (byte)(v24 >> 16);
                        break;
                    case SampleFormat.Int32:
                        BinaryPrimitives.WriteInt32LittleEndian(target, (int)Math.Round(value * int.MaxValue));
                        break;
                    case SampleFormat.Float32:
                        BinaryPrimitives.WriteSingleLittleEndian(target, (float)value);
                        break;
                    case SampleFormat.Float64:
                        BinaryPrimitives.WriteDoubleLittleEndian(target, value);
                        break;
                }
                offset += bytesPerSample;
            }
        }
        return file;
    }

    /// <summary>A sine of <paramref name="frequency"/> Hz and amplitude <paramref name="amplitude"/> on every channel.</summary>
    public static Func<int, double, double> Sine(double frequency, double amplitude = 0.5) =>
        (_, t) => amplitude * Math.Sin(2 * Math.PI * frequency * t);

    /// <summary>The amplitude of the <paramref name="frequency"/> component of <paramref name="samples"/> (Goertzel over the middle 80 %).</summary>
    public static double Amplitude(ReadOnlySpan<float> samples, int sampleRate, double frequency)
    {
        var start = samples.Length / 10;
        var window = samples.Slice(start, samples.Length - (2 * start));
        double real = 0, imaginary = 0;
        for (var i = 0; i < window.Length; i++)
        {
            var phase = 2 * Math.PI * frequency * (start + i) / sampleRate;
            real += window[i] * Math.Cos(phase);
            imaginary += window[i] * Math.Sin(phase);
        }
        return 2 * Math.Sqrt((real * real) + (imaginary * imaginary)) / window.Length;
    }

    public static double Rms(ReadOnlySpan<float> samples)
    {
        double sum = 0;
        foreach (var sample in samples)
        {
            sum += (double)sample * sample;
        }
        return Math.Sqrt(sum / Math.Max(samples.Length, 1));
    }
}
