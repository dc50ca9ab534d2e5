using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Lattice.Runtime.Engines;

/// <summary>
/// Forwards to a local OpenAI-compatible server (Ollama, LM Studio, llama.cpp server, vLLM) by base URL:
/// the request body goes as is, except that <c>model</c> becomes the local model's name.
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
        if (request.ContentType.StartsWith("multipart/", StringComparison.OrdinalIgnoreCase))
        {
            // Multipart is forwarded as is: the local server names models its own way and most ignore the field.
            content = new ReadOnlyMemoryContent(request.Body);
            content.Headers.TryAddWithoutValidation("Content-Type", request.ContentType);
        }
        else
        {
            JsonNode? node;
            try
            {
                node = JsonNode.Parse(request.Body.Span);
            }
            catch (JsonException)
            {
                return await EngineErrors.RejectAsync(output, 400, "The request body is not valid JSON.", null, "invalid_json", cancellationToken);
            }
            if (node is not JsonObject obj)
            {
                return await EngineErrors.RejectAsync(output, 400, "The request body must be a JSON object.", null, "invalid_type", cancellationToken);
            }
            obj["model"] = request.Model;
            content = new ByteArrayContent(JsonSerializer.SerializeToUtf8Bytes(obj));
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
            await output.StartAsync((int)response.StatusCode, response.Content.Headers.ContentType?.ToString() ?? "application/json", cancellationToken);
            await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
            var buffer = new byte[16 * 1024];
            int read;
            while ((read = await body.ReadAsync(buffer, cancellationToken)) > 0)
            {
                await output.WriteAsync(buffer.AsMemory(0, read).ToArray(), cancellationToken);
            }
        }
        return new EngineUsage();
    }

    public ValueTask DisposeAsync()
    {
        _http.Dispose();
        return ValueTask.CompletedTask;
    }
}
