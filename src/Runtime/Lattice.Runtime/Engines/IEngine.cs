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

    /// <summary>
    /// What the request has used so far. Engines call it as usage grows (the prompt counted, each token generated), so a
    /// request cancelled mid-way is still metered for the work done: cancellation keeps throwing, and the caller takes
    /// the last value reported. The usage <see cref="IEngine.ExecuteAsync"/> returns supersedes it. Must be cheap: it may
    /// be called once per token. Deliberately not a default method, so an output that wraps another cannot drop it.
    /// </summary>
    void ReportUsage(EngineUsage usageSoFar);
}

/// <summary>What a request used, for metering. A value type: engines report it once per generated token.</summary>
/// <param name="CachedTokens">Prompt tokens served from a cache (a subset of <paramref name="PromptTokens"/>).</param>
/// <param name="Estimated">The counts are an estimate, not the model's own count.</param>
public readonly record struct EngineUsage(
    long PromptTokens = 0, long CompletionTokens = 0, double AudioSeconds = 0, long CachedTokens = 0, bool Estimated = false);

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
    /// 400 and OpenAI's error envelope written to the output (never an exception). Cancellation throws
    /// <see cref="OperationCanceledException"/>; what was used until then is what the engine last passed to
    /// <see cref="IEngineOutput.ReportUsage"/>.
    /// </summary>
    Task<EngineUsage> ExecuteAsync(EngineRequest request, IEngineOutput output, CancellationToken cancellationToken);
}
