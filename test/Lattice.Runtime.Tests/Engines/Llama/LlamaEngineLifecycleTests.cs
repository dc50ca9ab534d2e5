using System.Text;
using System.Text.Json.Nodes;
using Lattice.Runtime.Engines;
using Lattice.Runtime.Engines.Llama;
using Lattice.Testing;
using LLama;
using LLama.Common;

namespace Lattice.Runtime.Tests.Engines.Llama;

/// <summary>Construction, loading, configuration and disposal of <see cref="LlamaEngine"/>, each with its own engine.</summary>
public sealed class LlamaEngineLifecycleTests
{
    private static string RandomModelPath => Path.Combine(RepoPaths.SharedDir, "models", "chat", "llama-2-tiny-random.gguf");

    [Fact]
    public void Constructor_RejectsBadOptions()
    {
        Assert.Throws<ArgumentException>(() => new LlamaEngine(new LlamaEngineOptions()));
        Assert.Throws<ArgumentException>(() => new LlamaEngine(new LlamaEngineOptions
        {
            Models = [new LlamaModelOptions { Name = "a", Path = "x.gguf" }, new LlamaModelOptions { Name = "a", Path = "y.gguf" }],
        }));
        Assert.Throws<ArgumentException>(() => new LlamaEngine(new LlamaEngineOptions
        {
            Models = [new LlamaModelOptions { Name = "a", Path = "x.gguf", Threads = 0 }],
        }));
    }

    [Fact]
    public async Task Load_MissingFileThrowsAndRequestsBeforeLoadAre503()
    {
        await using var engine = new LlamaEngine(new LlamaEngineOptions
        {
            Models = [new LlamaModelOptions { Name = "gone", Path = Path.Combine(Path.GetTempPath(), Guid.NewGuid() + ".gguf") }],
        });

        var output = new RecordingOutput();
        await engine.ExecuteAsync(Request("gone", LlamaEngineFixture.UserRequest("hi")), output, CancellationToken.None);
        Assert.Equal(503, output.Status);

        await Assert.ThrowsAsync<FileNotFoundException>(() => engine.LoadAsync(null, CancellationToken.None));
        Assert.Empty(engine.Capabilities);
    }

    [Fact]
    public async Task ModelWithoutTemplate_IsPromptedWithThePlainTextAndTheDefaultContextOf2048()
    {
        await using var engine = new LlamaEngine(new LlamaEngineOptions
        {
            Models = [new LlamaModelOptions { Name = "random", Path = RandomModelPath }],
        });
        await engine.LoadAsync(null, CancellationToken.None);
        Assert.Equal(new EngineCapability("chat.completions", "random", "81f226c62d28ed4a1a9b9fa080fcd9f0cc40e0f9d5680036583ff98fbcd035cb"), Assert.Single(engine.Capabilities));

        const string Text = "Grüße aus Köln – 東京 🙂";
        var output = new RecordingOutput();
        var usage = await engine.ExecuteAsync(Request("random", LlamaEngineFixture.UserRequest(Text, maxTokens: 5)), output, CancellationToken.None);
        Assert.Equal(200, output.Status);
        OpenApiContract.AssertValid("CreateChatCompletionResponse", output.Text);
        Assert.Equal(5, usage.CompletionTokens);

        using (var weights = LLamaWeights.LoadFromFile(new ModelParams(RandomModelPath) { GpuLayerCount = 0 }))
        {
            // No template in its metadata: a completion model, prompted with the message's text alone.
            Assert.Equal(weights.Tokenize(Text, add_bos: true, special: false, Encoding.UTF8).Length, usage.PromptTokens);
            Assert.NotEqual(weights.Tokenize($"<|im_start|>user\n{Text}<|im_end|>\n<|im_start|>assistant\n", add_bos: true, special: true, Encoding.UTF8).Length, usage.PromptTokens);
        }

        // The model was trained with 4096 tokens of context; the default is the smaller 2048.
        output = new RecordingOutput();
        await engine.ExecuteAsync(Request("random", LlamaEngineFixture.UserRequest(string.Concat(Enumerable.Repeat("word ", 2100)))), output, CancellationToken.None);
        Assert.Equal(400, output.Status);
        Assert.Contains("maximum context length is 2048 tokens", output.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ConfiguredContextSize_LimitsPromptPlusCompletion()
    {
        await using var engine = new LlamaEngine(new LlamaEngineOptions
        {
            Models = [new LlamaModelOptions { Name = "small", Path = LlamaEngineFixture.ModelPath, ContextSize = 64, Threads = 1 }],
        });
        await engine.LoadAsync(null, CancellationToken.None);

        var output = new RecordingOutput();
        var usage = await engine.ExecuteAsync(Request("small", LlamaEngineFixture.UserRequest("Once upon a time", maxTokens: null)), output, CancellationToken.None);

        var choice = LlamaEngineFixture.Json(output.Text).GetProperty("choices")[0];
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(64, usage.PromptTokens + usage.CompletionTokens);
        Assert.StartsWith(choice.GetProperty("message").GetProperty("content").GetString()!, LlamaEngineTests.GreedyText + " ", StringComparison.Ordinal);
    }

    [Fact]
    public async Task Dispose_DuringAStream_EndsItWithAnErrorEventAndLaterRequestsGet503()
    {
        var engine = new LlamaEngine(new LlamaEngineOptions
        {
            Models = [new LlamaModelOptions { Name = LlamaEngineFixture.ModelName, Path = LlamaEngineFixture.ModelPath }],
        });
        await engine.LoadAsync(null, CancellationToken.None);

        Task? disposal = null;
        var output = new CallbackOutput(writes => { if (writes == 3) { disposal = engine.DisposeAsync().AsTask(); } });
        var body = LlamaEngineFixture.UserRequest("Once upon a time", maxTokens: null);
        body["stream"] = true;
        var usage = await engine.ExecuteAsync(Request(LlamaEngineFixture.ModelName, body), output, CancellationToken.None);
        await disposal!;

        var events = LlamaEngineFixture.Events(output.Recording);
        Assert.Contains("\"error\"", events[^1], StringComparison.Ordinal);
        Assert.InRange(usage.CompletionTokens, 2, 5);

        var after = new RecordingOutput();
        await engine.ExecuteAsync(Request(LlamaEngineFixture.ModelName, LlamaEngineFixture.UserRequest("hi")), after, CancellationToken.None);
        Assert.Equal(503, after.Status);
    }

    private static EngineRequest Request(string model, JsonObject body)
    {
        body["model"] = model;
        return new EngineRequest(LlamaEngine.ChatCompletionsTask, model, Encoding.UTF8.GetBytes(body.ToJsonString()), "application/json", body["stream"]?.GetValue<bool>() ?? false);
    }

    private sealed class CallbackOutput(Action<int> afterWrite) : IEngineOutput
    {
        public RecordingOutput Recording { get; } = new();

        public ValueTask StartAsync(int status, string contentType, CancellationToken cancellationToken) =>
            Recording.StartAsync(status, contentType, cancellationToken);

        public async ValueTask WriteAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
        {
            await Recording.WriteAsync(bytes, cancellationToken);
            afterWrite(Recording.Writes.Count);
        }

        public void ReportUsage(EngineUsage usageSoFar) => Recording.ReportUsage(usageSoFar);
    }
}
