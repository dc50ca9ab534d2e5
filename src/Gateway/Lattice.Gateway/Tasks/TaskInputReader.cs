using System.Buffers;
using System.Text;
using System.Text.Json;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.OpenAi;
using Lattice.Protocol;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Net.Http.Headers;

namespace Lattice.Gateway.Tasks;

/// <summary>Reads a request body, validates it against its task class's schema and finds <c>model</c> and <c>stream</c>.</summary>
public static class TaskInputReader
{
    public static async ValueTask<(TaskInput? Input, GatewayError Error)> ReadAsync(HttpContext context, RequestBodies bodies, Caller caller, TaskClass task)
    {
        var maxBytes = bodies.LimitFor(task);
        var request = context.Request;
        var mediaType = request.ContentType;
        if (task.ContentKind == TaskContentKind.Multipart)
        {
            if (mediaType is null || !MediaTypeHeaderValue.TryParse(mediaType, out var parsed)
                || !parsed.MediaType.Equals("multipart/form-data", StringComparison.OrdinalIgnoreCase))
            {
                return (null, GatewayError.UnsupportedMediaType("multipart/form-data"));
            }
            var boundary = HeaderUtilities.RemoveQuotes(parsed.Boundary).Value;
            if (string.IsNullOrEmpty(boundary) || boundary.Length > 200)
            {
                return (null, GatewayError.InvalidRequest("The multipart/form-data Content-Type has no valid boundary.", null, ErrorCodes.InvalidValue));
            }
            var (body, length, readError) = await bodies.ReadAsync(context, caller, maxBytes, task.Name);
            if (readError is { } error)
            {
                return (null, error);
            }
            return await ReadMultipartAsync(task, body, length, boundary, mediaType);
        }

        // Like OpenAI, read any body as JSON (curl's default form type included) except multipart, which is surely a mistake.
        if (mediaType is not null && mediaType.StartsWith("multipart/", StringComparison.OrdinalIgnoreCase))
        {
            return (null, GatewayError.UnsupportedMediaType("application/json"));
        }
        {
            var (body, length, readError) = await bodies.ReadAsync(context, caller, maxBytes, task.Name);
            if (readError is { } error)
            {
                return (null, error);
            }
            return ReadJson(task, body, length);
        }
    }

    internal static (TaskInput? Input, GatewayError Error) ReadJson(TaskClass task, byte[] body, int length)
    {
        if (length == 0)
        {
            return (null, GatewayError.InvalidJson("The body is empty."));
        }

        if (TextProblem(body.AsSpan(0, length)) is { } problem)
        {
            return (null, GatewayError.InvalidJson(problem));
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body.AsMemory(0, length), new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException ex)
        {
            return (null, GatewayError.InvalidJson($"Parse error at line {ex.LineNumber + 1}, position {ex.BytePositionInLine}."));
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return (null, GatewayError.InvalidRequest("The request body must be a JSON object.", null, "invalid_type"));
            }

            if (task.Schema.Validate(root) is { } violation)
            {
                return (null, GatewayError.InvalidRequest(violation.Message, violation.Param, violation.Code));
            }

            if (!root.TryGetProperty("model", out var modelElement))
            {
                return (null, GatewayError.InvalidRequest("Missing required parameter: 'model'.", "model", ErrorCodes.MissingRequiredParameter));
            }
            if (modelElement.ValueKind != JsonValueKind.String || modelElement.GetString() is not { Length: > 0 } model)
            {
                return (null, GatewayError.InvalidRequest("Invalid type for 'model': expected a non-empty string.", "model", "invalid_type"));
            }

            var stream = root.TryGetProperty("stream", out var streamElement) && streamElement.ValueKind == JsonValueKind.True;
            if (stream && !task.Streams)
            {
                return (null, GatewayError.InvalidRequest($"The task '{task.Name}' does not stream; remove 'stream' or set it to false.", "stream"));
            }

            var includeUsage = stream && root.TryGetProperty("stream_options", out var streamOptions) && streamOptions.ValueKind == JsonValueKind.Object
                && streamOptions.TryGetProperty("include_usage", out var includeElement) && includeElement.ValueKind == JsonValueKind.True;
            var (start, tokenLength) = JsonFields.FindTopLevelString(body.AsSpan(0, length), "model"u8);
            return (new TaskInput
            {
                Body = body,
                Length = length,
                Model = model,
                Stream = stream,
                IncludeUsage = includeUsage,
                MaxTokens = MaxTokensOf(root),
                ContentType = "application/json",
                ModelValueStart = start,
                ModelValueLength = tokenLength,
            }, default);
        }
    }

    /// <summary>The output cap a limit or budget can count on: <c>max_completion_tokens</c>, else <c>max_tokens</c>, when a positive integer.</summary>
    private static long? MaxTokensOf(JsonElement root)
    {
        foreach (var name in (ReadOnlySpan<string>)["max_completion_tokens", "max_tokens"])
        {
            if (root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var n) && n > 0)
            {
                return n;
            }
        }
        return null;
    }

    private static async ValueTask<(TaskInput? Input, GatewayError Error)> ReadMultipartAsync(
        TaskClass task, byte[] body, int length, string boundary, string contentType)
    {
        var parts = new List<MultipartPart>();
        var fields = new Dictionary<string, object>(StringComparer.Ordinal);
        try
        {
            var reader = new MultipartReader(boundary, new MemoryStream(body, 0, length, writable: false))
            {
                HeadersCountLimit = 32,
                HeadersLengthLimit = 16 * 1024,
            };
            while (await reader.ReadNextSectionAsync() is { } section)
            {
                if (!ContentDispositionHeaderValue.TryParse(section.ContentDisposition, out var disposition)
                    || !disposition.DispositionType.Equals("form-data", StringComparison.OrdinalIgnoreCase))
                {
                    return (null, GatewayError.InvalidRequest("Every multipart section needs 'Content-Disposition: form-data' with a name.", null));
                }
                var name = HeaderUtilities.RemoveQuotes(disposition.Name).Value;
                if (string.IsNullOrEmpty(name))
                {
                    return (null, GatewayError.InvalidRequest("A multipart section has no field name.", null));
                }
                using var content = new MemoryStream();
                await section.Body.CopyToAsync(content);
                var bytes = content.ToArray();
                var headers = section.Headers?.Select(h => new KeyValuePair<string, string>(h.Key, h.Value.ToString())).ToList()
                    ?? [];
                parts.Add(new MultipartPart(name, headers, bytes));

                string? fileNameStar;
                try
                {
                    fileNameStar = HeaderUtilities.RemoveQuotes(disposition.FileNameStar).Value;
                }
                catch (ArgumentException)
                {
                    // ASP.NET's RFC 5987 decoder throws on some malformed values (found by the multipart fuzz test).
                    return (null, GatewayError.InvalidRequest("A multipart section's 'filename*' is malformed.", null));
                }
                var fileName = fileNameStar ?? HeaderUtilities.RemoveQuotes(disposition.FileName).Value;
                if (fileName is not null)
                {
                    fields[name] = new FileField(fileName, section.ContentType, bytes.Length);
                }
                else
                {
                    var text = Encoding.UTF8.GetString(bytes);
                    if (name.EndsWith("[]", StringComparison.Ordinal))
                    {
                        var key = name[..^2];
                        if (fields.TryGetValue(key, out var existing) && existing is List<string> list)
                        {
                            list.Add(text);
                        }
                        else
                        {
                            fields[key] = new List<string> { text };
                        }
                    }
                    else
                    {
                        fields[name] = text;
                    }
                }
            }
        }
        catch (Exception ex) when (ex is IOException or InvalidDataException or FormatException)
        {
            return (null, GatewayError.InvalidRequest("The multipart/form-data body is malformed: " + ex.Message, null));
        }

        var instanceBytes = ToJsonInstance(task.Schema, fields);
        using var instance = JsonDocument.Parse(instanceBytes);
        if (task.Schema.Validate(instance.RootElement) is { } violation)
        {
            return (null, GatewayError.InvalidRequest(violation.Message, violation.Param, violation.Code));
        }
        if (!fields.TryGetValue("model", out var modelValue) || modelValue is not string { Length: > 0 } model)
        {
            return (null, GatewayError.InvalidRequest("Missing required parameter: 'model'.", "model", ErrorCodes.MissingRequiredParameter));
        }
        var stream = fields.TryGetValue("stream", out var s) && s is string sv && sv.Trim().Equals("true", StringComparison.OrdinalIgnoreCase);
        if (stream && !task.Streams)
        {
            return (null, GatewayError.InvalidRequest($"The task '{task.Name}' does not stream; remove 'stream' or set it to false.", "stream"));
        }

        return (new TaskInput
        {
            Body = body,
            Length = length,
            Model = model,
            Stream = stream,
            ContentType = contentType,
            Parts = parts,
            Boundary = boundary,
        }, default);
    }

    private sealed record FileField(string FileName, string? ContentType, int Length);

    /// <summary>Form fields become a JSON object for the schema: text typed by the schema's declared type, files as {filename, content_type, length}.</summary>
    private static byte[] ToJsonInstance(InputSchema schema, Dictionary<string, object> fields)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            foreach (var (name, value) in fields)
            {
                switch (value)
                {
                    case FileField file:
                        writer.WriteStartObject(name);
                        writer.WriteString("filename", file.FileName);
                        if (file.ContentType is null)
                        {
                            writer.WriteNull("content_type");
                        }
                        else
                        {
                            writer.WriteString("content_type", file.ContentType);
                        }
                        writer.WriteNumber("length", file.Length);
                        writer.WriteEndObject();
                        break;
                    case List<string> list:
                        writer.WriteStartArray(name);
                        foreach (var item in list)
                        {
                            writer.WriteStringValue(item);
                        }
                        writer.WriteEndArray();
                        break;
                    case string text:
                        writer.WritePropertyName(name);
                        WriteTyped(writer, schema.TopLevelType(name), text);
                        break;
                }
            }
            writer.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    private static void WriteTyped(Utf8JsonWriter writer, string? type, string text)
    {
        var trimmed = text.Trim();
        switch (type)
        {
            case "number" when double.TryParse(trimmed, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var d) && double.IsFinite(d):
                writer.WriteNumberValue(d);
                return;
            case "integer" when long.TryParse(trimmed, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var l):
                writer.WriteNumberValue(l);
                return;
            case "boolean" when bool.TryParse(trimmed, out var b):
                writer.WriteBooleanValue(b);
                return;
            default:
                writer.WriteStringValue(text);
                return;
        }
    }

    /// <summary>
    /// A declared length up to this is trusted for one exact allocation read in place (a chat request: one array, one or
    /// two reads, no copy); a client that declares it and sends less costs at most this much.
    /// </summary>
    internal const int TrustedDeclaredLength = 64 * 1024;

    private const int FirstSegmentBytes = 16 * 1024;
    private const int LargestSegmentBytes = 1024 * 1024;

    /// <summary>
    /// Reads the whole body; the flag is set when it is larger than <paramref name="maxBytes"/>. Memory follows the bytes
    /// that arrived, never the declared <c>Content-Length</c> (beyond <see cref="TrustedDeclaredLength"/>): a larger or
    /// undeclared body is read into pooled segments that grow as it arrives, and copied once into an array of its real
    /// length at the end. The task input must be one array — it is spliced and sent upstream, framed to a runtime and
    /// parsed as multipart, all after this returns — and it cannot be pooled, because nothing marks the moment the last
    /// of those is done with it; a pooled array returned early would carry one request's bytes into another's.
    /// </summary>
    internal static async ValueTask<(byte[] Body, int Length, bool TooLarge)> ReadBodyAsync(HttpRequest request, long maxBytes, CancellationToken cancellationToken)
    {
        var declared = request.ContentLength;
        if (declared > maxBytes)
        {
            return ([], 0, true);
        }
        if (declared is { } small && small <= TrustedDeclaredLength)
        {
            if (small == 0)
            {
                return ([], 0, false);
            }
            var exact = new byte[small];
            await request.Body.ReadExactlyAsync(exact, cancellationToken);
            return (exact, exact.Length, false);
        }

        var pool = ArrayPool<byte>.Shared;
        var full = new List<byte[]>();
        var current = pool.Rent(FirstSegmentBytes);
        var filled = 0;
        long total = 0;
        try
        {
            while (true)
            {
                if (filled == current.Length)
                {
                    full.Add(current);
                    var next = Math.Min(current.Length * 2, LargestSegmentBytes);
                    current = pool.Rent(next);
                    filled = 0;
                }
                var read = await request.Body.ReadAsync(current.AsMemory(filled), cancellationToken);
                if (read == 0)
                {
                    break;
                }
                filled += read;
                total += read;
                if (total > maxBytes)
                {
                    return ([], 0, true);
                }
            }

            if (total == 0)
            {
                return ([], 0, false);
            }
            var body = GC.AllocateUninitializedArray<byte>((int)total);
            var offset = 0;
            foreach (var segment in full)
            {
                segment.CopyTo(body, offset);
                offset += segment.Length;
            }
            current.AsSpan(0, filled).CopyTo(body.AsSpan(offset));
            return (body, body.Length, false);
        }
        finally
        {
            foreach (var segment in full)
            {
                pool.Return(segment);
            }
            pool.Return(current);
        }
    }

    /// <summary>
    /// Why a JSON body is not text, or null. Invalid UTF-8 inside a string would only surface when a value is read, and
    /// so would an escaped UTF-16 surrogate without its partner ("\ud800"), which no string can hold: System.Text.Json
    /// then throws from whatever reads it (a property lookup, a schema check, a translation). Every surface checks its
    /// body with this before it reads a field.
    /// </summary>
    internal static string? TextProblem(ReadOnlySpan<byte> json) =>
        !System.Text.Unicode.Utf8.IsValid(json) ? "The request body is not valid UTF-8."
        : HasUnpairedSurrogateEscape(json) ? "A string holds an escaped UTF-16 surrogate (\\uD800–\\uDFFF) without its pair."
        : null;

    /// <summary>
    /// Whether a <c>\uXXXX</c> escape names a high surrogate not followed by an escaped low one, or a low one on its own.
    /// Only bodies with a backslash followed by <c>u</c> are scanned past one vectorized search.
    /// </summary>
    internal static bool HasUnpairedSurrogateEscape(ReadOnlySpan<byte> json)
    {
        var at = json.IndexOf("\\u"u8);
        while (at >= 0)
        {
            // A run of backslashes: only an odd count starts an escape.
            var slashes = 0;
            for (var i = at; i >= 0 && json[i] == '\\'; i--)
            {
                slashes++;
            }
            var next = at + 2;
            if (slashes % 2 == 1 && TryHex4(json, at + 2, out var unit))
            {
                next = at + 6;
                if (unit is >= 0xDC00 and <= 0xDFFF)
                {
                    return true;
                }
                if (unit is >= 0xD800 and <= 0xDBFF)
                {
                    if (!(json.Length >= at + 12 && json[at + 6] == '\\' && json[at + 7] == 'u'
                        && TryHex4(json, at + 8, out var low) && low is >= 0xDC00 and <= 0xDFFF))
                    {
                        return true;
                    }
                    next = at + 12;
                }
            }
            if (next >= json.Length)
            {
                return false;
            }
            var rest = json[next..].IndexOf("\\u"u8);
            at = rest < 0 ? -1 : next + rest;
        }
        return false;
    }

    private static bool TryHex4(ReadOnlySpan<byte> json, int from, out int value)
    {
        value = 0;
        if (from + 4 > json.Length
            || !ushort.TryParse(json.Slice(from, 4), System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture, out var unit))
        {
            return false;
        }
        value = unit;
        return true;
    }
}
