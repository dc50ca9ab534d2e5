using System.Buffers;
using System.IO.Pipelines;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Lattice.StandIn.OpenAi;

/// <summary>
/// Allocation-free JSON output: one <see cref="Utf8JsonWriter"/> and buffer per thread, reused.
/// <see cref="Begin"/> … <see cref="Send"/>/<see cref="WriteSse"/> must run synchronously (no await in between),
/// which every caller does; the bytes are copied into the response pipe before the next await.
/// </summary>
internal static class JsonOut
{
    private const int MaxRetainedBuffer = 1024 * 1024;

    public static readonly JsonWriterOptions WriterOptions = new()
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Indented = false,
    };

    [ThreadStatic]
    private static ArrayBufferWriter<byte>? t_buffer;

    [ThreadStatic]
    private static Utf8JsonWriter? t_writer;

    public static Utf8JsonWriter Begin()
    {
        var buffer = t_buffer;
        if (buffer is null || buffer.Capacity > MaxRetainedBuffer)
        {
            buffer = new ArrayBufferWriter<byte>(4096);
            t_buffer = buffer;
        }
        else
        {
            buffer.ResetWrittenCount();
        }

        var writer = t_writer;
        if (writer is null)
        {
            writer = new Utf8JsonWriter(buffer, WriterOptions);
            t_writer = writer;
        }
        else
        {
            writer.Reset(buffer);
        }

        return writer;
    }

    /// <summary>Flushes <paramref name="writer"/> and returns the JSON; valid until the next <see cref="Begin"/> on this thread.</summary>
    public static ReadOnlySpan<byte> End(Utf8JsonWriter writer)
    {
        writer.Flush();
        return t_buffer!.WrittenSpan;
    }

    /// <summary>Writes the JSON as the whole response (with Content-Length). Kestrel flushes at the end of the request.</summary>
    public static Task Send(HttpContext ctx, int status, Utf8JsonWriter writer)
    {
        ReadOnlySpan<byte> json = End(writer);
        var response = ctx.Response;
        response.StatusCode = status;
        response.ContentType = "application/json";
        response.ContentLength = json.Length;
        response.BodyWriter.Write(json);
        return Task.CompletedTask;
    }

    /// <summary>Appends <c>data: &lt;json&gt;\n\n</c> to the pipe (the caller flushes).</summary>
    public static void WriteSse(PipeWriter pipe, Utf8JsonWriter writer)
    {
        ReadOnlySpan<byte> json = End(writer);
        int total = json.Length + 8;
        Span<byte> span = pipe.GetSpan(total);
        "data: "u8.CopyTo(span);
        json.CopyTo(span[6..]);
        span[json.Length + 6] = (byte)'\n';
        span[json.Length + 7] = (byte)'\n';
        pipe.Advance(total);
    }

    /// <summary>The OpenAI error envelope: {"error":{"message","type","param","code"}}.</summary>
    public static Task Error(HttpContext ctx, int status, string message, string type, string? param, string? code)
    {
        var w = Begin();
        w.WriteStartObject();
        w.WriteStartObject("error");
        w.WriteString("message", message);
        w.WriteString("type", type);
        w.WriteString("param", param);
        w.WriteString("code", code);
        w.WriteEndObject();
        w.WriteEndObject();
        return Send(ctx, status, w);
    }

    public const string InvalidJsonMessage =
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. " +
        "The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, " +
        "please contact us through our help center at help.openai.com.)";

    public static Task InvalidJson(HttpContext ctx) =>
        Error(ctx, StatusCodes.Status400BadRequest, InvalidJsonMessage, "invalid_request_error", null, null);

    public static Task MissingParameter(HttpContext ctx, string param) =>
        Error(ctx, StatusCodes.Status400BadRequest, $"Missing required parameter: '{param}'.",
            "invalid_request_error", param, "missing_required_parameter");

    public static Task InvalidValue(HttpContext ctx, string param, string message) =>
        Error(ctx, StatusCodes.Status400BadRequest, message, "invalid_request_error", param, "invalid_value");

    /// <summary>Parses a JSON object body; null when the body is not valid JSON or not an object.</summary>
    public static JsonDocument? TryParseObject(byte[] body)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(body);
        }
        catch (JsonException)
        {
            return null;
        }

        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            doc.Dispose();
            return null;
        }

        return doc;
    }
}
