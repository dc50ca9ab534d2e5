using CsCheck;
using Lattice.Runtime.Engines.Audio;
using Lattice.Testing;
using static Lattice.Runtime.Tests.Engines.Whisper.TestAudio;

namespace Lattice.Runtime.Tests.Fuzz;

/// <summary>
/// <see cref="AudioDecoder.Decode"/> on uploads nobody vouches for: arbitrary bytes behind each format's magic, and
/// byte-level mutations of real files (the corpus holds the heads of the Whisper fixtures and small WAVs). Every input
/// decodes to audio or to an error result with a message; nothing throws, and memory stays bounded whatever a header
/// declares.
/// </summary>
[Trait("Category", Fuzzing.Category)]
public sealed class AudioDecoderFuzzTests
{
    private const string Project = "Lattice.Runtime.Tests";
    private const double MaxSeconds = 30;

    // The output is at most 30 s at 16 kHz (1.9 MB of floats, twice that while its buffer grows); decoders keep a few
    // blocks besides. Anything near this bound means a declared size was trusted.
    private const long AllocationBound = 48L * 1024 * 1024;

    private static readonly byte[][] Seeds =
    [
        .. Fuzzing.Corpus(Project, "audio").Select(f => f.Bytes),
        Wav(16000, 1, SampleFormat.Int16, 0.15, Sine(440)),
        Wav(44100, 2, SampleFormat.Float32, 0.12, Sine(300), extensible: true),
        Wav(22050, 1, SampleFormat.Int24, 0.12, Sine(1000)),
    ];

    private static readonly byte[][] Magics =
    [
        "RIFF\0\0\0\0WAVEfmt "u8.ToArray(),
        [.. "RF64"u8, 0xFF, 0xFF, 0xFF, 0xFF, .. "WAVEds64"u8],
        "OggS\0\x02"u8.ToArray(),
        "fLaC\0\0\0\x22"u8.ToArray(),
        [0xFF, 0xFB, 0x90, 0x64],
        "ID3\x04\0\0\0\0\0\x10"u8.ToArray(),
    ];

    private static readonly Gen<byte[]> BehindMagic =
        Gen.Select(Gen.Int[0, Magics.Length - 1], Fuzzing.Bytes(512)).Select((m, tail) => (byte[])[.. Magics[m], .. tail]);

    private static readonly Gen<byte[]> Inputs = Gen.Frequency((1, Fuzzing.Bytes(128)), (2, BehindMagic), (8, Fuzzing.Mutations(Seeds)));

    public static TheoryData<string> CorpusFiles => new(Fuzzing.Corpus(Project, "audio").Select(f => f.Name));

    [Fact]
    public void Any_upload_decodes_to_audio_or_to_an_error_without_throwing() =>
        Fuzzing.Check(Inputs, CheckDecode, iterations: 4_000, print: Fuzzing.Describe);

    [Theory]
    [MemberData(nameof(CorpusFiles))]
    public void The_corpus_replays(string name) =>
        CheckDecode(Fuzzing.Corpus(Project, "audio").Single(f => f.Name == name).Bytes);

    internal static void CheckDecode(byte[] bytes)
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        var result = AudioDecoder.Decode(bytes, MaxSeconds, CancellationToken.None);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.True(allocated < AllocationBound, $"{allocated:N0} bytes allocated decoding {bytes.Length:N0} bytes");
        if (result.Audio is { } audio)
        {
            Assert.Equal(AudioDecodeError.None, result.Error);
            Assert.InRange(audio.DurationSeconds, AudioDecoder.MinSeconds, MaxSeconds + 0.01);
            foreach (var sample in audio.Samples)
            {
                // The resampler's filter may overshoot full scale a little; NaN or a runaway value is a decoder bug.
                Assert.True(float.IsFinite(sample) && Math.Abs(sample) <= 2f, $"sample {sample}");
            }
        }
        else
        {
            Assert.NotEqual(AudioDecodeError.None, result.Error);
            Assert.False(string.IsNullOrWhiteSpace(result.Message));
        }
    }
}
