using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Lattice.Protocol;

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

[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal sealed partial class OpenAiCompatibleJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
