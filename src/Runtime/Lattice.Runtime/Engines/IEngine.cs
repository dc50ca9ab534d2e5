namespace Lattice.Runtime.Engines;

/// <summary>One task/model pair an engine serves, as the daemon advertises it to the gateway.</summary>
/// <param name="Task">Task class name: <c>chat.completions</c>, <c>embeddings</c>, <c>audio.transcriptions</c>, …</param>
/// <param name="Model">The model's name on this runtime (e.g. <c>stories260K</c>).</param>
/// <param name="ModelSha256">Lowercase hex SHA-256 of the model file, or null when the model is not a local file.</param>
public sealed record EngineCapability(string Task, string Model, string? ModelSha256);

/// <summary>A task input exactly as the client sent it (the gateway already validated it against the task's schema).</summary>
/// <param name="Task">Task class name.</param>
/// <param name="Model">Which of the engine's models to use (one of its capabilities' <c>Model</c>).</param>
/// <param name="Body">The request body: OpenAI's JSON, or multipart/form-data for transcriptions.</param>
/// <param name="ContentType">The body's content type (multipart carries its boundary).</param>
/// <param name="Stream">True when the client asked for a stream (<c>"stream": true</c>).</param>
public sealed record EngineRequest(string Task, string Model, ReadOnlyMemory<byte> Body, string ContentType, bool Stream);

/// <summary>
/// Where an engine writes its answer: exactly the bytes an OpenAI-compatible server would send back
/// (a JSON body, or SSE events <c>data: {…}\n\n</c> ending with <c>data: [DONE]\n\n</c>).
/// </summary>
public interface IEngineOutput
{
    /// <summary>Sets the response status and content type; must be called once, before the first write.</summary>
    ValueTask StartAsync(int status, string contentType, CancellationToken cancellationToken);

    /// <summary>Writes body bytes. For streams, call once per SSE event so each leaves as soon as it is made.</summary>
    ValueTask WriteAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken);
}

/// <summary>What a finished request used, for metering.</summary>
public sealed record EngineUsage(long PromptTokens = 0, long CompletionTokens = 0, double AudioSeconds = 0);

/// <summary>
/// A local inference engine. Engines load their models once and serve many requests concurrently;
/// cancellation (the client went away) must stop generation promptly.
/// </summary>
public interface IEngine : IAsyncDisposable
{
    /// <summary>Engine kind as named in the config: <c>llama</c>, <c>onnx-embeddings</c>, <c>whisper</c>, <c>openai-compatible</c>.</summary>
    string Kind { get; }

    /// <summary>What this engine serves; valid after <see cref="LoadAsync"/>.</summary>
    IReadOnlyList<EngineCapability> Capabilities { get; }

    /// <summary>Loads models (weights, tokenizers). Reports progress in [0,1] when it can.</summary>
    Task LoadAsync(IProgress<double>? progress, CancellationToken cancellationToken);

    /// <summary>
    /// Serves one request, writing the OpenAI-shaped answer to <paramref name="output"/>. Bad input is answered with a
    /// 400 and OpenAI's error envelope written to the output (never an exception).
    /// </summary>
    Task<EngineUsage> ExecuteAsync(EngineRequest request, IEngineOutput output, CancellationToken cancellationToken);
}
