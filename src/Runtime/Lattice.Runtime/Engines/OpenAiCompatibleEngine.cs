using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Lattice.Protocol;
using Lattice.Protocol.Metering;

namespace Lattice.Runtime.Engines;

/// <summary>
/// Forwards to a local OpenAI-compatible server (Ollama, LM Studio, llama.cpp server, vLLM) by base URL:
/// the request body goes as is, except that <c>model</c> becomes the local model's name. Usage is the local server's
/// own: read from a JSON answer, or from a stream's usage chunk, which is asked for when the client did not ask (and
/// then taken out again, so the client gets the bytes it asked for).
/// </summary>
public sealed class OpenAiCompatibleEngine : IEngine
{
    private readonly HttpClient _http;
    private readonly Uri _baseUrl;
    private readonly string? _apiKey;

    /// <param name="baseUrl">E.g. <c>http://127.0.0.1:11434/v1</c>.</param>
    /// <param name="models">Model names with the task each serves (default <c>chat.completions</c>).</param>
    /// <param name="apiKey">Sent as a bearer token when the server wants one.</param>
    public OpenAiCompatibleEngine(Uri baseUrl, IEnumerable<(string Name, string? Task)> models, string? apiKey = null, HttpMessageHandler? handler = null)
    {
        _baseUrl = new Uri(baseUrl.ToString().TrimEnd('/') + "/");
        _apiKey = apiKey;
        _http = new HttpClient(handler ?? new SocketsHttpHandler { UseProxy = false, AutomaticDecompression = DecompressionMethods.None })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
        Capabilities = models.Select(m => new EngineCapability(m.Task ?? "chat.completions", m.Name, null)).ToList();
    }

    public string Kind => "openai-compatible";

    public IReadOnlyList<EngineCapability> Capabilities { get; }

    public Task LoadAsync(IProgress<double>? progress, CancellationToken cancellationToken)
    {
        progress?.Report(1);
        return Task.CompletedTask;
    }

    public async Task<EngineUsage> ExecuteAsync(EngineRequest request, IEngineOutput output, CancellationToken cancellationToken)
    {
        HttpContent content;
        var stripUsage = false;
        if (request.ContentType.StartsWith("multipart/", StringComparison.OrdinalIgnoreCase))
        {
            // Multipart is forwarded as is: the local server names models its own way and most ignore the field.
            content = new ReadOnlyMemoryContent(request.Body);
            content.Headers.TryAddWithoutValidation("Content-Type", request.ContentType);
        }
        else
        {
            // The body goes as the client sent it: only the model's token is replaced, nothing is re-serialised.
            (int Start, int Length) token;
            try
            {
                token = JsonFields.FindTopLevelString(request.Body.Span, "model"u8);
            }
            catch (JsonException)
            {
                return await EngineErrors.RejectAsync(output, 400, "The request body is not valid JSON.", null, "invalid_json", cancellationToken);
            }
            if (token.Start < 0)
            {
                return await EngineErrors.RejectAsync(output, 400, "The request body must be a JSON object with a string 'model'.", "model", "invalid_type", cancellationToken);
            }
            var name = JsonSerializer.SerializeToUtf8Bytes(request.Model, OpenAiCompatibleJsonContext.Default.String);
            var body = request.Body.Span;
            var spliced = new byte[body.Length - token.Length + name.Length];
            body[..token.Start].CopyTo(spliced);
            name.CopyTo(spliced.AsSpan(token.Start));
            body[(token.Start + token.Length)..].CopyTo(spliced.AsSpan(token.Start + name.Length));
            if (request.Stream && request.Task == "chat.completions" && IncludeUsagePatch.TryCreate(spliced, out var splice))
            {
                spliced = splice.ApplyTo(spliced);
                stripUsage = true;
            }
            content = new ByteArrayContent(spliced);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        }

        var path = request.Task.Replace('.', '/');
        using var message = new HttpRequestMessage(HttpMethod.Post, new Uri(_baseUrl, path)) { Content = content };
        if (_apiKey is not null)
        {
            message.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _apiKey);
        }

        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        }
        catch (HttpRequestException ex)
        {
            return await EngineErrors.RejectAsync(output, 502, "The local model server could not be reached: " + ex.Message, null, "upstream_error", cancellationToken);
        }

        using (response)
        {
            var contentType = response.Content.Headers.ContentType;
            await output.StartAsync((int)response.StatusCode, contentType?.ToString() ?? "application/json", cancellationToken);
            await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
            var buffer = new byte[16 * 1024];
            var unit = request.Task == "audio.transcriptions" ? "seconds" : "tokens";
            var ok = response.IsSuccessStatusCode;
            int read;
            if (contentType?.MediaType == "text/event-stream")
            {
                using var filter = new SseUsageFilter(stripUsage, 0, "usage", unit);
                var events = new System.Buffers.ArrayBufferWriter<byte>(16 * 1024);
                while ((read = await body.ReadAsync(buffer, cancellationToken)) > 0)
                {
                    filter.Push(buffer.AsSpan(0, read), events);
                    await WriteAsync(output, events, cancellationToken);
                    if (filter.Usage is { } streamed)
                    {
                        output.ReportUsage(ToEngineUsage(streamed));
                    }
                }
                filter.Flush(events);
                await WriteAsync(output, events, cancellationToken);
                return ok && filter.Usage is { } usage ? ToEngineUsage(usage) : new EngineUsage();
            }

            // A JSON answer is forwarded as it arrives and kept, so its usage can be read at the end.
            using var kept = new MemoryStream();
            while ((read = await body.ReadAsync(buffer, cancellationToken)) > 0)
            {
                await output.WriteAsync(buffer.AsMemory(0, read).ToArray(), cancellationToken);
                kept.Write(buffer, 0, read);
            }
            return ok && UsageReader.TryRead(kept.GetBuffer().AsSpan(0, (int)kept.Length), "usage", unit, out var answered)
                ? ToEngineUsage(answered)
                : new EngineUsage();
        }
    }

    private static async ValueTask WriteAsync(IEngineOutput output, System.Buffers.ArrayBufferWriter<byte> events, CancellationToken cancellationToken)
    {
        if (events.WrittenCount > 0)
        {
            await output.WriteAsync(events.WrittenSpan.ToArray(), cancellationToken);
            events.ResetWrittenCount();
        }
    }

    private static EngineUsage ToEngineUsage(Usage usage) =>
        new(usage.PromptTokens, usage.CompletionTokens, usage.AudioMilliseconds / 1000.0, usage.CachedTokens, usage.Estimated);

    public ValueTask DisposeAsync()
    {
        _http.Dispose();
        return ValueTask.CompletedTask;
    }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal sealed partial class OpenAiCompatibleJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
