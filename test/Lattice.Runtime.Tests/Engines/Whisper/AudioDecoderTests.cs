using System.Buffers.Binary;
using Lattice.Runtime.Engines.Audio;
using static Lattice.Runtime.Tests.Engines.Whisper.TestAudio;

namespace Lattice.Runtime.Tests.Engines.Whisper;

public sealed class AudioDecoderTests
{
    private static DecodedAudio DecodeOk(byte[] file, double maxSeconds = 3600)
    {
        var result = AudioDecoder.Decode(file, maxSeconds, CancellationToken.None);
        Assert.True(result.Audio is not null, $"{result.Error}: {result.Message}");
        Assert.Equal(AudioDecodeError.None, result.Error);
        return result.Audio!;
    }

    private static AudioDecodeResult DecodeFails(byte[] file, AudioDecodeError expected, double maxSeconds = 3600)
    {
        var result = AudioDecoder.Decode(file, maxSeconds, CancellationToken.None);
        Assert.Null(result.Audio);
        Assert.Equal(expected, result.Error);
        Assert.False(string.IsNullOrWhiteSpace(result.Message));
        return result;
    }

    [Theory]
    [InlineData(16000, 1, SampleFormat.Int16, false)]
    [InlineData(44100, 2, SampleFormat.Int16, false)]
    [InlineData(8000, 1, SampleFormat.UInt8, false)]
    [InlineData(48000, 1, SampleFormat.Float32, false)]
    [InlineData(48000, 2, SampleFormat.Float32, true)]
    [InlineData(22050, 1, SampleFormat.Int24, false)]
    [InlineData(96000, 2, SampleFormat.Int24, true)]
    [InlineData(32000, 1, SampleFormat.Int32, false)]
    [InlineData(11025, 6, SampleFormat.Int16, true)]
    [InlineData(24000, 1, SampleFormat.Float64, false)]
    [InlineData(44056, 1, SampleFormat.Int16, false)]
    public void Wav_of_any_rate_layout_and_sample_format_becomes_16_kHz_mono(int rate, int channels, SampleFormat format, bool extensible)
    {
        const double seconds = 1.5;
        var audio = DecodeOk(Wav(rate, channels, format, seconds, Sine(440), extensible));

        Assert.Equal("wav", audio.Format);
        Assert.Equal(rate, audio.SourceSampleRate);
        Assert.Equal(channels, audio.SourceChannels);
        var frames = (long)Math.Round(seconds * rate);
        Assert.Equal(Resampler.OutputLength(frames, rate, 16000), audio.Samples.Length);
        Assert.Equal(seconds, audio.DurationSeconds, 3);
        var tolerance = format == SampleFormat.UInt8 ? 0.02 : 0.005;
        Assert.Equal(0.5, Amplitude(audio.Samples, 16000, 440), tolerance);
        Assert.True(Amplitude(audio.Samples, 16000, 1234) < 0.01);
    }

    [Fact]
    public void The_shared_fixtures_decode_with_their_known_lengths()
    {
        var jfk = DecodeOk(File.ReadAllBytes(JfkPath));
        Assert.Equal(176000, jfk.Samples.Length);
        Assert.Equal(11.0, jfk.DurationSeconds, 6);

        var hello = DecodeOk(File.ReadAllBytes(HelloPath));
        Assert.Equal(121554, hello.Samples.Length);
        Assert.Equal(16000, hello.SourceSampleRate);
    }

    [Fact]
    public void Stereo_channels_are_averaged()
    {
        var opposite = DecodeOk(Wav(16000, 2, SampleFormat.Float32, 0.5, (c, t) => (c == 0 ? 0.5 : -0.5) * Math.Sin(2 * Math.PI * 300 * t)));
        Assert.True(Rms(opposite.Samples) < 1e-6);

        var leftOnly = DecodeOk(Wav(16000, 2, SampleFormat.Float32, 0.5, (c, t) => c == 0 ? 0.8 * Math.Sin(2 * Math.PI * 300 * t) : 0));
        Assert.Equal(0.4, Amplitude(leftOnly.Samples, 16000, 300), 3);
    }

    [Fact]
    public void Downsampling_removes_what_16_kHz_cannot_hold_and_keeps_the_speech_band()
    {
        // 12 kHz would alias to 4 kHz without a low-pass filter.
        var above = DecodeOk(Wav(48000, 1, SampleFormat.Float32, 1, Sine(12000)));
        Assert.True(Rms(above.Samples) < 0.002, $"rms {Rms(above.Samples)}");
        Assert.True(Amplitude(above.Samples, 16000, 4000) < 0.002);

        var mix = DecodeOk(Wav(44100, 1, SampleFormat.Float32, 1, (_, t) => (0.3 * Math.Sin(2 * Math.PI * 300 * t)) + (0.3 * Math.Sin(2 * Math.PI * 3400 * t))));
        Assert.Equal(0.3, Amplitude(mix.Samples, 16000, 300), 3);
        Assert.Equal(0.3, Amplitude(mix.Samples, 16000, 3400), 3);
    }

    [Fact]
    public void Upsampling_keeps_the_tone_and_adds_no_image()
    {
        var audio = DecodeOk(Wav(8000, 1, SampleFormat.Int16, 1, Sine(1000)));
        Assert.Equal(16000, audio.Samples.Length);
        Assert.Equal(0.5, Amplitude(audio.Samples, 16000, 1000), 2);
        Assert.True(Amplitude(audio.Samples, 16000, 7000) < 0.005); // the image of 1 kHz around 8 kHz
    }

    [Fact]
    public void The_resampler_gives_the_same_output_for_any_chunking()
    {
        var random = new Random(7);
        var input = new float[44100];
        for (var i = 0; i < input.Length; i++)
        {
            input[i] = (float)((random.NextDouble() * 2) - 1);
        }

        var whole = new SampleBuffer();
        var resampler = new Resampler(44100, 16000);
        resampler.Process(input, whole);
        resampler.Flush(whole);

        var chunked = new SampleBuffer();
        resampler = new Resampler(44100, 16000);
        for (var offset = 0; offset < input.Length;)
        {
            var size = Math.Min(random.Next(1, 3000), input.Length - offset);
            resampler.Process(input.AsSpan(offset, size), chunked);
            offset += size;
        }
        resampler.Flush(chunked);

        Assert.Equal(16000, whole.Count);
        Assert.Equal(whole.ToArray(), chunked.ToArray());
    }

    [Fact]
    public void Flac_is_lossless_and_matches_the_wav_it_was_made_from()
    {
        var flac = DecodeOk(File.ReadAllBytes(FixturePath("hello-2s.flac")));
        var wav = DecodeOk(File.ReadAllBytes(HelloPath));

        Assert.Equal("flac", flac.Format);
        Assert.Equal(wav.Samples.AsSpan(0, 32000).ToArray(), flac.Samples);
    }

    [Fact]
    public void Flac_with_24_bit_stereo_at_44_1_kHz_decodes()
    {
        var audio = DecodeOk(File.ReadAllBytes(FixturePath("tone-44k-stereo-24bit.flac")));

        Assert.Equal(44100, audio.SourceSampleRate);
        Assert.Equal(2, audio.SourceChannels);
        Assert.Equal(0.5, audio.DurationSeconds, 3);
        // 440 Hz left and 1 kHz right at 0.5 each, averaged to mono.
        Assert.Equal(0.25, Amplitude(audio.Samples, 16000, 440), 2);
        Assert.Equal(0.25, Amplitude(audio.Samples, 16000, 1000), 2);
    }

    [Fact]
    public void A_flac_upload_cut_short_keeps_its_whole_frames()
    {
        var file = File.ReadAllBytes(FixturePath("hello-2s.flac"));
        var audio = DecodeOk(file[..(file.Length * 6 / 10)]);
        Assert.InRange(audio.DurationSeconds, 0.5, 1.6);
    }

    [Theory]
    [InlineData("hello-2s.mp3", "mp3", 600)]
    [InlineData("hello-2s.ogg", "ogg-vorbis", 0)]
    [InlineData("hello-2s.opus", "ogg-opus", 0)]
    public void Lossy_formats_decode_to_the_same_speech(string file, string format, int maxLag)
    {
        var audio = DecodeOk(File.ReadAllBytes(FixturePath(file)));
        var reference = DecodeOk(File.ReadAllBytes(HelloPath)).Samples.AsSpan(0, 32000).ToArray();

        Assert.Equal(format, audio.Format);
        Assert.Equal(2.0, audio.DurationSeconds, 2);
        var best = 0.0;
        for (var lag = 0; lag <= maxLag; lag++)
        {
            best = Math.Max(best, Correlation(reference, audio.Samples, lag));
        }
        Assert.True(best > 0.95, $"correlation {best}");
    }

    [Fact]
    public void G711_wav_is_expanded()
    {
        var mulaw = DecodeOk(G711Wav(7, [0x00, 0x80, 0xFF, 0x7F]));
        Assert.Equal([-32124 / 32768f, 32124 / 32768f, 0f, 0f], mulaw.Samples[..4]);

        var alaw = DecodeOk(G711Wav(6, [0xD5, 0x55, 0xAA, 0x2A]));
        Assert.Equal([8 / 32768f, -8 / 32768f, 32256 / 32768f, -32256 / 32768f], alaw.Samples[..4]);
    }

    [Fact]
    public void Float_samples_that_are_not_finite_become_silence()
    {
        var audio = DecodeOk(Wav(16000, 1, SampleFormat.Float32, 0.5, (_, t) => t < 0.25 ? double.NaN : 0.5));
        Assert.All(audio.Samples, s => Assert.True(float.IsFinite(s)));
    }

    [Fact]
    public void A_streamed_wav_with_an_unknown_data_size_runs_to_the_end()
    {
        var file = Wav(16000, 1, SampleFormat.Int16, 1, Sine(440));
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(40), 0xFFFFFFFF);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(4), 0xFFFFFFFF);
        Assert.Equal(16000, DecodeOk(file).Samples.Length);
    }

    [Fact]
    public void Unknown_and_damaged_files_are_refused_with_a_reason()
    {
        DecodeFails([], AudioDecodeError.Unsupported);
        DecodeFails("This is not audio at all, just some text."u8.ToArray(), AudioDecodeError.Unsupported);
        DecodeFails(Enumerable.Range(0, 5000).Select(i => (byte)(i * 7919 % 251)).ToArray(), AudioDecodeError.Unsupported);

        var ftyp = new byte[64];
        "ftypM4A "u8.CopyTo(ftyp.AsSpan(4));
        Assert.Contains("mp4", DecodeFails(ftyp, AudioDecodeError.Unsupported).Message);

        var wav = Wav(16000, 1, SampleFormat.Int16, 0.5, Sine(440));
        DecodeFails(wav[..30], AudioDecodeError.Corrupt);          // header cut inside 'fmt '
        DecodeFails(wav[..36], AudioDecodeError.Corrupt);          // no 'data' chunk
        var adpcm = (byte[])wav.Clone();
        BinaryPrimitives.WriteUInt16LittleEndian(adpcm.AsSpan(20), 2);
        Assert.Contains("ADPCM", DecodeFails(adpcm, AudioDecodeError.Unsupported).Message);

        var flac = File.ReadAllBytes(FixturePath("hello-2s.flac"));
        DecodeFails(flac[..60], AudioDecodeError.Corrupt);         // metadata cut short

        var ogg = File.ReadAllBytes(FixturePath("hello-2s.ogg"));
        var brokenOgg = (byte[])ogg.Clone();
        brokenOgg.AsSpan(200).Fill(0x5A);
        DecodeFails(brokenOgg, AudioDecodeError.Corrupt);
    }

    [Fact]
    public void Audio_outside_the_length_limits_is_refused()
    {
        Assert.Contains("too short", DecodeFails(Wav(16000, 1, SampleFormat.Int16, 0.05, Sine(440)), AudioDecodeError.TooShort).Message);
        DecodeFails(Wav(16000, 1, SampleFormat.Int16, 0.5, Sine(440)), AudioDecodeError.TooLong, maxSeconds: 0.25);
        DecodeFails(File.ReadAllBytes(FixturePath("hello-2s.mp3")), AudioDecodeError.TooLong, maxSeconds: 1);
    }

    [Fact]
    public void Decoding_work_is_bounded_by_samples_not_only_by_duration()
    {
        // 1 s limit: 384,000 samples. 192 kHz × 8 channels is 1,536,000 samples a second, so half a second is too much…
        var failure = DecodeFails(Wav(192_000, 8, SampleFormat.Int16, 0.5, Sine(440)), AudioDecodeError.TooLong, maxSeconds: 1);
        Assert.Equal("The audio file is too long: it holds more than 384,000 samples (sample rate × channels × seconds; "
            + "192,000 Hz × 8 channels may last at most 0.25 s).", failure.Message);
        // …while a 48 kHz 8-channel file may use the whole duration limit, and 0.2 s of the dense one fits.
        Assert.Equal(0.9, DecodeOk(Wav(48_000, 8, SampleFormat.Int16, 0.9, Sine(440)), maxSeconds: 1).DurationSeconds, 3);
        Assert.Equal(0.2, DecodeOk(Wav(192_000, 8, SampleFormat.Int16, 0.2, Sine(440)), maxSeconds: 1).DurationSeconds, 3);
    }

    private static byte[] G711Wav(ushort tag, byte[] samples)
    {
        var file = Wav(16000, 1, SampleFormat.UInt8, 0.25, (_, _) => 0);
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(20), tag);
        samples.CopyTo(file.AsSpan(44));
        return file;
    }

    private static double Correlation(float[] reference, float[] signal, int lag)
    {
        double dot = 0, a = 0, b = 0;
        for (var i = 0; i < reference.Length && i + lag < signal.Length; i++)
        {
            dot += reference[i] * signal[i + lag];
            a += reference[i] * reference[i];
            b += signal[i + lag] * signal[i + lag];
        }
        return dot / Math.Sqrt(a * b);
    }

    // Found by AudioDecoderFuzzTests: a file starting "OggS" whose first page has a version byte other than 0 made the
    // format sniffer throw outside the decoder's error handling, so Decode threw instead of returning a result.
    [Fact]
    public void An_ogg_file_with_a_damaged_first_page_is_corrupt()
    {
        var result = DecodeFails([.. "OggS"u8, 1, .. new byte[23]], AudioDecodeError.Corrupt);
        Assert.Equal("The audio file could not be decoded: it does not start with an Ogg page.", result.Message);
    }

    // Found by AudioDecoderFuzzTests: a damaged MP3 (a mutation of hello-2s.mp3) made NLayer produce samples of
    // magnitude 2 and more, which went on to the resampler and the model; the sink clips every decoder's output.
    [Fact]
    public void A_damaged_mp3_decodes_to_samples_within_full_scale()
    {
        var audio = DecodeOk(File.ReadAllBytes(Path.Combine(Lattice.Testing.RepoPaths.RepoRoot, "test", "Lattice.Runtime.Tests", "Fuzz", "Corpus", "audio", "mp3-past-full-scale.mp3")));
        Assert.Equal("mp3", audio.Format);
        Assert.All(audio.Samples, s => Assert.InRange(s, -1f, 1f));
        Assert.Contains(audio.Samples, s => Math.Abs(s) == 1f);
    }
}
