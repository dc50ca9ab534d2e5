namespace Lattice.Runtime.Engines.Audio;

/// <summary>
/// Where decoders put their samples: interleaved float frames at the source rate in, 16 kHz mono out. Channels are
/// averaged, then resampled as the audio arrives, so memory stays proportional to the 16 kHz output.
/// </summary>
/// <remarks>
/// Decoding work grows with the samples decoded — sample rate × channels × seconds — not with the duration alone, so
/// besides the duration limit a file may decode at most <see cref="SampleBudgetPerSecond"/> × the limit in seconds:
/// a 48 kHz 8-channel file may be as long as the limit, a 768 kHz 32-channel one a 64th of it.
/// </remarks>
internal sealed class AudioSink(double maxSeconds)
{
    /// <summary>Decoded samples (all channels) allowed per second of the duration limit: 48 kHz × 8 channels.</summary>
    public const long SampleBudgetPerSecond = 48_000 * 8;

    private readonly long _maxSamples = (long)Math.Ceiling(maxSeconds * SampleBudgetPerSecond);
    private long _samples;
    private readonly SampleBuffer _output = new();
    private float[] _mono = new float[4096];
    private Resampler? _resampler;
    private int _channels;
    private long _frames;
    private long _maxFrames;

    public int SampleRate { get; private set; }

    public int Channels => _channels;

    public long Frames => _frames;

    /// <summary>Sets the source format; must be called once, before <see cref="Write"/>.</summary>
    public void Begin(int sampleRate, int channels)
    {
        if (SampleRate != 0)
        {
            throw new InvalidOperationException("The audio format was already set.");
        }
        if (sampleRate is < AudioDecoder.MinSampleRate or > AudioDecoder.MaxSampleRate)
        {
            throw new InvalidAudioException(AudioDecodeError.Unsupported, $"a sample rate of {sampleRate} Hz is not supported");
        }
        if (channels is < 1 or > AudioDecoder.MaxChannels)
        {
            throw new InvalidAudioException(AudioDecodeError.Unsupported, $"{channels} channels are not supported");
        }
        SampleRate = sampleRate;
        _channels = channels;
        _maxFrames = (long)Math.Ceiling(maxSeconds * sampleRate);
        _resampler = sampleRate == AudioDecoder.TargetSampleRate ? null : new Resampler(sampleRate, AudioDecoder.TargetSampleRate);
    }

    /// <summary>Adds whole interleaved frames; samples past [-1, 1] are clipped and NaN or infinite ones silenced.</summary>
    public void Write(ReadOnlySpan<float> interleaved)
    {
        if (SampleRate == 0)
        {
            throw new InvalidOperationException("Begin was not called.");
        }
        var frames = interleaved.Length / _channels;
        if (frames == 0)
        {
            return;
        }
        _frames += frames;
        if (_frames > _maxFrames)
        {
            throw new InvalidAudioException(AudioDecodeError.TooLong, $"the audio is longer than the limit of {maxSeconds:0.#} seconds");
        }
        _samples += (long)frames * _channels;
        if (_samples > _maxSamples)
        {
            throw new InvalidAudioException(AudioDecodeError.TooLong, string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"it holds more than {_maxSamples:N0} samples (sample rate × channels × seconds; {SampleRate:N0} Hz × {_channels} channels " +
                $"may last at most {_maxSamples / ((double)SampleRate * _channels):0.###} s)"));
        }

        // Mixed down and clipped in one pass: the managed MP3 and Vorbis decoders turn a damaged file into samples far
        // past full scale (or NaN), which would otherwise reach the resampler and the model.
        if (_mono.Length < frames)
        {
            _mono = new float[frames];
        }
        var scale = 1f / _channels;
        for (var f = 0; f < frames; f++)
        {
            var frame = interleaved.Slice(f * _channels, _channels);
            var sum = 0f;
            foreach (var sample in frame)
            {
                sum += float.IsFinite(sample) ? Math.Clamp(sample, -1f, 1f) : 0f;
            }
            _mono[f] = sum * scale;
        }
        ReadOnlySpan<float> mono = _mono.AsSpan(0, frames);

        if (_resampler is null)
        {
            _output.AddRange(mono);
        }
        else
        {
            _resampler.Process(mono, _output);
        }
    }

    /// <summary>Ends the audio and returns it as 16 kHz mono samples.</summary>
    public float[] Finish()
    {
        _resampler?.Flush(_output);
        return _output.ToArray();
    }
}
