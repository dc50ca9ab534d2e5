using System.Text;
using System.Text.Json;
using Lattice.Runtime.Engines.Whisper;
using Lattice.Testing;
using Whisper.net;

namespace Lattice.Runtime.Tests.Engines.Whisper;

/// <summary>Transcript building and the output formats, on segments made by hand (no model needed).</summary>
public sealed class TranscriptionWriterTests
{
    private static WhisperToken Token(int id, string text, long startCs, long endCs, float logProbability = -0.5f) =>
        new() { Id = id, Text = text, Start = startCs, End = endCs, ProbabilityLog = logProbability };

    private static SegmentData Segment(string text, double start, double end, params WhisperToken[] tokens) =>
        new(text, TimeSpan.FromSeconds(start), TimeSpan.FromSeconds(end), 0, 1, 0.9f, 0.01f, "en", tokens);

    private static readonly SegmentData[] TwoSegments =
    [
        Segment(" Ask not what your country can do --> for you,", 0, 3.5,
            Token(50364, "[_TT_0]", 0, 0),
            Token(3865, " Ask", 0, 40, -0.1f),
            Token(406, " not", 40, 80, -0.3f),
            Token(11, ",", 80, 85, -0.2f),
            Token(50539, "[_TT_175]", 350, 350)),
        Segment(" don't ask.", 3661.5, 3663.25,
            Token(500, " don", 366150, 366200),
            Token(380, "'t", 366200, 366250),
            Token(1029, " ask", 366250, 366300),
            Token(13, ".", 366300, 366325),
            Token(50257, "<|endoftext|>", 366325, 366325)),
    ];

    private static TranscriptionRequest Request(TranscriptionFormat format, bool words = false, bool segments = true) =>
        new(new byte[] { 1 }, "a.wav", "whisper-1", null, null, null, format, segments, words);

    [Fact]
    public void Segments_keep_text_timestamp_tokens_and_average_log_probability()
    {
        var transcript = WhisperEngine.BuildTranscript(TwoSegments, "en", 3700, 0.4f, words: false);

        Assert.Equal("Ask not what your country can do --> for you, don't ask.", transcript.Text);
        var first = transcript.Segments[0];
        Assert.Equal([50364, 3865, 406, 11, 50539], first.Tokens);
        Assert.Equal((-0.1 - 0.3 - 0.2) / 3, first.AverageLogProbability, 5);
        Assert.Equal(0.4f, first.Temperature);
        Assert.True(first.CompressionRatio > 0);
        Assert.Equal(1, transcript.Segments[1].Id);
        Assert.Equal(366150, transcript.Segments[1].Seek);
        Assert.Empty(transcript.Words);
    }

    [Fact]
    public void Words_join_subword_tokens_and_drop_edge_punctuation()
    {
        var transcript = WhisperEngine.BuildTranscript(TwoSegments, "en", 3700, 0, words: true);

        Assert.Equal(
            [
                new TranscriptWord("Ask", 0, 0.4),
                new TranscriptWord("not", 0.4, 0.85),
                new TranscriptWord("don't", 3661.5, 3662.5),
                new TranscriptWord("ask", 3662.5, 3663.25),
            ],
            transcript.Words);
    }

    [Fact]
    public void Segment_ends_are_clamped_to_the_audio()
    {
        var transcript = WhisperEngine.BuildTranscript([Segment(" Hello world.", 0, 30)], "en", 7.6, 0, words: false);
        Assert.Equal(7.6, transcript.Segments[0].End);
    }

    [Fact]
    public void Srt_and_vtt_number_time_and_clean_cues()
    {
        var transcript = WhisperEngine.BuildTranscript(TwoSegments, "en", 3700, 0, words: false);

        var (srtType, srt) = TranscriptionWriter.Write(transcript, Request(TranscriptionFormat.Srt));
        Assert.Equal("text/plain; charset=utf-8", srtType);
        Assert.Equal(
            "1\n00:00:00,000 --> 00:00:03,500\nAsk not what your country can do -> for you,\n\n"
            + "2\n01:01:01,500 --> 01:01:03,250\ndon't ask.\n\n",
            Encoding.UTF8.GetString(srt));

        var (_, vtt) = TranscriptionWriter.Write(transcript, Request(TranscriptionFormat.Vtt));
        Assert.Equal(
            "WEBVTT\n\n00:00:00.000 --> 00:00:03.500\nAsk not what your country can do -> for you,\n\n"
            + "01:01:01.500 --> 01:01:03.250\ndon't ask.\n\n",
            Encoding.UTF8.GetString(vtt));
    }

    [Fact]
    public void Verbose_json_validates_with_words_and_segments()
    {
        var transcript = WhisperEngine.BuildTranscript(TwoSegments, "fr", 3700.25, 0, words: true);
        var (type, body) = TranscriptionWriter.Write(transcript, Request(TranscriptionFormat.VerboseJson, words: true));
        var json = Encoding.UTF8.GetString(body);

        Assert.Equal("application/json", type);
        OpenApiContract.AssertValid(OpenApiContract.Schemas.CreateTranscriptionResponseVerboseJson, json);
        using var document = JsonDocument.Parse(json);
        Assert.Equal("french", document.RootElement.GetProperty("language").GetString());
        Assert.Equal(3701, document.RootElement.GetProperty("usage").GetProperty("seconds").GetInt32());
        Assert.Equal(4, document.RootElement.GetProperty("words").GetArrayLength());
    }

    [Fact]
    public void An_empty_transcript_is_written_in_every_format()
    {
        var transcript = WhisperEngine.BuildTranscript([], "en", 1.2, 0, words: true);

        string Body(TranscriptionFormat format, bool words = false) => Encoding.UTF8.GetString(TranscriptionWriter.Write(transcript, Request(format, words)).Body);
        Assert.Equal("{\"text\":\"\",\"usage\":{\"type\":\"duration\",\"seconds\":2}}", Body(TranscriptionFormat.Json));
        Assert.Equal("\n", Body(TranscriptionFormat.Text));
        Assert.Equal("", Body(TranscriptionFormat.Srt));
        Assert.Equal("WEBVTT\n\n", Body(TranscriptionFormat.Vtt));
        var verbose = Body(TranscriptionFormat.VerboseJson, words: true);
        OpenApiContract.AssertValid(OpenApiContract.Schemas.CreateTranscriptionResponseVerboseJson, verbose);
        Assert.Contains("\"words\":[],\"segments\":[]", verbose, StringComparison.Ordinal);
    }

    [Fact]
    public void Json_escapes_nothing_a_client_would_not_expect()
    {
        var transcript = WhisperEngine.BuildTranscript([Segment(" Ça coûte 5 € — \"quoted\" <b>", 0, 2)], "fr", 2, 0, words: false);
        var (_, body) = TranscriptionWriter.Write(transcript, Request(TranscriptionFormat.Json));

        using var document = JsonDocument.Parse(body);
        Assert.Equal("Ça coûte 5 € — \"quoted\" <b>", document.RootElement.GetProperty("text").GetString());
        Assert.Contains("Ça coûte 5 €", Encoding.UTF8.GetString(body), StringComparison.Ordinal);
    }
}
