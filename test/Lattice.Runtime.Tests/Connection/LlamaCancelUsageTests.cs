using System.Text.Json.Nodes;
using Lattice.Protocol.Runtime;
using Lattice.Runtime.Engines;
using Lattice.Runtime.Engines.Llama;
using Lattice.Runtime.Tests.Engines.Llama;

namespace Lattice.Runtime.Tests.Connection;

/// <summary>
/// A streaming llama request cancelled through the link is metered for what it generated: the daemon answers the
/// Cancel with one End carrying the prompt's tokens and the completion tokens so far.
/// </summary>
public sealed class LlamaCancelUsageTests(LlamaEngineFixture fixture) : IClassFixture<LlamaEngineFixture>
{
    [Fact]
    public async Task A_stream_cancelled_after_some_tokens_ends_with_its_prompt_and_the_tokens_generated_so_far()
    {
        var engine = new HoldingEngine(fixture.Engine);
        await using var gateway = await GatewaySide.ConnectAsync(2, engine);
        var request = LlamaEngineFixture.UserRequest("Once upon a time", maxTokens: null);
        request["stream"] = true;
        var json = request.ToJsonString();

        // The same request run to its end, for the prompt's count.
        await gateway.DispatchAsync(1, LlamaEngine.ChatCompletionsTask, LlamaEngineFixture.ModelName, json, stream: true);
        var full = GatewaySide.ReadEnd((await gateway.ReceiveUntilDoneAsync(1))[^1]);
        Assert.False(full.Cancelled);
        Assert.True(full.PromptTokens > 0);

        // The role chunk and two content chunks leave; the third content chunk waits until the cancel stops the engine,
        // so the cancel lands mid-stream however fast the model is.
        engine.HoldAtWrite = 4;
        await gateway.DispatchAsync(2, LlamaEngine.ChatCompletionsTask, LlamaEngineFixture.ModelName, json, stream: true);
        await engine.Holding.WaitAsync(GatewaySide.Timeout);
        await gateway.CancelAsync(2);
        var frames = await gateway.ReceiveUntilDoneAsync(2);

        var end = GatewaySide.ReadEnd(frames[^1]);
        var streamed = ContentChunks(frames.Where(f => f.Id == 2 && f.Type == FrameType.Data));
        Assert.Equal(2, streamed);
        Assert.True(end.Cancelled);
        Assert.Equal(full.PromptTokens, end.PromptTokens);
        // The token whose text was being written when the cancel came was generated, so it counts.
        Assert.InRange(end.CompletionTokens, 1, streamed + 1);
        Assert.True(end.CompletionTokens < full.CompletionTokens);

        // Exactly one End: nothing more of dispatch 2 comes before the next dispatch's answer (the link is FIFO).
        engine.HoldAtWrite = null;
        var shortRequest = LlamaEngineFixture.UserRequest("Once upon a time", maxTokens: 1).ToJsonString();
        await gateway.DispatchAsync(3, LlamaEngine.ChatCompletionsTask, LlamaEngineFixture.ModelName, shortRequest, stream: false);
        Assert.All(await gateway.ReceiveUntilDoneAsync(3), f => Assert.Equal(3u, f.Id));
    }

    /// <summary>Non-empty <c>delta.content</c> events in the data frames' SSE stream.</summary>
    private static int ContentChunks(IEnumerable<ReceivedFrame> data)
    {
        var text = string.Concat(data.Select(f => f.Text));
        var count = 0;
        foreach (var item in text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries))
        {
            Assert.StartsWith("data: ", item, StringComparison.Ordinal);
            var chunk = JsonNode.Parse(item["data: ".Length..])!;
            if (chunk["choices"]![0]!["delta"]!["content"] is JsonValue content && content.GetValue<string>().Length > 0)
            {
                count++;
            }
        }
        return count;
    }

    /// <summary>
    /// The llama engine with its output held back: the write numbered <see cref="HoldAtWrite"/> (read when a request
    /// starts) waits until the request is cancelled, and never reaches the link.
    /// </summary>
    private sealed class HoldingEngine(IEngine inner) : IEngine
    {
        private readonly TaskCompletionSource _holding = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int? HoldAtWrite { get; set; }
        public Task Holding => _holding.Task;
        public string Kind => inner.Kind;
        public IReadOnlyList<EngineCapability> Capabilities => inner.Capabilities;

        public Task LoadAsync(IProgress<double>? progress, CancellationToken cancellationToken) => inner.LoadAsync(progress, cancellationToken);

        public Task<EngineUsage> ExecuteAsync(EngineRequest request, IEngineOutput output, CancellationToken cancellationToken) =>
            inner.ExecuteAsync(request, HoldAtWrite is { } hold ? new HoldingOutput(output, hold, _holding) : output, cancellationToken);

        // The fixture owns the engine.
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    private sealed class HoldingOutput(IEngineOutput inner, int holdAt, TaskCompletionSource holding) : IEngineOutput
    {
        private int _writes;

        public ValueTask StartAsync(int status, string contentType, CancellationToken cancellationToken) =>
            inner.StartAsync(status, contentType, cancellationToken);

        public void ReportUsage(EngineUsage usageSoFar) => inner.ReportUsage(usageSoFar);

        public async ValueTask WriteAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
        {
            if (++_writes == holdAt)
            {
                holding.TrySetResult();
                await Task.Delay(Timeout.Infinite, cancellationToken);
            }
            await inner.WriteAsync(bytes, cancellationToken);
        }
    }
}
