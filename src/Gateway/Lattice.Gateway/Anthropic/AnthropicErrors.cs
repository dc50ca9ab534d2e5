using System.Buffers;
using System.Text.Json;
using Lattice.Gateway.Dispatch;
using Lattice.Gateway.OpenAi;

namespace Lattice.Gateway.Anthropic;

/// <summary>
/// Writes <see cref="GatewayError"/> in Anthropic's envelope: <c>{"type":"error","error":{"type","message"},"request_id"}</c>,
/// with the error type Anthropic gives the status, as a JSON body or as the <c>event: error</c> that ends a stream.
/// </summary>
public static class AnthropicErrors
{
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>
    /// Anthropic's type for a status: its documented pairs, <c>invalid_request_error</c> for any other 4xx (as its docs say),
    /// <c>overloaded_error</c> for a 503 or 529 (no capacity), <c>api_error</c> for any other 5xx (a failed or silent upstream).
    /// </summary>
    public static string TypeFor(int status) => status switch
    {
        StatusCodes.Status401Unauthorized => "authentication_error",
        StatusCodes.Status403Forbidden => "permission_error",
        StatusCodes.Status404NotFound => "not_found_error",
        StatusCodes.Status413PayloadTooLarge => "request_too_large",
        StatusCodes.Status429TooManyRequests => "rate_limit_error",
        StatusCodes.Status503ServiceUnavailable or 529 => "overloaded_error",
        >= 500 => "api_error",
        _ => "invalid_request_error",
    };

    public static Task WriteAsync(HttpContext context, GatewayError error) => WriteAsync(context, error.Status, error.Message);

    /// <summary>The error as the whole answer; a response already under way is cut instead.</summary>
    public static Task WriteAsync(HttpContext context, int status, string message)
    {
        var response = context.Response;
        if (response.HasStarted)
        {
            context.Abort();
            return Task.CompletedTask;
        }
        response.StatusCode = status;
        response.ContentType = "application/json";
        var body = Serialize(status, message, context.TraceIdentifier);
        response.ContentLength = body.Length;
        return response.Body.WriteAsync(body).AsTask();
    }

    /// <summary>
    /// A dispatch that failed before anything reached the client, in Anthropic's envelope: an upstream's own explanation
    /// when every candidate failed with one (as a 502), else the gateway's error. Served answers are the sink's to render.
    /// </summary>
    public static Task RenderAsync(HttpContext context, DispatchOutcome outcome)
    {
        if (outcome.Failure is DispatchFailure.None or DispatchFailure.ClientCancelled)
        {
            return Task.CompletedTask;
        }
        if (outcome.UpstreamEnvelope is { } envelope)
        {
            return WriteAsync(context, StatusCodes.Status502BadGateway, MessageOf(envelope) ?? outcome.Error.Message);
        }
        return WriteAsync(context, outcome.Error);
    }

    public static byte[] Serialize(int status, string message, string requestId)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        Write(buffer, status, message, requestId);
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>The <c>event: error</c> that ends a stream which failed after it started.</summary>
    public static void WriteEvent(IBufferWriter<byte> output, int status, string message, string requestId)
    {
        output.Write("event: error\ndata: "u8);
        Write(output, status, message, requestId);
        output.Write("\n\n"u8);
    }

    private static void Write(IBufferWriter<byte> output, int status, string message, string requestId)
    {
        using var writer = new Utf8JsonWriter(output, WriterOptions);
        writer.WriteStartObject();
        writer.WriteString("type", "error");
        writer.WriteStartObject("error");
        writer.WriteString("type", TypeFor(status));
        writer.WriteString("message", message);
        writer.WriteEndObject();
        writer.WriteString("request_id", requestId);
        writer.WriteEndObject();
    }

    /// <summary>The <c>error.message</c> of an OpenAI error envelope; null when the bytes are not one.</summary>
    public static string? MessageOf(ReadOnlySpan<byte> envelope)
    {
        try
        {
            var reader = new Utf8JsonReader(envelope);
            using var document = JsonDocument.ParseValue(ref reader);
            return document.RootElement.ValueKind == JsonValueKind.Object
                && document.RootElement.TryGetProperty("error", out var error)
                ? MessageOf(error)
                : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The <c>message</c> of an OpenAI <c>error</c> object (or the error itself when it is a string).</summary>
    public static string? MessageOf(JsonElement error) => error.ValueKind switch
    {
        JsonValueKind.String => error.GetString(),
        JsonValueKind.Object when error.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String => m.GetString(),
        _ => null,
    };
}
