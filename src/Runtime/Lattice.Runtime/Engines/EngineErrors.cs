using System.Buffers;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Lattice.Runtime.Engines;

/// <summary>Writes OpenAI's error envelope from an engine.</summary>
public static class EngineErrors
{
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static byte[] Envelope(string message, string type = "invalid_request_error", string? param = null, string? code = null)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            w.WriteStartObject();
            w.WriteStartObject("error");
            w.WriteString("message", message);
            w.WriteString("type", type);
            if (param is null) { w.WriteNull("param"); } else { w.WriteString("param", param); }
            if (code is null) { w.WriteNull("code"); } else { w.WriteString("code", code); }
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>Answers a request with a 4xx in OpenAI's envelope; returns empty usage.</summary>
    public static async Task<EngineUsage> RejectAsync(IEngineOutput output, int status, string message, string? param, string? code, CancellationToken cancellationToken)
    {
        await output.StartAsync(status, "application/json", cancellationToken);
        await output.WriteAsync(Envelope(message, status >= 500 ? "server_error" : "invalid_request_error", param, code), cancellationToken);
        return new EngineUsage();
    }
}
