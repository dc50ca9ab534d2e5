using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Lattice.Runtime.Engines.Whisper;

/// <summary>One transcribed segment, with the fields of OpenAI's <c>TranscriptionSegment</c>.</summary>
internal sealed record TranscriptSegment(
    int Id,
    int Seek,
    double Start,
    double End,
    string Text,
    IReadOnlyList<int> Tokens,
    float Temperature,
    double AverageLogProbability,
    double CompressionRatio,
    double NoSpeechProbability);

/// <summary>One word with its timestamps (OpenAI's <c>TranscriptionWord</c>).</summary>
internal sealed record TranscriptWord(string Word, double Start, double End);

/// <summary>A finished transcription.</summary>
/// <param name="Language">Whisper's language code (<c>en</c>), or null when unknown.</param>
/// <param name="Duration">The audio's length in seconds.</param>
/// <param name="Segments">Segments in time order; their texts keep Whisper's leading spaces.</param>
/// <param name="Words">Words in time order (empty unless word timestamps were asked for).</param>
internal sealed record Transcript(string? Language, double Duration, IReadOnlyList<TranscriptSegment> Segments, IReadOnlyList<TranscriptWord> Words)
{
    /// <summary>The whole text as OpenAI returns it: the segments' texts joined, without surrounding whitespace.</summary>
    public string Text => string.Concat(Segments.Select(s => s.Text)).Trim();
}

/// <summary>Writes a <see cref="Transcript"/> in each of OpenAI's <c>response_format</c>s, byte for byte as OpenAI does.</summary>
internal static class TranscriptionWriter
{
    public const string JsonContentType = "application/json";
    public const string TextContentType = "text/plain; charset=utf-8";

    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static (string ContentType, byte[] Body) Write(Transcript transcript, TranscriptionRequest request) => request.Format switch
    {
        TranscriptionFormat.Json => (JsonContentType, Json(transcript)),
        TranscriptionFormat.Text => (TextContentType, Encoding.UTF8.GetBytes(transcript.Text + "\n")),
        TranscriptionFormat.Srt => (TextContentType, Encoding.UTF8.GetBytes(Srt(transcript))),
        TranscriptionFormat.Vtt => (TextContentType, Encoding.UTF8.GetBytes(Vtt(transcript))),
        TranscriptionFormat.VerboseJson => (JsonContentType, VerboseJson(transcript, request)),
        _ => throw new ArgumentOutOfRangeException(nameof(request), request.Format, "Unknown response format."),
    };

    /// <summary>OpenAI bills whisper by the second, rounded up.</summary>
    public static int BilledSeconds(double duration) => (int)Math.Ceiling(Math.Round(duration, 3));

    private static byte[] Json(Transcript transcript)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            writer.WriteStartObject();
            writer.WriteString("text", transcript.Text);
            WriteUsage(writer, transcript);
            writer.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    private static byte[] VerboseJson(Transcript transcript, TranscriptionRequest request)
    {
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            writer.WriteStartObject();
            writer.WriteString("task", "transcribe");
            writer.WriteString("language", transcript.Language is { } code ? WhisperLanguages.NameOf(code) : "unknown");
            writer.WriteNumber("duration", Math.Round(transcript.Duration, 3));
            writer.WriteString("text", transcript.Text);
            if (request.WordTimestamps)
            {
                writer.WriteStartArray("words");
                foreach (var word in transcript.Words)
                {
                    writer.WriteStartObject();
                    writer.WriteString("word", word.Word);
                    writer.WriteNumber("start", Seconds(word.Start));
                    writer.WriteNumber("end", Seconds(word.End));
                    writer.WriteEndObject();
                }
                writer.WriteEndArray();
            }
            if (request.SegmentTimestamps)
            {
                writer.WriteStartArray("segments");
                foreach (var segment in transcript.Segments)
                {
                    writer.WriteStartObject();
                    writer.WriteNumber("id", segment.Id);
                    writer.WriteNumber("seek", segment.Seek);
                    writer.WriteNumber("start", Seconds(segment.Start));
                    writer.WriteNumber("end", Seconds(segment.End));
                    writer.WriteString("text", segment.Text);
                    writer.WriteStartArray("tokens");
                    foreach (var token in segment.Tokens)
                    {
                        writer.WriteNumberValue(token);
                    }
                    writer.WriteEndArray();
                    writer.WriteNumber("temperature", segment.Temperature);
                    writer.WriteNumber("avg_logprob", Finite(segment.AverageLogProbability));
                    writer.WriteNumber("compression_ratio", Finite(segment.CompressionRatio));
                    writer.WriteNumber("no_speech_prob", Finite(segment.NoSpeechProbability));
                    writer.WriteEndObject();
                }
                writer.WriteEndArray();
            }
            WriteUsage(writer, transcript);
            writer.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    private static void WriteUsage(Utf8JsonWriter writer, Transcript transcript)
    {
        writer.WriteStartObject("usage");
        writer.WriteString("type", "duration");
        writer.WriteNumber("seconds", BilledSeconds(transcript.Duration));
        writer.WriteEndObject();
    }

    /// <summary>SubRip: numbered cues, <c>HH:MM:SS,mmm</c> times, a blank line after each cue.</summary>
    private static string Srt(Transcript transcript)
    {
        var text = new StringBuilder();
        var number = 1;
        foreach (var segment in transcript.Segments)
        {
            text.Append(number++.ToString(CultureInfo.InvariantCulture)).Append('\n')
                .Append(Timestamp(segment.Start, ',')).Append(" --> ").Append(Timestamp(segment.End, ',')).Append('\n')
                .Append(CueText(segment.Text)).Append("\n\n");
        }
        return text.ToString();
    }

    /// <summary>WebVTT: a <c>WEBVTT</c> header, then cues with <c>HH:MM:SS.mmm</c> times.</summary>
    private static string Vtt(Transcript transcript)
    {
        var text = new StringBuilder("WEBVTT\n\n");
        foreach (var segment in transcript.Segments)
        {
            text.Append(Timestamp(segment.Start, '.')).Append(" --> ").Append(Timestamp(segment.End, '.')).Append('\n')
                .Append(CueText(segment.Text)).Append("\n\n");
        }
        return text.ToString();
    }

    // As openai/whisper's writers: trimmed, and "-->" would end the cue's timing line early in some players.
    private static string CueText(string text) => text.Trim().Replace("-->", "->", StringComparison.Ordinal);

    private static string Timestamp(double seconds, char decimalSeparator)
    {
        var milliseconds = (long)Math.Round(Math.Max(0, seconds) * 1000);
        var hours = milliseconds / 3_600_000;
        var minutes = milliseconds / 60_000 % 60;
        var secs = milliseconds / 1000 % 60;
        var millis = milliseconds % 1000;
        return string.Create(CultureInfo.InvariantCulture, $"{hours:00}:{minutes:00}:{secs:00}{decimalSeparator}{millis:000}");
    }

    private static double Seconds(double value) => Math.Round(value, 3);

    private static double Finite(double value) => double.IsFinite(value) ? value : 0;
}
