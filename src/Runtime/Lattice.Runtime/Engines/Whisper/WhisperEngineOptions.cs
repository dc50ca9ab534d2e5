namespace Lattice.Runtime.Engines.Whisper;

/// <summary>Configuration of a <see cref="WhisperEngine"/>: the ggml Whisper models it serves and request limits.</summary>
public sealed class WhisperEngineOptions
{
    /// <summary>OpenAI's upload limit.</summary>
    public const long DefaultMaxFileBytes = 25 * 1024 * 1024;

    /// <summary>Default longest audio: two hours, about 460 MB of 16 kHz samples while it is transcribed.</summary>
    public const double DefaultMaxAudioSeconds = 2 * 60 * 60;

    /// <summary>The models to load. Names must be unique (ordinal comparison).</summary>
    public IReadOnlyList<WhisperModelOptions> Models { get; init; } = [];

    /// <summary>Largest audio file accepted, in bytes.</summary>
    public long MaxFileBytes { get; init; } = DefaultMaxFileBytes;

    /// <summary>Longest audio accepted, in seconds (decoding stops there, so a small file cannot expand without bound).</summary>
    public double MaxAudioSeconds { get; init; } = DefaultMaxAudioSeconds;

    internal void Validate()
    {
        if (Models.Count == 0)
        {
            throw new ArgumentException("A whisper engine needs at least one model.", nameof(Models));
        }
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var model in Models)
        {
            if (string.IsNullOrWhiteSpace(model.Name))
            {
                throw new ArgumentException("A whisper model's name must not be empty.", nameof(Models));
            }
            if (!names.Add(model.Name))
            {
                throw new ArgumentException($"The whisper model name '{model.Name}' is used twice.", nameof(Models));
            }
            if (string.IsNullOrWhiteSpace(model.Path))
            {
                throw new ArgumentException($"The whisper model '{model.Name}' has no path.", nameof(Models));
            }
            if (model.Threads is < 1)
            {
                throw new ArgumentOutOfRangeException(nameof(Models), model.Threads, $"The whisper model '{model.Name}' must use at least 1 thread.");
            }
        }
        if (MaxFileBytes < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxFileBytes), MaxFileBytes, "Must be positive.");
        }
        if (!(MaxAudioSeconds >= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(MaxAudioSeconds), MaxAudioSeconds, "Must be at least 1 second.");
        }
    }
}

/// <summary>One ggml Whisper model (e.g. <c>ggml-base.en.bin</c>) served by a <see cref="WhisperEngine"/>.</summary>
public sealed class WhisperModelOptions
{
    /// <summary>Upper bound of the default thread count.</summary>
    public const int DefaultMaxThreads = 4;

    /// <summary>The model's name on this runtime (the <c>model</c> of requests and capabilities).</summary>
    public required string Name { get; init; }

    /// <summary>Path of the ggml <c>.bin</c> file.</summary>
    public required string Path { get; init; }

    /// <summary>CPU threads per request. When null: <c>min(4, Environment.ProcessorCount)</c>.</summary>
    public int? Threads { get; init; }

    /// <summary>
    /// Ignore the request's <c>prompt</c>. For models a prompt derails, such as the synthetic test model whose output
    /// is tied to decoder positions.
    /// </summary>
    public bool IgnorePrompt { get; init; }
}
