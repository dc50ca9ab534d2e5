namespace Lattice.Runtime.Engines.Llama;

/// <summary>Configuration of a <see cref="LlamaEngine"/>: the GGUF models it serves.</summary>
public sealed class LlamaEngineOptions
{
    /// <summary>The models to load. Names must be unique (ordinal comparison).</summary>
    public IReadOnlyList<LlamaModelOptions> Models { get; init; } = [];
}

/// <summary>One GGUF chat model served by a <see cref="LlamaEngine"/>.</summary>
public sealed class LlamaModelOptions
{
    /// <summary>Default context size when none is configured (further limited by the model's training context).</summary>
    public const int DefaultContextSize = 2048;

    /// <summary>Upper bound of the default thread count.</summary>
    public const int DefaultMaxThreads = 4;

    /// <summary>The model's name on this runtime (the <c>model</c> of requests and capabilities).</summary>
    public required string Name { get; init; }

    /// <summary>Path of the <c>.gguf</c> file.</summary>
    public required string Path { get; init; }

    /// <summary>
    /// Context size in tokens (prompt + completion) of each request. When null: the smaller of
    /// <see cref="DefaultContextSize"/> and the model's training context.
    /// </summary>
    public int? ContextSize { get; init; }

    /// <summary>CPU threads per request. When null: <c>min(4, Environment.ProcessorCount)</c>.</summary>
    public int? Threads { get; init; }

    /// <summary>
    /// Serve the model as a plain completion model: the prompt is the messages' contents one after the other, with no
    /// chat template (for models never trained on one, such as stories260K). Models whose metadata has no chat
    /// template are served this way anyway.
    /// </summary>
    public bool PlainCompletion { get; init; }
}
