using System.Buffers;
using System.Text.Json;

namespace Lattice.Gateway.OpenAi;

/// <summary>Writes <see cref="GatewayError"/> in OpenAI's envelope: <c>{"error":{"message","type","param","code"}}</c>.</summary>
public static class OpenAiErrors
{
    // Messages quote parameter names; the relaxed encoder keeps them readable. Bodies are JSON, never HTML.
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary><paramref name="error"/> as an endpoint's result.</summary>
    public static IResult Result(GatewayError error) => new ErrorResult(error);

    private sealed class ErrorResult(GatewayError error) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext) => WriteAsync(httpContext, error);
    }

    public static Task WriteAsync(HttpContext context, GatewayError error)
    {
        var response = context.Response;
        if (response.HasStarted)
        {
            context.Abort();
            return Task.CompletedTask;
        }
        response.StatusCode = error.Status;
        response.ContentType = "application/json";
        var body = Serialize(error);
        response.ContentLength = body.Length;
        return response.Body.WriteAsync(body).AsTask();
    }

    /// <summary>
    /// Renders a dispatch's outcome as the client sees it on the OpenAI surface: nothing more for an answer that was
    /// served or a client that left; the error envelope when nothing was sent yet (an upstream's own envelope when
    /// one explained the failure); an error event ending a broken stream; a cut connection for a broken JSON body.
    /// </summary>
    public static async Task RenderAsync(HttpContext context, Dispatch.DispatchOutcome outcome)
    {
        if (outcome.Failure is Dispatch.DispatchFailure.None or Dispatch.DispatchFailure.ClientCancelled)
        {
            return;
        }
        if (!outcome.ResponseStarted)
        {
            if (outcome.UpstreamEnvelope is { } envelope)
            {
                var response = context.Response;
                response.StatusCode = StatusCodes.Status502BadGateway;
                response.ContentType = "application/json";
                response.ContentLength = envelope.Length;
                await response.Body.WriteAsync(envelope, context.RequestAborted);
                return;
            }
            await WriteAsync(context, outcome.Error);
            return;
        }
        if (!outcome.Sse)
        {
            // A JSON body cut short cannot be mended: break the connection so the client sees a failure, not a truncation.
            context.Abort();
            return;
        }
        try
        {
            // The relay writes whole events only, so the error event starts on an event boundary.
            await context.Response.BodyWriter.WriteAsync(SseEvent(outcome.Error), context.RequestAborted);
            await context.Response.BodyWriter.FlushAsync(context.RequestAborted);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            // The client left while we were telling it.
        }
    }

    public static byte[] Serialize(GatewayError error)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            Write(writer, error);
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>The SSE event that ends a stream which failed after it started: <c>data: {"error":…}</c>.</summary>
    public static byte[] SseEvent(GatewayError error)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        buffer.Write("data: "u8);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            Write(writer, error);
        }
        buffer.Write("\n\n"u8);
        return buffer.WrittenSpan.ToArray();
    }

    private static void Write(Utf8JsonWriter writer, GatewayError error)
    {
        writer.WriteStartObject();
        writer.WriteStartObject("error");
        writer.WriteString("message", error.Message);
        writer.WriteString("type", error.Type);
        if (error.Param is null)
        {
            writer.WriteNull("param");
        }
        else
        {
            writer.WriteString("param", error.Param);
        }
        if (error.Code is null)
        {
            writer.WriteNull("code");
        }
        else
        {
            writer.WriteString("code", error.Code);
        }
        writer.WriteEndObject();
        writer.WriteEndObject();
    }
}
