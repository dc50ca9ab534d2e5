using System.Text;
using System.Text.Json;
using Lattice.Runtime.Engines;
using Lattice.Runtime.Engines.Whisper;
using Lattice.Testing;
using static Lattice.Runtime.Tests.Engines.Whisper.TestAudio;

namespace Lattice.Runtime.Tests.Engines.Whisper;

/// <summary>
/// The engine end to end with the synthetic model (always " Hello world.", one segment per 30-s window) and
/// whisper.cpp's stub (always nothing). Each transcription runs a 30-s encoder window, so most tests name the
/// language: automatic detection costs one more.
/// </summary>
public sealed class WhisperEngineTests(WhisperEngineFixture fixture) : IClassFixture<WhisperEngineFixture>
{
    private static readonly (string, string) English = ("language", "en");

    private static byte[] Jfk => File.ReadAllBytes(JfkPath);

    private static byte[] ShortTone(double seconds = 1.2) => Wav(16000, 1, SampleFormat.Int16, seconds, Sine(440, 0.1));

    [Fact]
    public void Advertises_each_model_with_the_sha256_of_its_file()
    {
        Assert.Equal("whisper", fixture.Engine.Kind);
        Assert.Equal(
            [
                new EngineCapability("audio.transcriptions", "fake", "09a2bad25c21db0e6d7a3a15e7fcc76b77e65ff0661cf17f50a2f72159cce9e4"),
                new EngineCapability("audio.transcriptions", "stub", "c486fb9f14a28b1c1dc252741a431646cc573450c900b9d9c406e10294aa01e6"),
            ],
            fixture.Engine.Capabilities);
        Assert.Equal(1.0, fixture.Progress[^1]);
        Assert.Equal(fixture.Progress.Order(), fixture.Progress);
    }

    [Fact]
    public async Task Json_is_the_text_and_the_billed_duration()
    {
        var (output, usage) = await fixture.TranscribeAsync(Jfk, "json");

        Assert.Equal(200, output.Status);
        Assert.Equal("application/json", output.ContentType);
        OpenApiContract.AssertValid(OpenApiContract.Schemas.CreateTranscriptionResponseJson, output.Text);
        var json = WhisperEngineFixture.ParseJson(output);
        Assert.Equal("Hello world.", json.GetProperty("text").GetString()!.Trim());
        Assert.Equal("duration", json.GetProperty("usage").GetProperty("type").GetString());
        Assert.Equal(11, json.GetProperty("usage").GetProperty("seconds").GetInt32());
        Assert.Equal(new EngineUsage(AudioSeconds: 11.0), usage);
    }

    [Fact]
    public async Task Text_is_the_transcript_and_a_newline()
    {
        var (output, usage) = await fixture.TranscribeAsync(ShortTone(), "text", fields: English);

        Assert.Equal(200, output.Status);
        Assert.Equal("text/plain; charset=utf-8", output.ContentType);
        Assert.Equal("Hello world.\n", output.Text);
        Assert.Equal(1.2, usage.AudioSeconds, 6);
    }

    [Fact]
    public async Task Srt_has_numbered_cues_with_comma_milliseconds()
    {
        var (output, _) = await fixture.TranscribeAsync(ShortTone(), "srt", fields: English);

        Assert.Equal(200, output.Status);
        Assert.Equal("text/plain; charset=utf-8", output.ContentType);
        Assert.Matches(@"^1\n\d{2}:\d{2}:\d{2},\d{3} --> \d{2}:\d{2}:\d{2},\d{3}\nHello world\.\n\n$", output.Text);
        Assert.Equal("1\n00:00:00,000 --> 00:00:01,200\nHello world.\n\n", output.Text);
    }

    [Fact]
    public async Task Vtt_starts_with_its_header_and_uses_dot_milliseconds()
    {
        var (output, _) = await fixture.TranscribeAsync(ShortTone(), "vtt", fields: English);

        Assert.Equal(200, output.Status);
        Assert.StartsWith("WEBVTT\n\n", output.Text);
        Assert.Matches(@"^WEBVTT\n\n\d{2}:\d{2}:\d{2}\.\d{3} --> \d{2}:\d{2}:\d{2}\.\d{3}\nHello world\.\n\n$", output.Text);
        Assert.Equal("WEBVTT\n\n00:00:00.000 --> 00:00:01.200\nHello world.\n\n", output.Text);
    }

    [Fact]
    public async Task Verbose_json_has_openais_shape_and_detects_the_language()
    {
        var (output, _) = await fixture.TranscribeAsync(File.ReadAllBytes(HelloPath), "verbose_json");

        Assert.Equal(200, output.Status);
        Assert.Equal("application/json", output.ContentType);
        OpenApiContract.AssertValid(OpenApiContract.Schemas.CreateTranscriptionResponseVerboseJson, output.Text);
        var json = WhisperEngineFixture.ParseJson(output);
        Assert.Equal("transcribe", json.GetProperty("task").GetString());
        Assert.Equal("english", json.GetProperty("language").GetString());
        Assert.Equal(121554 / 16000.0, json.GetProperty("duration").GetDouble(), 3);
        Assert.Equal("Hello world.", json.GetProperty("text").GetString());
        Assert.False(json.TryGetProperty("words", out _));

        var segment = Assert.Single(json.GetProperty("segments").EnumerateArray().ToArray());
        Assert.Equal(0, segment.GetProperty("id").GetInt32());
        Assert.Equal(0, segment.GetProperty("seek").GetInt32());
        Assert.Equal(0.0, segment.GetProperty("start").GetDouble());
        Assert.InRange(segment.GetProperty("end").GetDouble(), 0.1, 121554 / 16000.0);
        Assert.Equal(" Hello world.", segment.GetProperty("text").GetString());
        Assert.NotEmpty(segment.GetProperty("tokens").EnumerateArray());
        Assert.Equal(0.0, segment.GetProperty("temperature").GetDouble());
        Assert.True(segment.GetProperty("compression_ratio").GetDouble() > 0);
        Assert.InRange(segment.GetProperty("no_speech_prob").GetDouble(), 0, 1);
        Assert.True(segment.GetProperty("avg_logprob").GetDouble() <= 0);
        Assert.Equal(
            ["task", "language", "duration", "text", "segments", "usage"],
            json.EnumerateObject().Select(p => p.Name));
    }

    [Fact]
    public async Task Word_timestamps_are_listed_when_asked_for()
    {
        var (output, _) = await fixture.TranscribeAsync(
            Jfk, "verbose_json", fields: [English, ("timestamp_granularities[]", "word"), ("timestamp_granularities[]", "segment")]);

        Assert.Equal(200, output.Status);
        OpenApiContract.AssertValid(OpenApiContract.Schemas.CreateTranscriptionResponseVerboseJson, output.Text);
        var json = WhisperEngineFixture.ParseJson(output);
        var words = json.GetProperty("words").EnumerateArray().ToArray();
        Assert.Equal(["Hello", "world"], words.Select(w => w.GetProperty("word").GetString()));
        var previousEnd = 0.0;
        foreach (var word in words)
        {
            var start = word.GetProperty("start").GetDouble();
            var end = word.GetProperty("end").GetDouble();
            Assert.True(start >= previousEnd && end >= start && end <= 11.0, $"{start}–{end} after {previousEnd}");
            previousEnd = end;
        }
        Assert.Single(json.GetProperty("segments").EnumerateArray());

        var (wordsOnly, _) = await fixture.TranscribeAsync(Jfk, "verbose_json", fields: [English, ("timestamp_granularities[]", "word")]);
        var wordsOnlyJson = WhisperEngineFixture.ParseJson(wordsOnly);
        Assert.Equal(2, wordsOnlyJson.GetProperty("words").GetArrayLength());
        Assert.False(wordsOnlyJson.TryGetProperty("segments", out _));
    }

    [Theory]
    [InlineData(44100, 2, SampleFormat.Int16)]
    [InlineData(8000, 1, SampleFormat.UInt8)]
    [InlineData(48000, 1, SampleFormat.Float32)]
    public async Task Generated_wavs_are_resampled_to_their_true_duration(int rate, int channels, SampleFormat format)
    {
        var wav = Wav(rate, channels, format, 2.5, (c, t) => 0.3 * Math.Sin(2 * Math.PI * (300 + (100 * c)) * t));
        var (output, usage) = await fixture.TranscribeAsync(wav, "verbose_json", fields: English);

        Assert.Equal(200, output.Status);
        var json = WhisperEngineFixture.ParseJson(output);
        Assert.Equal(2.5, json.GetProperty("duration").GetDouble(), 0.1);
        Assert.Equal(2.5, usage.AudioSeconds, 3);
        Assert.Equal("Hello world.", json.GetProperty("text").GetString());
    }

    // Each decoder is checked against the source audio in AudioDecoderTests; these go through the whole engine.
    [Theory]
    [InlineData("hello-2s.mp3")]
    [InlineData("hello-2s.opus")]
    public async Task Compressed_formats_are_transcribed(string file)
    {
        var (output, usage) = await fixture.RunAsync(
            TranscriptionForm.DotNet(File.ReadAllBytes(FixturePath(file)), file, ("model", "whisper-1"), English));

        Assert.Equal(200, output.Status);
        Assert.Equal("Hello world.", WhisperEngineFixture.ParseJson(output).GetProperty("text").GetString());
        Assert.Equal(2.0, usage.AudioSeconds, 2);
    }

    // The stub runs tiny-sized compute on empty weights (seconds per request), so it is used sparingly; the other
    // formats of an empty transcript are covered in TranscriptionWriterTests.
    [Fact]
    public async Task A_model_that_hears_nothing_gives_an_empty_text()
    {
        var (json, usage) = await fixture.TranscribeAsync(ShortTone(), "json", WhisperEngineFixture.StubModel, English);

        Assert.Equal(200, json.Status);
        OpenApiContract.AssertValid(OpenApiContract.Schemas.CreateTranscriptionResponseJson, json.Text);
        Assert.Equal("", WhisperEngineFixture.ParseJson(json).GetProperty("text").GetString());
        Assert.Equal(1.2, usage.AudioSeconds, 6);
    }

    [Fact]
    public async Task Without_segments_verbose_json_is_empty_and_the_language_is_detected_separately()
    {
        var (output, _) = await fixture.TranscribeAsync(ShortTone(), "verbose_json", WhisperEngineFixture.StubModel);

        Assert.Equal(200, output.Status);
        OpenApiContract.AssertValid(OpenApiContract.Schemas.CreateTranscriptionResponseVerboseJson, output.Text);
        var json = WhisperEngineFixture.ParseJson(output);
        Assert.Equal(0, json.GetProperty("segments").GetArrayLength());
        Assert.Equal("", json.GetProperty("text").GetString());
        Assert.False(string.IsNullOrEmpty(json.GetProperty("language").GetString()));
    }

    [Fact]
    public async Task Audio_shorter_than_a_second_is_padded_for_whisper_but_reported_at_its_length()
    {
        var (output, usage) = await fixture.TranscribeAsync(ShortTone(0.4), "verbose_json", fields: English);

        Assert.Equal(200, output.Status);
        var json = WhisperEngineFixture.ParseJson(output);
        Assert.Equal("Hello world.", json.GetProperty("text").GetString());
        Assert.Equal(0.4, json.GetProperty("duration").GetDouble(), 3);
        Assert.True(json.GetProperty("segments")[0].GetProperty("end").GetDouble() <= 0.4);
        Assert.Equal(0.4, usage.AudioSeconds, 6);
    }

    [Fact]
    public async Task Quoted_and_unquoted_forms_and_rfc5987_file_names_are_read()
    {
        var audio = ShortTone();

        var (quoted, _) = await fixture.RunAsync(TranscriptionForm.Quoted(audio, "clip.wav", ("model", "whisper-1"), English, ("response_format", "text")));
        Assert.Equal(200, quoted.Status);
        Assert.Equal("Hello world.\n", quoted.Text);

        var dotnet = TranscriptionForm.DotNet(audio, "héllo wörld.wav", ("model", "whisper-1"), English, ("response_format", "text"));
        Assert.Contains("filename*=utf-8''", Encoding.UTF8.GetString(dotnet.Body), StringComparison.OrdinalIgnoreCase);
        Assert.Contains("name=file;", Encoding.UTF8.GetString(dotnet.Body), StringComparison.Ordinal);
        Assert.Contains("boundary=\"", dotnet.ContentType, StringComparison.Ordinal);
        var (unquoted, _) = await fixture.RunAsync(dotnet);
        Assert.Equal(200, unquoted.Status);
        Assert.Equal("Hello world.\n", unquoted.Text);

        var onlyStar = TranscriptionForm.Raw(
            "xYz-42",
            [.. "Content-Disposition: form-data; name=file; filename*=UTF-8''h%C3%A9llo.wav\r\nContent-Type: audio/wav\r\n\r\n"u8, .. audio],
            "content-disposition: form-data; name=language\r\n\r\nen"u8.ToArray(),
            "Content-Disposition: form-data; name=response_format\r\n\r\ntext"u8.ToArray());
        var (star, _) = await fixture.RunAsync(onlyStar);
        Assert.Equal(200, star.Status);
        Assert.Equal("Hello world.\n", star.Text);
    }

    [Theory]
    [InlineData("garbage")]
    [InlineData("truncated-wav")]
    [InlineData("mp4")]
    [InlineData("too-short")]
    public async Task Audio_that_cannot_be_decoded_is_a_400_naming_file(string kind)
    {
        var file = kind switch
        {
            "garbage" => "definitely not audio, just bytes that look like nothing"u8.ToArray(),
            "truncated-wav" => ShortTone()[..38],
            "mp4" => [0, 0, 0, 32, .. "ftypisom"u8, .. new byte[64]],
            _ => ShortTone(0.05),
        };
        var (output, usage) = await fixture.TranscribeAsync(file, "json");

        AssertError(output, 400, "file");
        Assert.Equal(kind == "too-short" ? "audio_too_short" : "invalid_audio_format", ErrorOf(output).GetProperty("code").GetString());
        Assert.Equal(new EngineUsage(), usage);
    }

    [Fact]
    public async Task A_form_without_a_file_is_a_400_naming_file()
    {
        var (output, _) = await fixture.RunAsync(TranscriptionForm.DotNet(null, fields: [("model", "whisper-1")]));

        AssertError(output, 400, "file");
        Assert.Equal("missing_required_parameter", ErrorOf(output).GetProperty("code").GetString());

        var (empty, _) = await fixture.RunAsync(TranscriptionForm.DotNet([], fields: [("model", "whisper-1")]));
        AssertError(empty, 400, "file");
    }

    [Theory]
    [InlineData("response_format", "xml", "response_format")]
    [InlineData("temperature", "hot", "temperature")]
    [InlineData("temperature", "1.5", "temperature")]
    [InlineData("language", "klingon", "language")]
    [InlineData("timestamp_granularities[]", "character", "timestamp_granularities")]
    public async Task Bad_fields_are_a_400_naming_them(string field, string value, string param)
    {
        var (output, _) = await fixture.TranscribeAsync(ShortTone(), "json", fields: (field, value));
        AssertError(output, 400, param);
    }

    [Fact]
    public async Task Bodies_that_are_not_multipart_forms_are_a_400()
    {
        var (json, _) = await fixture.RunAsync(("{\"file\":\"x\"}"u8.ToArray(), "application/json"));
        AssertError(json, 400, null);

        var (unterminated, _) = await fixture.RunAsync(
            ("--b\r\nContent-Disposition: form-data; name=file; filename=a.wav\r\n\r\nRIFF"u8.ToArray(), "multipart/form-data; boundary=b"));
        AssertError(unterminated, 400, null);

        var (noBoundary, _) = await fixture.RunAsync(("--b--\r\n"u8.ToArray(), "multipart/form-data"));
        AssertError(noBoundary, 400, null);
    }

    [Fact]
    public async Task An_unknown_model_is_a_404()
    {
        var (output, _) = await fixture.RunAsync(TranscriptionForm.DotNet(ShortTone()), model: "whisper-large");
        AssertError(output, 404, "model");
        Assert.Equal("model_not_found", ErrorOf(output).GetProperty("code").GetString());
    }

    [Fact]
    public async Task Temperature_and_an_uppercase_language_are_accepted()
    {
        var (output, _) = await fixture.TranscribeAsync(ShortTone(), "verbose_json", fields: [("language", "EN"), ("temperature", "0.2")]);

        Assert.Equal(200, output.Status);
        var json = WhisperEngineFixture.ParseJson(output);
        Assert.Equal("english", json.GetProperty("language").GetString());
        Assert.Equal(0.2, json.GetProperty("segments")[0].GetProperty("temperature").GetDouble(), 5);
    }

    [Fact]
    public async Task Parallel_requests_each_get_their_own_processor()
    {
        var audio = ShortTone();
        var results = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ =>
            Task.Run(() => fixture.TranscribeAsync(audio, "text", WhisperEngineFixture.FakeModel, English))));

        Assert.All(results, result =>
        {
            Assert.Equal(200, result.Output.Status);
            Assert.Equal("Hello world.\n", result.Output.Text);
        });
    }

    [Fact]
    public async Task A_cancelled_request_throws_and_writes_nothing()
    {
        using var cancellation = new CancellationTokenSource();
        await cancellation.CancelAsync();
        var output = new RecordingOutput();
        var form = TranscriptionForm.DotNet(ShortTone(), fields: English);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => fixture.Engine.ExecuteAsync(
            new EngineRequest(WhisperEngine.TaskName, WhisperEngineFixture.FakeModel, form.Body, form.ContentType, false), output, cancellation.Token)
            .WaitAsync(WhisperEngineFixture.Timeout));
        Assert.Null(output.Status);
    }

    [Fact]
    public async Task Limits_prompts_and_loading_errors_follow_the_options()
    {
        await using var engine = new WhisperEngine(new WhisperEngineOptions
        {
            Models = [new WhisperModelOptions { Name = "prompt-proof", Path = WhisperEngineFixture.FakeModelPath, IgnorePrompt = true, Threads = 1 }],
            MaxFileBytes = 100_000,
            MaxAudioSeconds = 2,
        });
        Assert.Empty(engine.Capabilities);
        await engine.LoadAsync(null, CancellationToken.None).WaitAsync(WhisperEngineFixture.Timeout);

        async Task<RecordingOutput> Run((byte[] Body, string ContentType) form)
        {
            var output = new RecordingOutput();
            await engine.ExecuteAsync(new EngineRequest(WhisperEngine.TaskName, "prompt-proof", form.Body, form.ContentType, false), output, CancellationToken.None)
                .WaitAsync(WhisperEngineFixture.Timeout);
            return output;
        }

        // The synthetic model derails with a prompt; this model is configured to ignore it.
        var prompted = await Run(TranscriptionForm.DotNet(ShortTone(), fields: [English, ("prompt", "An earlier sentence."), ("response_format", "text")]));
        Assert.Equal("Hello world.\n", prompted.Text);

        AssertError(await Run(TranscriptionForm.DotNet(Jfk, fields: English)), 400, "file");           // 352 KB > 100 KB
        AssertError(await Run(TranscriptionForm.DotNet(ShortTone(2.5), fields: English)), 400, "file"); // 2.5 s > 2 s

        await Assert.ThrowsAsync<FileNotFoundException>(() => new WhisperEngine(new WhisperEngineOptions
        {
            Models = [new WhisperModelOptions { Name = "missing", Path = "/nonexistent/ggml-missing.bin" }],
        }).LoadAsync(null, CancellationToken.None));
        Assert.Throws<ArgumentException>(() => new WhisperEngine(new WhisperEngineOptions()));
        Assert.Throws<ArgumentException>(() => new WhisperEngine(new WhisperEngineOptions
        {
            Models = [new() { Name = "a", Path = "x" }, new() { Name = "a", Path = "y" }],
        }));
    }

    [Fact]
    public async Task Disposing_waits_for_transcriptions_in_flight_and_then_refuses_new_ones()
    {
        var engine = new WhisperEngine(new WhisperEngineOptions
        {
            Models = [new WhisperModelOptions { Name = "disposable", Path = WhisperEngineFixture.FakeModelPath, Threads = 1 }],
        });
        await engine.LoadAsync(null, CancellationToken.None).WaitAsync(WhisperEngineFixture.Timeout);
        var form = TranscriptionForm.DotNet(ShortTone(), fields: [English, ("response_format", "text")]);
        var output = new RecordingOutput();

        var running = engine.ExecuteAsync(new EngineRequest(WhisperEngine.TaskName, "disposable", form.Body, form.ContentType, false), output, CancellationToken.None);
        await engine.DisposeAsync().AsTask().WaitAsync(WhisperEngineFixture.Timeout);
        await running.WaitAsync(WhisperEngineFixture.Timeout);

        Assert.Equal("Hello world.\n", output.Text);
        Assert.Empty(engine.Capabilities);
        await Assert.ThrowsAsync<ObjectDisposedException>(() =>
            engine.ExecuteAsync(new EngineRequest(WhisperEngine.TaskName, "disposable", form.Body, form.ContentType, false), new RecordingOutput(), CancellationToken.None));
    }

    private static JsonElement ErrorOf(RecordingOutput output) => WhisperEngineFixture.ParseJson(output).GetProperty("error");

    private static void AssertError(RecordingOutput output, int status, string? param)
    {
        Assert.Equal(status, output.Status);
        Assert.Equal("application/json", output.ContentType);
        OpenApiContract.AssertValid(OpenApiContract.Schemas.ErrorResponse, output.Text);
        var error = ErrorOf(output);
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
    }
}
