using System.Diagnostics;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using Lattice.Protocol;
using Lattice.Runtime.Engines.Audio;
using Microsoft.Extensions.Logging;
using Whisper.net;

namespace Lattice.Runtime.Engines.Whisper;

/// <summary>
/// Serves OpenAI's <c>/v1/audio/transcriptions</c> (task <c>audio.transcriptions</c>) with whisper.cpp through
/// Whisper.net. Each model is loaded once (one <see cref="WhisperFactory"/>); every request builds its own processor,
/// since processors are not thread-safe, so requests run concurrently.
/// </summary>
/// <remarks>
/// The body is OpenAI's multipart/form-data (<c>file</c>, <c>model</c>, <c>language</c>, <c>prompt</c>,
/// <c>temperature</c>, <c>response_format</c>, <c>timestamp_granularities[]</c>). Audio is recognised by content; see
/// <see cref="AudioDecoder"/> for the formats. Usage is the audio's duration in seconds. Audio and transcripts are
/// never logged.
/// </remarks>
public sealed class WhisperEngine : IEngine
{
    /// <summary>The engine kind in the config.</summary>
    public const string EngineKind = "whisper";

    /// <summary>The task class this engine serves.</summary>
    public const string TaskName = "audio.transcriptions";

    // whisper.cpp returns no segments for less than one second (100 mel frames) of audio; shorter audio is padded
    // with silence to a little more than that.
    private const int MinWhisperSamples = AudioDecoder.TargetSampleRate + (AudioDecoder.TargetSampleRate / 10);

    // Ids from the end of text onwards are whisper's special tokens (multilingual vocabulary; English-only models
    // have <|endoftext|> at 50256, which is caught by its text).
    private const int FirstSpecialTokenId = 50257;

    private readonly WhisperEngineOptions _options;
    private readonly ILogger? _logger;
    private readonly Lock _gate = new();
    private Dictionary<string, LoadedModel>? _models;
    private IReadOnlyList<EngineCapability> _capabilities = [];
    private readonly InFlightGate _requests = new();

    public WhisperEngine(WhisperEngineOptions options, ILogger<WhisperEngine>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _logger = logger;
        WhisperNativeLogging.Configure(logger);
    }

    public string Kind => EngineKind;

    public IReadOnlyList<EngineCapability> Capabilities => Volatile.Read(ref _capabilities);

    public async Task LoadAsync(IProgress<double>? progress, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_requests.IsClosed, this);
        if (Volatile.Read(ref _models) is not null)
        {
            progress?.Report(1);
            return;
        }
        progress?.Report(0);
        var models = new Dictionary<string, LoadedModel>(StringComparer.Ordinal);
        try
        {
            for (var i = 0; i < _options.Models.Count; i++)
            {
                var config = _options.Models[i];
                var path = Path.GetFullPath(config.Path);
                if (!File.Exists(path))
                {
                    throw new FileNotFoundException($"The whisper model file for '{config.Name}' does not exist.", path);
                }
                var sha256 = await ComputeSha256Async(path, cancellationToken).ConfigureAwait(false);
                progress?.Report((i + 0.5) / _options.Models.Count);
                var factory = await Task.Run(() => LoadFactory(path), cancellationToken).ConfigureAwait(false);
                models[config.Name] = new LoadedModel(config, factory, sha256);
                if (_logger is not null)
                {
                    WhisperNativeLogging.Loaded(_logger, config.Name);
                }
                progress?.Report((i + 1.0) / _options.Models.Count);
            }
        }
        catch
        {
            foreach (var model in models.Values)
            {
                model.Factory.Dispose();
            }
            throw;
        }

        lock (_gate)
        {
            if (_models is not null || _requests.IsClosed)
            {
                foreach (var model in models.Values)
                {
                    model.Factory.Dispose();
                }
                return;
            }
            _models = models;
            Volatile.Write(
                ref _capabilities,
                _options.Models.Select(m => new EngineCapability(TaskName, m.Name, models[m.Name].Sha256)).ToArray());
        }
        progress?.Report(1);
    }

    public async Task<EngineUsage> ExecuteAsync(EngineRequest request, IEngineOutput output, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(output);
        _requests.Enter(this);
        try
        {
            var models = Volatile.Read(ref _models) ?? throw new InvalidOperationException("The whisper engine is not loaded; call LoadAsync first.");
            return await ExecuteCoreAsync(models, request, output, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _requests.Exit();
        }
    }

    private async Task<EngineUsage> ExecuteCoreAsync(
        Dictionary<string, LoadedModel> models, EngineRequest request, IEngineOutput output, CancellationToken cancellationToken)
    {
        if (!models.TryGetValue(request.Model, out var model))
        {
            return await EngineErrors.RejectAsync(
                output, 404, $"The model '{request.Model}' does not exist on this engine.", "model", ErrorCodes.ModelNotFound, cancellationToken)
                .ConfigureAwait(false);
        }

        var (parsed, error) = await TranscriptionRequestReader.ReadAsync(request.Body, request.ContentType, _options.MaxFileBytes, cancellationToken)
            .ConfigureAwait(false);
        if (parsed is null)
        {
            return await EngineErrors.RejectAsync(output, 400, error!.Message, error.Param, error.Code, cancellationToken).ConfigureAwait(false);
        }

        var decoded = await Task.Run(() => AudioDecoder.Decode(parsed.File, _options.MaxAudioSeconds, cancellationToken), cancellationToken)
            .ConfigureAwait(false);
        if (decoded.Audio is not { } audio)
        {
            var code = decoded.Error switch
            {
                AudioDecodeError.TooShort => "audio_too_short",
                AudioDecodeError.TooLong => ErrorCodes.RequestTooLarge,
                _ => "invalid_audio_format",
            };
            return await EngineErrors.RejectAsync(output, 400, decoded.Message!, "file", code, cancellationToken).ConfigureAwait(false);
        }

        var stopwatch = Stopwatch.StartNew();
        Transcript transcript;
        try
        {
            transcript = await TranscribeAsync(model, parsed, audio, output, cancellationToken).ConfigureAwait(false);
        }
        catch (WhisperProcessingException) when (!cancellationToken.IsCancellationRequested)
        {
            return await EngineErrors.RejectAsync(output, 500, "The transcription failed in whisper.cpp.", null, null, cancellationToken).ConfigureAwait(false);
        }
        if (_logger is not null)
        {
            WhisperNativeLogging.Transcribed(_logger, audio.DurationSeconds, audio.Format, model.Config.Name, stopwatch.ElapsedMilliseconds);
        }

        var (contentType, body) = TranscriptionWriter.Write(transcript, parsed);
        await output.StartAsync(200, contentType, cancellationToken).ConfigureAwait(false);
        await output.WriteAsync(body, cancellationToken).ConfigureAwait(false);
        return new EngineUsage(AudioSeconds: audio.DurationSeconds);
    }

    /// <summary>Waits for requests in flight, then frees the models.</summary>
    public async ValueTask DisposeAsync()
    {
        if (!await _requests.CloseAsync().ConfigureAwait(false))
        {
            return;
        }

        Dictionary<string, LoadedModel>? models;
        lock (_gate)
        {
            models = _models;
            _models = null;
            Volatile.Write(ref _capabilities, []);
        }
        if (models is not null)
        {
            foreach (var model in models.Values)
            {
                model.Factory.Dispose();
            }
        }
    }

    private sealed record LoadedModel(WhisperModelOptions Config, WhisperFactory Factory, string Sha256)
    {
        public int Threads => Config.Threads ?? Math.Min(WhisperModelOptions.DefaultMaxThreads, Environment.ProcessorCount);
    }

    private static WhisperFactory LoadFactory(string path)
    {
        var factory = WhisperFactory.FromPath(path);
        try
        {
            // Throws WhisperModelLoadException when whisper.cpp could not read the file.
            _ = factory.CreateBuilder();
            return factory;
        }
        catch
        {
            factory.Dispose();
            throw;
        }
    }

    private static async Task<string> ComputeSha256Async(string path, CancellationToken cancellationToken)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, useAsync: true);
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(stream, cancellationToken).ConfigureAwait(false));
    }

    /// <remarks>
    /// The audio transcribed so far (the end of the last segment whisper.cpp produced) is reported to
    /// <paramref name="output"/>, so a cancelled request is metered for it.
    /// </remarks>
    private static async Task<Transcript> TranscribeAsync(
        LoadedModel model, TranscriptionRequest request, DecodedAudio audio, IEngineOutput output, CancellationToken cancellationToken)
    {
        var builder = model.Factory.CreateBuilder().WithThreads(model.Threads);
        builder = request.Language is { } language ? builder.WithLanguage(language) : builder.WithLanguageDetection();
        if (request.Temperature is { } temperature)
        {
            builder = builder.WithTemperature(temperature);
        }
        if (request.Prompt is { } prompt && !model.Config.IgnorePrompt)
        {
            builder = builder.WithPrompt(prompt);
        }
        if (request.WordTimestamps)
        {
            builder = builder.WithTokenTimestamps();
        }

        var samples = audio.Samples;
        if (samples.Length < MinWhisperSamples)
        {
            Array.Resize(ref samples, MinWhisperSamples);
        }

        await using var processor = builder.Build();
        var segments = new List<SegmentData>();
        await foreach (var segment in processor.ProcessAsync(samples, cancellationToken).ConfigureAwait(false))
        {
            segments.Add(segment);
            output.ReportUsage(new EngineUsage(AudioSeconds: Math.Min(segment.End.TotalSeconds, audio.DurationSeconds)));
        }

        var detected = request.Language ?? segments.FirstOrDefault(s => !string.IsNullOrEmpty(s.Language))?.Language;
        if (detected is null && request.Format == TranscriptionFormat.VerboseJson)
        {
            // Nothing was said, so no segment carries the language; ask for it (one encoder pass over the first 30 s).
            detected = await Task.Run(() => processor.DetectLanguage(samples), cancellationToken).ConfigureAwait(false);
        }

        return BuildTranscript(segments, detected, audio.DurationSeconds, request.Temperature ?? 0f, request.WordTimestamps);
    }

    internal static Transcript BuildTranscript(IReadOnlyList<SegmentData> segments, string? language, double duration, float temperature, bool words)
    {
        var result = new List<TranscriptSegment>(segments.Count);
        var wordList = new List<TranscriptWord>();
        foreach (var segment in segments)
        {
            var end = Math.Min(segment.End.TotalSeconds, duration);
            var start = Math.Min(segment.Start.TotalSeconds, end);
            var tokens = new List<int>(segment.Tokens.Length);
            double logProbabilities = 0;
            var textTokens = 0;
            foreach (var token in segment.Tokens)
            {
                if (!IsSpecial(token))
                {
                    tokens.Add(token.Id);
                    logProbabilities += token.ProbabilityLog;
                    textTokens++;
                }
                else if (token.Text?.StartsWith("[_TT_", StringComparison.Ordinal) == true)
                {
                    tokens.Add(token.Id); // timestamp tokens are part of OpenAI's segment tokens too
                }
            }
            result.Add(new TranscriptSegment(
                result.Count,
                (int)Math.Round(start * 100),
                start,
                end,
                segment.Text,
                tokens,
                temperature,
                textTokens == 0 ? 0 : logProbabilities / textTokens,
                CompressionRatio(segment.Text),
                segment.NoSpeechProbability));
            if (words)
            {
                AddWords(segment, duration, wordList);
            }
        }
        return new Transcript(language, duration, result, wordList);
    }

    /// <summary>
    /// Groups a segment's text tokens into words (a token starting with a space starts a word) timed by whisper.cpp's
    /// token timestamps; punctuation at a word's edges is dropped, as in OpenAI's word list.
    /// </summary>
    private static void AddWords(SegmentData segment, double duration, List<TranscriptWord> words)
    {
        var text = new StringBuilder();
        double start = 0, end = 0;
        foreach (var token in segment.Tokens)
        {
            if (IsSpecial(token) || string.IsNullOrEmpty(token.Text))
            {
                continue;
            }
            var tokenStart = Math.Clamp(token.Start / 100.0, 0, duration);
            var tokenEnd = Math.Clamp(token.End / 100.0, tokenStart, duration);
            if (token.Text[0] == ' ' && text.Length > 0)
            {
                Flush();
            }
            if (text.Length == 0)
            {
                start = tokenStart;
            }
            text.Append(token.Text);
            end = Math.Max(end, tokenEnd);
        }
        Flush();

        void Flush()
        {
            var word = TrimPunctuation(text.ToString());
            text.Clear();
            if (word.Length > 0)
            {
                var previousEnd = words.Count > 0 ? words[^1].End : 0;
                var wordStart = Math.Max(start, previousEnd);
                words.Add(new TranscriptWord(word, wordStart, Math.Max(end, wordStart)));
            }
            end = 0;
        }
    }

    private static string TrimPunctuation(string word)
    {
        var span = word.AsSpan().Trim();
        while (span.Length > 0 && (char.IsPunctuation(span[0]) || char.IsSymbol(span[0])))
        {
            span = span[1..];
        }
        while (span.Length > 0 && (char.IsPunctuation(span[^1]) || char.IsSymbol(span[^1])))
        {
            span = span[..^1];
        }
        return span.Trim().ToString();
    }

    private static bool IsSpecial(WhisperToken token)
    {
        if (token.Id >= FirstSpecialTokenId)
        {
            return true;
        }
        var text = token.Text;
        return text is not null
            && ((text.StartsWith("[_", StringComparison.Ordinal) && text.EndsWith(']'))
                || (text.StartsWith("<|", StringComparison.Ordinal) && text.EndsWith("|>", StringComparison.Ordinal)));
    }

    /// <summary>UTF-8 length over zlib-compressed length, as openai/whisper computes it to spot repetition loops.</summary>
    private static double CompressionRatio(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        if (bytes.Length == 0)
        {
            return 0;
        }
        using var compressed = new MemoryStream();
        using (var zlib = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
        {
            zlib.Write(bytes);
        }
        return (double)bytes.Length / compressed.Length;
    }
}
