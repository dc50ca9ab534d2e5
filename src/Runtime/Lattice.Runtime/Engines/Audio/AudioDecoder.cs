namespace Lattice.Runtime.Engines.Audio;

/// <summary>Why audio could not be decoded.</summary>
internal enum AudioDecodeError
{
    None,

    /// <summary>Not a format (or a variant of one) this decoder knows.</summary>
    Unsupported,

    /// <summary>A known format, but the data is damaged or truncated.</summary>
    Corrupt,

    /// <summary>Decoded, but shorter than <see cref="AudioDecoder.MinSeconds"/>.</summary>
    TooShort,

    /// <summary>Longer than the configured limit.</summary>
    TooLong,
}

/// <summary>Audio decoded to what Whisper takes: 16 kHz mono float samples in [-1, 1].</summary>
/// <param name="Samples">The samples at <see cref="AudioDecoder.TargetSampleRate"/>.</param>
/// <param name="Format">The container/codec found: <c>wav</c>, <c>mp3</c>, <c>flac</c>, <c>ogg-vorbis</c> or <c>ogg-opus</c>.</param>
/// <param name="SourceSampleRate">The source's sample rate in Hz.</param>
/// <param name="SourceChannels">The source's channel count.</param>
internal sealed record DecodedAudio(float[] Samples, string Format, int SourceSampleRate, int SourceChannels)
{
    public double DurationSeconds => Samples.Length / (double)AudioDecoder.TargetSampleRate;
}

/// <summary>The outcome of <see cref="AudioDecoder.Decode"/>: audio, or an error and a message for the client.</summary>
internal readonly record struct AudioDecodeResult(DecodedAudio? Audio, AudioDecodeError Error, string? Message)
{
    public static AudioDecodeResult Failed(AudioDecodeError error, string message) => new(null, error, message);
}

/// <summary>Thrown inside decoders; <see cref="AudioDecoder.Decode"/> turns it into a result.</summary>
internal sealed class InvalidAudioException(AudioDecodeError error, string message) : Exception(message)
{
    public AudioDecodeError Error { get; } = error;
}

/// <summary>
/// Decodes an uploaded audio file, recognised by its content (not its name), to 16 kHz mono float samples.
/// Supported, all in managed code: WAV (RIFF/RF64/WAVE_FORMAT_EXTENSIBLE; 8/16/24/32-bit integer PCM, 32/64-bit float,
/// A-law, µ-law), MP3 (MPEG-1/2/2.5 layers I–III, via NLayer), FLAC (native container), Ogg Vorbis (via NVorbis) and
/// Ogg Opus (via Concentus). Any sample rate from 1 kHz to 768 kHz and up to 32 channels.
/// </summary>
internal static class AudioDecoder
{
    public const int TargetSampleRate = 16_000;
    public const int MinSampleRate = 1_000;
    public const int MaxSampleRate = 768_000;
    public const int MaxChannels = 32;

    /// <summary>OpenAI refuses audio shorter than this.</summary>
    public const double MinSeconds = 0.1;

    public const string SupportedFormats = "wav, mp3, flac, ogg (vorbis, opus)";

    public static AudioDecodeResult Decode(ReadOnlyMemory<byte> data, double maxSeconds, CancellationToken cancellationToken)
    {
        string? kind;
        try
        {
            kind = Detect(data.Span);
        }
        catch (InvalidAudioException e)
        {
            // Telling Ogg codecs apart reads the first page, which may be damaged.
            return AudioDecodeResult.Failed(e.Error, $"The audio file could not be decoded: {e.Message}.");
        }
        if (kind is null)
        {
            return AudioDecodeResult.Failed(
                AudioDecodeError.Unsupported,
                $"The audio file's format is not supported or could not be recognised. Supported formats: {SupportedFormats}.");
        }

        var sink = new AudioSink(maxSeconds);
        try
        {
            switch (kind)
            {
                case "wav":
                    WavDecoder.Decode(data, sink, cancellationToken);
                    break;
                case "mp3":
                    Mp3Decoder.Decode(data, sink, cancellationToken);
                    break;
                case "flac":
                    FlacDecoder.Decode(data, sink, cancellationToken);
                    break;
                case "ogg-vorbis":
                    OggDecoder.DecodeVorbis(data, sink, cancellationToken);
                    break;
                case "ogg-opus":
                    OggDecoder.DecodeOpus(data, sink, cancellationToken);
                    break;
                default:
                    return AudioDecodeResult.Failed(
                        AudioDecodeError.Unsupported, $"The audio file's format ({kind}) is not supported. Supported formats: {SupportedFormats}.");
            }
        }
        catch (InvalidAudioException e)
        {
            return AudioDecodeResult.Failed(e.Error, e.Error switch
            {
                AudioDecodeError.Unsupported => $"The audio file ({Describe(kind)}) is not supported: {e.Message}. Supported formats: {SupportedFormats}.",
                AudioDecodeError.TooLong => $"The audio file is too long: {e.Message}.",
                _ => $"The audio file ({Describe(kind)}) could not be decoded: {e.Message}.",
            });
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception e) when (e is not (OutOfMemoryException or FileNotFoundException or FileLoadException or TypeLoadException
            or MissingMemberException or DllNotFoundException or BadImageFormatException))
        {
            // Third-party decoders signal damaged input with all kinds of exceptions; the file is at fault, not us.
            // (A missing decoder assembly is a deployment fault, so it is not caught.)
            return AudioDecodeResult.Failed(AudioDecodeError.Corrupt, $"The audio file ({Describe(kind)}) could not be decoded: it is damaged or truncated.");
        }

        if (sink.SampleRate == 0 || sink.Frames == 0)
        {
            return AudioDecodeResult.Failed(AudioDecodeError.Corrupt, $"The audio file ({Describe(kind)}) contains no audio.");
        }
        var samples = sink.Finish();
        var audio = new DecodedAudio(samples, kind, sink.SampleRate, sink.Channels);
        if (audio.DurationSeconds < MinSeconds)
        {
            return AudioDecodeResult.Failed(
                AudioDecodeError.TooShort, $"The audio file is too short ({audio.DurationSeconds:0.###} s). Minimum audio length is {MinSeconds} seconds.");
        }
        return new AudioDecodeResult(audio, AudioDecodeError.None, null);
    }

    /// <summary>The format of <paramref name="data"/> from its first bytes, or null when unknown.</summary>
    /// <exception cref="InvalidAudioException">The file starts like Ogg but its first page is damaged.</exception>
    public static string? Detect(ReadOnlySpan<byte> data)
    {
        if (data.Length >= 12 && (data[..4].SequenceEqual("RIFF"u8) || data[..4].SequenceEqual("RF64"u8)) && data.Slice(8, 4).SequenceEqual("WAVE"u8))
        {
            return "wav";
        }
        if (data.Length >= 4 && data[..4].SequenceEqual("OggS"u8))
        {
            return OggDecoder.DetectCodec(data);
        }

        var start = Id3v2Length(data);
        var rest = data[Math.Min(start, data.Length)..];
        if (rest.Length >= 4 && rest[..4].SequenceEqual("fLaC"u8))
        {
            return "flac";
        }
        if (Mp3Decoder.LooksLikeFrameHeader(rest))
        {
            return "mp3";
        }
        if (rest.Length >= 12 && rest.Slice(4, 4).SequenceEqual("ftyp"u8))
        {
            return "mp4";
        }
        if (rest.Length >= 4 && rest[0] == 0x1A && rest[1] == 0x45 && rest[2] == 0xDF && rest[3] == 0xA3)
        {
            return "webm";
        }
        return null;
    }

    /// <summary>Length of an ID3v2 tag at the start of <paramref name="data"/>, or 0.</summary>
    public static int Id3v2Length(ReadOnlySpan<byte> data)
    {
        if (data.Length < 10 || !data[..3].SequenceEqual("ID3"u8))
        {
            return 0;
        }
        // Synchsafe size: 4 × 7 bits, not counting the 10-byte header or the optional 10-byte footer.
        var size = ((data[6] & 0x7F) << 21) | ((data[7] & 0x7F) << 14) | ((data[8] & 0x7F) << 7) | (data[9] & 0x7F);
        var footer = (data[5] & 0x10) != 0 ? 10 : 0;
        return 10 + size + footer;
    }

    private static string Describe(string kind) => kind switch
    {
        "ogg-vorbis" => "Ogg Vorbis",
        "ogg-opus" => "Ogg Opus",
        _ => kind.ToUpperInvariant(),
    };
}
