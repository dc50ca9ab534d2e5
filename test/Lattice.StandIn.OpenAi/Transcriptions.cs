using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Net.Http.Headers;

namespace Lattice.StandIn.OpenAi;

/// <summary>POST /v1/audio/transcriptions: always transcribes to "Hello from the stand-in."</summary>
internal static class Transcriptions
{
    public const string Text = "Hello from the stand-in.";

    private static readonly byte[] s_text = Encoding.UTF8.GetBytes(Text + "\n");

    private static readonly byte[] s_srt = Encoding.UTF8.GetBytes(
        "1\n00:00:00,000 --> 00:00:01,000\nHello from\n\n" +
        "2\n00:00:01,000 --> 00:00:02,000\nthe stand-in.\n\n");

    private static readonly byte[] s_vtt = Encoding.UTF8.GetBytes(
        "WEBVTT\n\n" +
        "00:00:00.000 --> 00:00:01.000\nHello from\n\n" +
        "00:00:01.000 --> 00:00:02.000\nthe stand-in.\n\n");

    private sealed class Segment
    {
        public required int Id { get; init; }

        public required string Start { get; init; }

        public required string End { get; init; }

        public required string Text { get; init; }

        public required int[] Tokens { get; init; }

        public required string AvgLogprob { get; init; }

        public required string CompressionRatio { get; init; }

        public required string NoSpeechProb { get; init; }
    }

    private static readonly Segment[] s_segments =
    [
        new Segment
        {
            Id = 0, Start = "0.0", End = "1.0", Text = " Hello from", Tokens = [50364, 2425, 490, 50414],
            AvgLogprob = "-0.25", CompressionRatio = "0.8", NoSpeechProb = "0.01",
        },
        new Segment
        {
            Id = 1, Start = "1.0", End = "2.0", Text = " the stand-in.", Tokens = [50414, 264, 1463, 12, 259, 13, 50464],
            AvgLogprob = "-0.25", CompressionRatio = "0.8", NoSpeechProb = "0.01",
        },
    ];

    private static readonly (string Word, string Start, string End)[] s_words =
    [
        ("Hello", "0.0", "0.5"),
        ("from", "0.5", "1.0"),
        ("the", "1.0", "1.5"),
        ("stand-in.", "1.5", "2.0"),
    ];

    private sealed class Form
    {
        public string? Model { get; set; }

        public string? Language { get; set; }

        public string? ResponseFormat { get; set; }

        public bool WordTimestamps { get; set; }

        public UploadInfo? File { get; set; }
    }

    public static async Task Handle(HttpContext ctx)
    {
        var buffered = RequestBody.Get(ctx);
        string? contentType = ctx.Request.ContentType;
        if (contentType is null
            || !MediaTypeHeaderValue.TryParse(contentType, out MediaTypeHeaderValue? mediaType)
            || !mediaType.MediaType.Equals("multipart/form-data", StringComparison.OrdinalIgnoreCase))
        {
            await JsonOut.Error(ctx, StatusCodes.Status400BadRequest,
                $"Invalid Content-Type header ({contentType ?? "none"}), expected multipart/form-data. " +
                "(HINT: If you're using curl, you can pass -F 'file=@path/to/file' to send a multipart request)",
                "invalid_request_error", null, null);
            return;
        }

        string boundary = HeaderUtilities.RemoveQuotes(mediaType.Boundary).ToString();
        if (string.IsNullOrEmpty(boundary))
        {
            await JsonOut.Error(ctx, StatusCodes.Status400BadRequest,
                "Could not parse multipart form: missing boundary in the Content-Type header.",
                "invalid_request_error", null, null);
            return;
        }

        Form form;
        try
        {
            form = await ReadFormAsync(buffered.Body, boundary, ctx.RequestAborted);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or FormatException)
        {
            await JsonOut.Error(ctx, StatusCodes.Status400BadRequest,
                "Could not parse multipart form: " + e.Message, "invalid_request_error", null, null);
            return;
        }

        if (form.File is null)
        {
            await JsonOut.MissingParameter(ctx, "file");
            return;
        }

        if (string.IsNullOrEmpty(form.Model))
        {
            await JsonOut.MissingParameter(ctx, "model");
            return;
        }

        if (buffered.Record is not null)
        {
            buffered.Record.Upload = form.File;
        }

        string format = string.IsNullOrEmpty(form.ResponseFormat) ? "json" : form.ResponseFormat;
        if (format is not ("json" or "text" or "srt" or "vtt" or "verbose_json"))
        {
            await JsonOut.InvalidValue(ctx, "response_format",
                $"Invalid value for 'response_format': expected one of json, text, srt, verbose_json or vtt, but got '{format}' instead.");
            return;
        }

        var fault = Fault.From(form.Model);
        if (fault.Kind != FaultKind.None && await fault.ApplyBeforeResponseAsync(ctx, streaming: false))
        {
            return;
        }

        switch (format)
        {
            case "text":
                WritePlain(ctx, s_text);
                return;
            case "srt":
                WritePlain(ctx, s_srt);
                return;
            case "vtt":
                WritePlain(ctx, s_vtt);
                return;
            case "verbose_json":
                await WriteVerbose(ctx, form);
                return;
            default:
                {
                    var w = JsonOut.Begin();
                    w.WriteStartObject();
                    w.WriteString("text", Text);
                    WriteUsage(w);
                    w.WriteEndObject();
                    await JsonOut.Send(ctx, StatusCodes.Status200OK, w);
                    return;
                }
        }
    }

    private static async Task<Form> ReadFormAsync(byte[] body, string boundary, CancellationToken ct)
    {
        var form = new Form();
        var reader = new MultipartReader(boundary, new MemoryStream(body, writable: false));
        MultipartSection? section;
        while ((section = await reader.ReadNextSectionAsync(ct)) is not null)
        {
            if (!ContentDispositionHeaderValue.TryParse(section.ContentDisposition, out ContentDispositionHeaderValue? cd)
                || !cd.DispositionType.Equals("form-data", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }

            string name = HeaderUtilities.RemoveQuotes(cd.Name).ToString();
            if (name == "file" || cd.IsFileDisposition())
            {
                if (name != "file")
                {
                    continue; // Some other file part: ignore (OpenAI would reject unknown parameters).
                }

                string? fileName = cd.FileNameStar.HasValue
                    ? cd.FileNameStar.ToString()
                    : cd.FileName.HasValue ? HeaderUtilities.RemoveQuotes(cd.FileName).ToString() : null;
                (long length, string sha) = await HashAsync(section.Body, ct);
                form.File = new UploadInfo(name, fileName, section.ContentType, length, sha);
                continue;
            }

            string value;
            using (var sr = new StreamReader(section.Body, Encoding.UTF8, detectEncodingFromByteOrderMarks: false, leaveOpen: true))
            {
                value = await sr.ReadToEndAsync(ct);
            }

            switch (name)
            {
                case "model":
                    form.Model = value;
                    break;
                case "language":
                    form.Language = value;
                    break;
                case "response_format":
                    form.ResponseFormat = value;
                    break;
                case "timestamp_granularities[]" or "timestamp_granularities":
                    if (value == "word")
                    {
                        form.WordTimestamps = true;
                    }

                    break;
            }
        }

        return form;
    }

    private static async Task<(long Length, string Sha256)> HashAsync(Stream body, CancellationToken ct)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
        long length = 0;
        try
        {
            int read;
            while ((read = await body.ReadAsync(buffer, ct)) > 0)
            {
                hash.AppendData(buffer, 0, read);
                length += read;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        return (length, Convert.ToHexStringLower(hash.GetHashAndReset()));
    }

    private static void WritePlain(HttpContext ctx, byte[] content)
    {
        var response = ctx.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/plain; charset=utf-8";
        response.ContentLength = content.Length;
        response.BodyWriter.Write(content);
    }

    private static void WriteUsage(Utf8JsonWriter w)
    {
        w.WriteStartObject("usage");
        w.WriteString("type", "duration");
        w.WriteNumber("seconds", 2);
        w.WriteEndObject();
    }

    private static void WriteRaw(Utf8JsonWriter w, string property, string rawNumber)
    {
        w.WritePropertyName(property);
        w.WriteRawValue(rawNumber, skipInputValidation: true);
    }

    private static Task WriteVerbose(HttpContext ctx, Form form)
    {
        var w = JsonOut.Begin();
        w.WriteStartObject();
        w.WriteString("task", "transcribe");
        w.WriteString("language", string.IsNullOrEmpty(form.Language) ? "english" : form.Language);
        WriteRaw(w, "duration", "2.0");
        w.WriteString("text", Text);
        if (form.WordTimestamps)
        {
            w.WriteStartArray("words");
            foreach (var (word, start, end) in s_words)
            {
                w.WriteStartObject();
                w.WriteString("word", word);
                WriteRaw(w, "start", start);
                WriteRaw(w, "end", end);
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }

        w.WriteStartArray("segments");
        foreach (Segment s in s_segments)
        {
            w.WriteStartObject();
            w.WriteNumber("id", s.Id);
            w.WriteNumber("seek", 0);
            WriteRaw(w, "start", s.Start);
            WriteRaw(w, "end", s.End);
            w.WriteString("text", s.Text);
            w.WriteStartArray("tokens");
            foreach (int t in s.Tokens)
            {
                w.WriteNumberValue(t);
            }

            w.WriteEndArray();
            WriteRaw(w, "temperature", "0.0");
            WriteRaw(w, "avg_logprob", s.AvgLogprob);
            WriteRaw(w, "compression_ratio", s.CompressionRatio);
            WriteRaw(w, "no_speech_prob", s.NoSpeechProb);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        WriteUsage(w);
        w.WriteEndObject();
        return JsonOut.Send(ctx, StatusCodes.Status200OK, w);
    }
}
