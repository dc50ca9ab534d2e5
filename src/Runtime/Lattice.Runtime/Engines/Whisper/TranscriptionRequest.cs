using System.Globalization;
using System.Text;
using Lattice.Protocol;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Net.Http.Headers;

namespace Lattice.Runtime.Engines.Whisper;

/// <summary>The <c>response_format</c> values of OpenAI's transcription endpoint.</summary>
internal enum TranscriptionFormat
{
    Json,
    Text,
    Srt,
    Vtt,
    VerboseJson,
}

/// <summary>The fields of OpenAI's <c>CreateTranscriptionRequest</c> the engine uses.</summary>
internal sealed record TranscriptionRequest(
    ReadOnlyMemory<byte> File,
    string? FileName,
    string? Model,
    string? Language,
    string? Prompt,
    float? Temperature,
    TranscriptionFormat Format,
    bool SegmentTimestamps,
    bool WordTimestamps);

/// <summary>Why a request was refused: the envelope's message, <c>param</c> and <c>code</c>.</summary>
internal sealed record TranscriptionRequestError(string Message, string? Param, string Code);

/// <summary>
/// Reads the multipart/form-data body of a transcription request with ASP.NET Core's <see cref="MultipartReader"/> and
/// <see cref="ContentDispositionHeaderValue"/> (the parser behind <c>IFormFile</c>), which accept what the SDKs send:
/// quoted and unquoted parameters, quoted boundaries, and RFC 5987 <c>filename*=</c>.
/// </summary>
internal static class TranscriptionRequestReader
{
    /// <summary>Largest text field (the prompt is the only long one; OpenAI's limit is far below this).</summary>
    private const int MaxFieldBytes = 64 * 1024;

    private const int MaxSections = 64;

    public static async Task<(TranscriptionRequest? Request, TranscriptionRequestError? Error)> ReadAsync(
        ReadOnlyMemory<byte> body, string contentType, long maxFileBytes, CancellationToken cancellationToken)
    {
        if (!MediaTypeHeaderValue.TryParse(contentType, out var mediaType)
            || !mediaType.MediaType.Equals("multipart/form-data", StringComparison.OrdinalIgnoreCase))
        {
            return Fail("The request body must be multipart/form-data.", null, ErrorCodes.UnsupportedMediaType);
        }
        var boundary = HeaderUtilities.RemoveQuotes(mediaType.Boundary).Value;
        if (string.IsNullOrEmpty(boundary) || boundary.Length > 70)
        {
            return Fail("The multipart/form-data content type has a missing or invalid boundary.", null, ErrorCodes.InvalidValue);
        }

        byte[]? file = null;
        string? fileName = null;
        var fields = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        try
        {
            using var stream = Audio.AudioStreams.Open(body);
            var reader = new MultipartReader(boundary, stream);
            var sections = 0;
            while (await reader.ReadNextSectionAsync(cancellationToken).ConfigureAwait(false) is { } section)
            {
                if (++sections > MaxSections)
                {
                    return Fail($"The form has more than {MaxSections} parts.", null, ErrorCodes.InvalidValue);
                }
                if (!ContentDispositionHeaderValue.TryParse(section.ContentDisposition, out var disposition)
                    || !disposition.DispositionType.Equals("form-data", StringComparison.OrdinalIgnoreCase))
                {
                    return Fail("A part of the form has no 'Content-Disposition: form-data' header.", null, ErrorCodes.InvalidValue);
                }
                var name = HeaderUtilities.RemoveQuotes(disposition.Name).Value ?? string.Empty;
                using var content = new MemoryStream();
                await section.Body.CopyToAsync(content, cancellationToken).ConfigureAwait(false);

                if (name == "file")
                {
                    if (file is not null)
                    {
                        return Fail("The form has more than one 'file'.", "file", ErrorCodes.InvalidValue);
                    }
                    if (content.Length > maxFileBytes)
                    {
                        return Fail($"The audio file is larger than the limit of {maxFileBytes} bytes.", "file", ErrorCodes.RequestTooLarge);
                    }
                    file = content.ToArray();
                    var star = disposition.FileNameStar;
                    fileName = star.HasValue ? star.Value : HeaderUtilities.RemoveQuotes(disposition.FileName).Value;
                    continue;
                }
                if (content.Length > MaxFieldBytes)
                {
                    return Fail($"The form field '{name}' is larger than {MaxFieldBytes} bytes.", name, ErrorCodes.InvalidValue);
                }
                if (!fields.TryGetValue(name, out var values))
                {
                    fields[name] = values = [];
                }
                values.Add(Encoding.UTF8.GetString(content.GetBuffer(), 0, (int)content.Length));
            }
        }
        catch (Exception e) when (e is IOException or InvalidDataException)
        {
            // MultipartReader reports malformed bodies (no closing boundary, oversized headers) this way.
            return Fail("The request body is not valid multipart/form-data.", null, ErrorCodes.InvalidValue);
        }

        if (file is null)
        {
            return Fail("'file' is required: send the audio as a form field named 'file'.", "file", ErrorCodes.MissingRequiredParameter);
        }
        if (file.Length == 0)
        {
            return Fail("The audio file is empty.", "file", ErrorCodes.InvalidValue);
        }

        var format = TranscriptionFormat.Json;
        if (Single(fields, "response_format") is { } formatText)
        {
            switch (formatText)
            {
                case "json": format = TranscriptionFormat.Json; break;
                case "text": format = TranscriptionFormat.Text; break;
                case "srt": format = TranscriptionFormat.Srt; break;
                case "vtt": format = TranscriptionFormat.Vtt; break;
                case "verbose_json": format = TranscriptionFormat.VerboseJson; break;
                default:
                    return Fail("'response_format' must be one of json, text, srt, verbose_json, vtt.", "response_format", ErrorCodes.InvalidValue);
            }
        }

        float? temperature = null;
        if (Single(fields, "temperature") is { } temperatureText)
        {
            if (!float.TryParse(temperatureText, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !(value is >= 0 and <= 1))
            {
                return Fail("'temperature' must be a number between 0 and 1.", "temperature", ErrorCodes.InvalidValue);
            }
            temperature = value;
        }

        string? language = null;
        if (Single(fields, "language") is { } languageText)
        {
            language = languageText.Trim().ToLowerInvariant();
            if (!WhisperLanguages.IsSupported(language))
            {
                return Fail(
                    $"'language' must be an ISO-639-1 code Whisper knows (such as 'en'); '{languageText}' is not one.", "language", ErrorCodes.InvalidValue);
            }
        }

        bool segments = false, words = false;
        var granularities = new List<string>();
        if (fields.TryGetValue("timestamp_granularities[]", out var bracketed))
        {
            granularities.AddRange(bracketed);
        }
        if (fields.TryGetValue("timestamp_granularities", out var plain))
        {
            granularities.AddRange(plain);
        }
        foreach (var granularity in granularities)
        {
            switch (granularity.Trim())
            {
                case "segment": segments = true; break;
                case "word": words = true; break;
                default:
                    return Fail("'timestamp_granularities[]' values must be 'segment' or 'word'.", "timestamp_granularities", ErrorCodes.InvalidValue);
            }
        }
        // Without a choice, verbose_json has segments (as OpenAI's does).
        if (!segments && !words)
        {
            segments = true;
        }

        return (new TranscriptionRequest(
            file,
            fileName,
            Single(fields, "model"),
            language,
            Single(fields, "prompt") is { Length: > 0 } prompt ? prompt : null,
            temperature,
            format,
            segments,
            words), null);
    }

    // A field sent more than once counts with its last value; an empty value counts as absent.
    private static string? Single(Dictionary<string, List<string>> fields, string name) =>
        fields.TryGetValue(name, out var values) && values[^1] is { Length: > 0 } value ? value : null;

    private static (TranscriptionRequest?, TranscriptionRequestError?) Fail(string message, string? param, string code) =>
        (null, new TranscriptionRequestError(message, param, code));
}
