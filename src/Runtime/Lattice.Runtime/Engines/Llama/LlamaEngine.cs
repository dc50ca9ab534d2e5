using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using LLama;
using LLama.Exceptions;
using LLama.Native;
using LLama.Sampling;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Lattice.Runtime.Engines.Llama;

/// <summary>
/// Serves OpenAI's <c>chat.completions</c> with GGUF models through LLamaSharp (llama.cpp, CPU). Weights are loaded
/// once per model and shared; every request gets its own context (KV cache) and sampler, so requests run concurrently.
/// </summary>
/// <remarks>Prompts and generated text are never logged.</remarks>
public sealed class LlamaEngine : IEngine
{
    /// <summary>The engine kind as named in the config.</summary>
    public const string EngineKind = "llama";

    /// <summary>The task this engine serves.</summary>
    public const string ChatCompletionsTask = "chat.completions";

    private const int ContextGranularity = 256;

    private readonly IReadOnlyList<LlamaModelOptions> _modelOptions;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly SemaphoreSlim _loadGate = new(1, 1);
    private readonly CancellationTokenSource _shutdown = new();
    private volatile IReadOnlyDictionary<string, LlamaModel> _models = new Dictionary<string, LlamaModel>(StringComparer.Ordinal);
    private volatile IReadOnlyList<EngineCapability> _capabilities = [];
    private volatile bool _disposed;

    /// <summary>Creates the engine; nothing is loaded until <see cref="LoadAsync"/>.</summary>
    /// <param name="options">The models to serve.</param>
    /// <param name="logger">Optional logger (llama.cpp's native log is routed to it at Debug level).</param>
    /// <param name="timeProvider">Clock for <c>created</c>; the system clock when null.</param>
    public LlamaEngine(LlamaEngineOptions options, ILogger? logger = null, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(options.Models);
        if (options.Models.Count == 0)
        {
            throw new ArgumentException("At least one model is required.", nameof(options));
        }
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var model in options.Models)
        {
            if (model is null || string.IsNullOrWhiteSpace(model.Name))
            {
                throw new ArgumentException("Every model needs a name.", nameof(options));
            }
            if (string.IsNullOrWhiteSpace(model.Path))
            {
                throw new ArgumentException($"Model '{model.Name}' needs a path.", nameof(options));
            }
            if (!names.Add(model.Name))
            {
                throw new ArgumentException($"Model name '{model.Name}' is used twice.", nameof(options));
            }
            if (model.ContextSize is < 16)
            {
                throw new ArgumentException($"Model '{model.Name}': the context size must be at least 16 tokens.", nameof(options));
            }
            if (model.Threads is < 1)
            {
                throw new ArgumentException($"Model '{model.Name}': threads must be at least 1.", nameof(options));
            }
        }
        _modelOptions = [.. options.Models];
        _logger = logger ?? NullLogger.Instance;
        _time = timeProvider ?? TimeProvider.System;
    }

    /// <inheritdoc />
    public string Kind => EngineKind;

    /// <inheritdoc />
    public IReadOnlyList<EngineCapability> Capabilities => _capabilities;

    /// <inheritdoc />
    public async Task LoadAsync(IProgress<double>? progress, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        await _loadGate.WaitAsync(cancellationToken);
        try
        {
            if (_capabilities.Count > 0)
            {
                progress?.Report(1);
                return;
            }

            LlamaNativeLogging.Configure(_logger is NullLogger ? null : _logger);
            var loaded = new Dictionary<string, LlamaModel>(StringComparer.Ordinal);
            try
            {
                for (var i = 0; i < _modelOptions.Count; i++)
                {
                    var options = _modelOptions[i];
                    var index = i;
                    var started = Stopwatch.GetTimestamp();
                    var model = await LlamaModel.LoadAsync(
                        options,
                        new ReportProgress(p => progress?.Report(Math.Clamp((index + p) / _modelOptions.Count, 0, 1))),
                        cancellationToken);
                    loaded.Add(options.Name, model);
                    _logger.LogInformation(
                        "Loaded llama model {Model} in {Elapsed} ms: context {ContextSize} tokens, {Threads} threads, {Template} chat template, sha256 {Sha256}",
                        model.Name, (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds, model.ContextSize, model.Threads,
                        model.PlainCompletion ? "no (plain completion)" : model.TemplateIsFallback ? "ChatML (fallback)" : "the model's", model.Sha256);
                }
            }
            catch
            {
                foreach (var model in loaded.Values)
                {
                    model.Dispose();
                }
                throw;
            }

            _models = loaded;
            _capabilities = [.. _modelOptions.Select(o => new EngineCapability(ChatCompletionsTask, o.Name, loaded[o.Name].Sha256))];
            progress?.Report(1);
        }
        finally
        {
            _loadGate.Release();
        }
    }

    /// <inheritdoc />
    public Task<EngineUsage> ExecuteAsync(EngineRequest request, IEngineOutput output, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(output);
        // Inference is blocking native work: run it off the caller's thread so concurrent requests really run concurrently.
        return Task.Run(() => ExecuteCoreAsync(request, output, cancellationToken), cancellationToken);
    }

    private async Task<EngineUsage> ExecuteCoreAsync(EngineRequest request, IEngineOutput output, CancellationToken cancellationToken)
    {
        if (request.Task != ChatCompletionsTask)
        {
            return await EngineErrors.RejectAsync(output, 400, $"The llama engine does not serve the task '{request.Task}'.", null, "unsupported_task", cancellationToken);
        }
        if (_disposed)
        {
            return await EngineErrors.RejectAsync(output, 503, "The model runtime is shutting down.", null, "engine_unavailable", cancellationToken);
        }
        if (!_models.TryGetValue(request.Model, out var model))
        {
            if (_capabilities.Count == 0 && _modelOptions.Any(o => o.Name == request.Model))
            {
                return await EngineErrors.RejectAsync(output, 503, $"The model `{request.Model}` is not loaded yet.", null, "model_not_ready", cancellationToken);
            }
            return await EngineErrors.RejectAsync(output, 404, $"The model `{request.Model}` does not exist or you do not have access to it.", "model", "model_not_found", cancellationToken);
        }

        ChatRequest chat;
        string prompt;
        LLamaToken[] promptTokens;
        try
        {
            chat = ChatRequest.Parse(request.Body, request.Stream);
            CheckLogitBias(chat, model);
            prompt = model.BuildPrompt(chat.Messages);
            promptTokens = model.TokenizePrompt(prompt);
        }
        catch (ChatRequestException e)
        {
            return await EngineErrors.RejectAsync(output, 400, e.Message, e.Param, e.Code, cancellationToken);
        }
        if (promptTokens.Length >= model.ContextSize)
        {
            return await EngineErrors.RejectAsync(
                output, 400,
                $"This model's maximum context length is {model.ContextSize} tokens. However, your messages resulted in {promptTokens.Length} tokens. Please reduce the length of the messages.",
                "messages", "context_length_exceeded", cancellationToken);
        }

        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _shutdown.Token);
        var token = linked.Token;

        var wanted = (long)promptTokens.Length + (chat.MaxTokens ?? model.ContextSize) + 1;
        var contextSize = (int)Math.Min(model.ContextSize, (wanted + ContextGranularity - 1) / ContextGranularity * ContextGranularity);
        LLamaContext context;
        try
        {
            context = model.CreateContext(contextSize);
        }
        catch (ObjectDisposedException)
        {
            return await EngineErrors.RejectAsync(output, 503, "The model runtime is shutting down.", null, "engine_unavailable", cancellationToken);
        }
        catch (RuntimeError e)
        {
            _logger.LogError(e, "Could not create a {ContextSize}-token context for {Model}", contextSize, model.Name);
            return await EngineErrors.RejectAsync(output, 500, "The model could not allocate a context for this request.", null, null, cancellationToken);
        }

        using (context)
        {
            var json = new ChatCompletionJson(
                ChatCompletionJson.NewCompletionId(), _time.GetUtcNow().ToUnixTimeSeconds(), chat.Model ?? request.Model, model.Fingerprint);
            var started = Stopwatch.GetTimestamp();
            var streaming = chat.Stream;
            var usageNull = chat.IncludeUsage;
            // Counts as it goes and reports to the output, so a cancelled request is metered for what it generated.
            var generated = new UsageCounter(output, promptTokens.Length);
            generated.ReportPrompt();
            var choices = new List<ChoiceResult>(chat.N);
            var outputStarted = false;
            try
            {
                if (streaming)
                {
                    await output.StartAsync(200, "text/event-stream", token);
                    outputStarted = true;
                }

                for (var index = 0; index < chat.N; index++)
                {
                    var seed = chat.Seed is { } s ? MapSeed(s + index) : RandomSeed();
                    var choice = streaming
                        ? await StreamChoiceAsync(json, model, context, promptTokens, chat, index, seed, output, usageNull, generated, token)
                        : await GenerateChoiceAsync(model, context, promptTokens, chat, index, seed, null, generated, token);
                    choices.Add(choice);
                }

                if (streaming)
                {
                    if (chat.IncludeUsage)
                    {
                        await output.WriteAsync(json.UsageChunk(promptTokens.Length, generated.Count), token);
                    }
                    await output.WriteAsync(ChatCompletionJson.Done, token);
                }
                else
                {
                    var body = json.Completion(choices, promptTokens.Length, generated.Count);
                    await output.StartAsync(200, "application/json", token);
                    outputStarted = true;
                    await output.WriteAsync(body, token);
                }
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                _logger.LogDebug("chat.completions on {Model} cancelled after {CompletionTokens} completion tokens", model.Name, generated.Count);
                if (!cancellationToken.IsCancellationRequested)
                {
                    // Shutdown, not the client: say so, since the client is still listening.
                    if (!outputStarted)
                    {
                        return await EngineErrors.RejectAsync(output, 503, "The model runtime is shutting down.", null, "engine_unavailable", cancellationToken);
                    }
                    await output.WriteAsync(ChatCompletionJson.ErrorEvent("The model runtime is shutting down."), cancellationToken);
                    return new EngineUsage(promptTokens.Length, generated.Count);
                }
                throw;
            }
            catch (Exception e) when (e is LLamaDecodeError or RuntimeError or InvalidOperationException)
            {
                _logger.LogError(e, "chat.completions on {Model} failed", model.Name);
                if (!outputStarted)
                {
                    return await EngineErrors.RejectAsync(output, 500, "The model failed to generate a completion.", null, null, cancellationToken);
                }
                await output.WriteAsync(ChatCompletionJson.ErrorEvent("The model failed to generate a completion."), cancellationToken);
                return new EngineUsage(promptTokens.Length, generated.Count);
            }

            _logger.LogDebug(
                "chat.completions on {Model}: {PromptTokens} prompt + {CompletionTokens} completion tokens, {Choices} choice(s), {Elapsed} ms",
                model.Name, promptTokens.Length, generated.Count, chat.N, (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            return new EngineUsage(promptTokens.Length, generated.Count);
        }
    }

    private async Task<ChoiceResult> StreamChoiceAsync(
        ChatCompletionJson json, LlamaModel model, LLamaContext context, LLamaToken[] promptTokens, ChatRequest chat, int index, uint seed,
        IEngineOutput output, bool usageNull, UsageCounter generated, CancellationToken token)
    {
        switch (chat.Mode)
        {
            case OutputMode.FunctionArguments:
            {
                var callId = ChatCompletionJson.NewToolCallId();
                await output.WriteAsync(json.ToolCallStartChunk(index, usageNull, callId, chat.FunctionName!), token);
                var result = await GenerateChoiceAsync(model, context, promptTokens, chat, index, seed,
                    piece => output.WriteAsync(json.ArgumentsChunk(index, usageNull, piece), token), generated, token, callId);
                await output.WriteAsync(json.FinishChunk(index, usageNull, result.FinishReason), token);
                return result;
            }
            case OutputMode.AnyFunctionCall:
            {
                // The function's name is only known once the whole call is generated: send it in one piece.
                await output.WriteAsync(json.RoleChunk(index, usageNull, nullContent: true), token);
                var result = await GenerateChoiceAsync(model, context, promptTokens, chat, index, seed, null, generated, token);
                if (result.ToolCall is { } call)
                {
                    await output.WriteAsync(json.ToolCallChunk(index, usageNull, call.Id, call.Name, call.Arguments), token);
                }
                else if (!string.IsNullOrEmpty(result.Content))
                {
                    await output.WriteAsync(json.ContentChunk(index, usageNull, result.Content), token);
                }
                await output.WriteAsync(json.FinishChunk(index, usageNull, result.FinishReason), token);
                return result;
            }
            default:
            {
                await output.WriteAsync(json.RoleChunk(index, usageNull), token);
                var result = await GenerateChoiceAsync(model, context, promptTokens, chat, index, seed,
                    piece => output.WriteAsync(json.ContentChunk(index, usageNull, piece), token), generated, token);
                await output.WriteAsync(json.FinishChunk(index, usageNull, result.FinishReason), token);
                return result;
            }
        }
    }

    /// <summary>
    /// Generates one choice in <paramref name="context"/> (cleared first). Text is passed to <paramref name="onText"/> as
    /// soon as it is final: complete UTF-8 characters, never part of a stop sequence.
    /// </summary>
    private static async Task<ChoiceResult> GenerateChoiceAsync(
        LlamaModel model, LLamaContext context, LLamaToken[] promptTokens, ChatRequest chat, int index, uint seed,
        Func<string, ValueTask>? onText, UsageCounter counter, CancellationToken token, string? toolCallId = null)
    {
        token.ThrowIfCancellationRequested();
        var handle = context.NativeHandle;
        handle.MemoryClear();

        // Prompt, in batch-sized chunks; logits only for the last token.
        var batch = new LLamaBatch();
        var batchSize = checked((int)context.BatchSize);
        var position = 0;
        for (var start = 0; start < promptTokens.Length; start += batchSize)
        {
            token.ThrowIfCancellationRequested();
            batch.Clear();
            var end = Math.Min(promptTokens.Length, start + batchSize);
            for (var i = start; i < end; i++)
            {
                batch.Add(promptTokens[i], position++, LLamaSeqId.Zero, i == promptTokens.Length - 1);
            }
            Decode(context, batch);
        }
        var logitsIndex = batch.TokenCount - 1;

        var limit = Math.Min((int)context.ContextSize, model.ContextSize);
        var maxTokens = chat.MaxTokens ?? int.MaxValue;
        using var sampler = CreateSampler(chat, seed);
        var decoder = new StreamingTokenDecoder(context);
        var stops = new StopSequenceFilter(chat.Stop);
        var text = new StringBuilder();
        var generated = 0;
        FinishReason finish;
        // Structured output (JSON mode, a forced tool call) must parse even when the budget cuts it short: the JSON
        // written so far is followed, and a token that would leave too few tokens to close it is not kept — the
        // closing text is written in its place.
        JsonCloser? closer = chat.Grammar is null ? null : new JsonCloser();
        string? closing = null;

        while (true)
        {
            token.ThrowIfCancellationRequested();
            var next = sampler.Sample(handle, logitsIndex);
            if (next.IsEndOfGeneration(model.Vocab))
            {
                finish = FinishReason.Stop;
                break;
            }
            decoder.Add(next);
            var sampled = decoder.Read();
            if (closer is { } before)
            {
                var after = before;
                after.Feed(sampled);
                // The tokens that may still follow this one, by max_tokens and by the context.
                var left = Math.Min(maxTokens - (generated + 1), limit - (position + 1));
                if (!after.Complete && after.Suffix() is { } suffix && suffix.Length > left && ClosingTokens(model, suffix) > left)
                {
                    closing = before.Suffix();
                    finish = FinishReason.Length;
                    break;
                }
                closer = after;
            }
            generated++;
            // Counted when sampled, before its text is written: a cancel during the write still meters it.
            counter.AddCompletionToken();
            var piece = stops.Push(sampled);
            if (piece.Length > 0)
            {
                text.Append(piece);
                if (onText is not null)
                {
                    await onText(piece);
                }
            }
            if (stops.Stopped)
            {
                finish = FinishReason.Stop;
                break;
            }
            // The sampled token counts against the context even though it is not decoded yet.
            if (generated >= maxTokens || position + 1 >= limit)
            {
                finish = FinishReason.Length;
                break;
            }
            batch.Clear();
            batch.Add(next, position++, LLamaSeqId.Zero, true);
            logitsIndex = 0;
            Decode(context, batch);
        }

        if (!stops.Stopped)
        {
            var rest = stops.Flush();
            if (closing is not null)
            {
                rest += closing;
                for (var i = ClosingTokens(model, closing); i > 0; i--)
                {
                    generated++;
                    counter.AddCompletionToken();
                }
            }
            if (rest.Length > 0)
            {
                text.Append(rest);
                if (onText is not null)
                {
                    await onText(rest);
                }
            }
        }

        var output = text.ToString();
        switch (chat.Mode)
        {
            case OutputMode.FunctionArguments:
                return new ChoiceResult(
                    index, null, new ToolCall(toolCallId ?? ChatCompletionJson.NewToolCallId(), chat.FunctionName!, output),
                    finish == FinishReason.Stop ? FinishReason.ToolCalls : finish, generated);
            case OutputMode.AnyFunctionCall:
                if (finish == FinishReason.Stop && TryReadFunctionCall(output) is { } call)
                {
                    return new ChoiceResult(index, null, new ToolCall(ChatCompletionJson.NewToolCallId(), call.Name, call.Arguments), FinishReason.ToolCalls, generated);
                }
                return new ChoiceResult(index, output, null, finish, generated);
            default:
                return new ChoiceResult(index, output, null, finish, generated);
        }
    }

    /// <summary>
    /// Tokens the closing text takes (an upper bound): never more than its length, since it is ASCII and every byte
    /// has a token, nor more than it takes tokenized on its own.
    /// </summary>
    private static int ClosingTokens(LlamaModel model, string closing) =>
        closing.Length <= 1 ? closing.Length : Math.Min(closing.Length, model.CountTokens(closing));

    private static DefaultSamplingPipeline CreateSampler(ChatRequest chat, uint seed) => new()
    {
        Temperature = chat.Temperature,
        TopP = chat.TopP,
        // OpenAI has no top-k/min-p/typical sampling: disable LLamaSharp's defaults.
        TopK = 0,
        MinP = 0,
        TypicalP = 1,
        RepeatPenalty = 1,
        FrequencyPenalty = chat.FrequencyPenalty,
        PresencePenalty = chat.PresencePenalty,
        LogitBias = chat.LogitBias.ToDictionary(b => (LLamaToken)b.Key, b => b.Value),
        Grammar = chat.Grammar is null ? null : new Grammar(chat.Grammar, JsonGrammar.RootRule),
        GrammarOptimization = DefaultSamplingPipeline.GrammarOptimizationMode.Basic,
        Seed = seed,
    };

    private static void Decode(LLamaContext context, LLamaBatch batch)
    {
        var result = context.Decode(batch);
        if (result != DecodeResult.Ok)
        {
            throw new LLamaDecodeError(result);
        }
    }

    private static (string Name, string Arguments)? TryReadFunctionCall(string text)
    {
        try
        {
            using var document = JsonDocument.Parse(text);
            var root = document.RootElement;
            if (root.ValueKind == JsonValueKind.Object
                && root.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String
                && root.TryGetProperty("arguments", out var arguments))
            {
                return (name.GetString()!, arguments.GetRawText());
            }
        }
        catch (JsonException)
        {
        }
        return null;
    }

    private static void CheckLogitBias(ChatRequest chat, LlamaModel model)
    {
        var vocabulary = model.Vocab.Count;
        foreach (var tokenId in chat.LogitBias.Keys)
        {
            if (tokenId >= vocabulary)
            {
                throw new ChatRequestException($"Invalid key in 'logit_bias': {tokenId}. Maximum value is {vocabulary - 1}.", "logit_bias", "invalid_value");
            }
        }
    }

    /// <summary>Maps OpenAI's 64-bit seed to llama.cpp's 32-bit one, avoiding its "random seed" value.</summary>
    internal static uint MapSeed(long seed)
    {
        var mapped = unchecked((uint)(seed ^ (seed >> 32)));
        return mapped == uint.MaxValue ? uint.MaxValue - 1 : mapped;
    }

    private static uint RandomSeed() => (uint)RandomNumberGenerator.GetInt32(int.MaxValue);

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        // Synchronous Cancel: the linked per-request tokens must see it before the next token is sampled.
        _shutdown.Cancel();
        await _loadGate.WaitAsync();
        try
        {
            // Contexts of in-flight requests hold a reference on the native model, so freeing happens after they end.
            foreach (var model in _models.Values)
            {
                model.Dispose();
            }
            _models = new Dictionary<string, LlamaModel>(StringComparer.Ordinal);
        }
        finally
        {
            _loadGate.Release();
        }
        // _shutdown is deliberately not disposed: requests racing with disposal may still link to its token.
    }

    /// <summary>
    /// Completion tokens generated so far by a request (all its choices, finished or not), reported to the output with
    /// the prompt's tokens at each step.
    /// </summary>
    private sealed class UsageCounter(IEngineOutput output, int promptTokens)
    {
        public int Count { get; private set; }

        public void ReportPrompt() => output.ReportUsage(new EngineUsage(promptTokens));

        public void AddCompletionToken()
        {
            Count++;
            output.ReportUsage(new EngineUsage(promptTokens, Count));
        }
    }

    private sealed class ReportProgress(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }
}
