using System.Security.Cryptography;
using System.Text;
using LLama;
using LLama.Common;
using LLama.Exceptions;
using LLama.Native;

namespace Lattice.Runtime.Engines.Llama;

/// <summary>One loaded GGUF model: its weights (shared by all requests) and what requests need to use them.</summary>
internal sealed class LlamaModel : IDisposable
{
    /// <summary>llama.cpp's built-in name of the ChatML template, used when the model has no usable template.</summary>
    public const string ChatMlTemplate = "chatml";

    private const int MaxBatchSize = 512;

    private LlamaModel(LlamaModelOptions options, LLamaWeights weights, string sha256, int contextSize, int threads, string? template, bool templateIsFallback)
    {
        Name = options.Name;
        Path = options.Path;
        Weights = weights;
        Sha256 = sha256;
        ContextSize = contextSize;
        Threads = threads;
        Template = template;
        TemplateIsFallback = templateIsFallback;
        Fingerprint = ChatCompletionJson.Fingerprint(sha256);
    }

    public string Name { get; }
    public string Path { get; }
    public LLamaWeights Weights { get; }
    public string Sha256 { get; }

    /// <summary>Maximum tokens (prompt + completion) of one request.</summary>
    public int ContextSize { get; }

    public int Threads { get; }

    /// <summary>
    /// The model's <c>tokenizer.chat_template</c>, or <see cref="ChatMlTemplate"/> when llama.cpp cannot apply it;
    /// null for a plain completion model (no template in its metadata, or configured as one).
    /// </summary>
    public string? Template { get; }

    public bool TemplateIsFallback { get; }

    /// <summary>Served the way it was trained, as plain text continuation: the prompt is the messages' text, no template.</summary>
    public bool PlainCompletion => Template is null;

    public string Fingerprint { get; }

    public SafeLlamaModelHandle.Vocabulary Vocab => Weights.Vocab;

    public static async Task<LlamaModel> LoadAsync(LlamaModelOptions options, IProgress<double> progress, CancellationToken cancellationToken)
    {
        var sha256 = await HashAsync(options.Path, new SyncProgress<double>(p => progress.Report(p * 0.5)), cancellationToken);

        var threads = options.Threads ?? Math.Min(LlamaModelOptions.DefaultMaxThreads, Environment.ProcessorCount);
        var loadParameters = new ModelParams(options.Path) { GpuLayerCount = 0, Threads = threads };
        var weights = await LLamaWeights.LoadFromFileAsync(loadParameters, cancellationToken, new SyncProgress<float>(p => progress.Report(0.5 + (p * 0.5))));
        try
        {
            var trained = weights.ContextSize;
            var contextSize = options.ContextSize
                ?? (trained > 0 ? Math.Min(LlamaModelOptions.DefaultContextSize, trained) : LlamaModelOptions.DefaultContextSize);

            var (template, fallback) = options.PlainCompletion ? (null, false) : ChooseTemplate(weights);
            progress.Report(1);
            return new LlamaModel(options, weights, sha256, contextSize, threads, template, fallback);
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The model's own chat template when llama.cpp can apply it; ChatML when it has one llama.cpp cannot apply; none
    /// (plain completion) when its metadata has no template: such a model was never trained on chat turns, and
    /// wrapping its prompt in one makes it write gibberish.
    /// </summary>
    private static (string? Template, bool Fallback) ChooseTemplate(LLamaWeights weights)
    {
        var own = weights.NativeHandle.GetTemplate(name: null, strict: false);
        if (string.IsNullOrWhiteSpace(own))
        {
            return (null, false);
        }
        try
        {
            var probe = new LLamaTemplate(own) { AddAssistant = true };
            probe.Add("system", "s").Add("user", "u").Add("assistant", "a").Add("user", "u");
            _ = probe.Apply();
            return (own, false);
        }
        catch (MissingTemplateException)
        {
            return (ChatMlTemplate, true);
        }
    }

    /// <summary>
    /// The prompt text: <paramref name="messages"/> rendered with the model's template, ending with the assistant's
    /// turn; for a plain completion model, the messages' contents one after the other, so the answer continues them.
    /// </summary>
    public string BuildPrompt(IReadOnlyList<ChatMessage> messages)
    {
        if (Template is null)
        {
            var plain = new StringBuilder();
            foreach (var message in messages)
            {
                plain.Append(message.Content);
            }
            return plain.Replace("\0", "").ToString();
        }
        var template = new LLamaTemplate(Template) { AddAssistant = true };
        foreach (var message in messages)
        {
            template.Add(message.Role, message.Content.Replace("\0", "", StringComparison.Ordinal));
        }
        return Encoding.UTF8.GetString(template.Apply());
    }

    /// <summary>
    /// Tokenizes a prompt, BOS added when the model wants one (never twice). A template's special tokens are parsed;
    /// a plain prompt is only the client's text, so nothing in it is read as a special token.
    /// </summary>
    public LLamaToken[] TokenizePrompt(string prompt)
    {
        var tokens = Weights.Tokenize(prompt, Vocab.ShouldAddBOS, special: Template is not null, Encoding.UTF8);
        if (tokens.Length >= 2 && Vocab.BOS is { } bos && tokens[0] == bos && tokens[1] == bos)
        {
            tokens = tokens[1..];
        }
        return tokens;
    }

    /// <summary>How many tokens <paramref name="text"/> takes on its own (no BOS, special tokens as text).</summary>
    public int CountTokens(string text) => Weights.Tokenize(text, false, false, Encoding.UTF8).Length;

    /// <summary>A new context (KV cache) for one request, of at most <paramref name="size"/> tokens.</summary>
    public LLamaContext CreateContext(int size)
    {
        var batch = (uint)Math.Min(MaxBatchSize, size);
        var parameters = new ModelParams(Path)
        {
            ContextSize = (uint)size,
            BatchSize = batch,
            UBatchSize = batch,
            Threads = Threads,
            BatchThreads = Threads,
            GpuLayerCount = 0,
        };
        return Weights.CreateContext(parameters);
    }

    public void Dispose() => Weights.Dispose();

    private static async Task<string> HashAsync(string path, IProgress<double> progress, CancellationToken cancellationToken)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous | FileOptions.SequentialScan);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        var length = stream.Length;
        long done = 0;
        int read;
        while ((read = await stream.ReadAsync(buffer, cancellationToken)) > 0)
        {
            hash.AppendData(buffer, 0, read);
            done += read;
            progress.Report(length > 0 ? (double)done / length : 1);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>An <see cref="IProgress{T}"/> that reports synchronously (unlike <see cref="Progress{T}"/>).</summary>
    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
