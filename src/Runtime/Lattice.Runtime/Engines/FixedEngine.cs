using System.Text;

namespace Lattice.Runtime.Engines;

/// <summary>
/// An engine with fixed output, for measuring the runtime path without inference cost: chat answers
/// "Hello from the fixed engine." (streamed as a fixed number of chunks), embeddings a fixed vector.
/// </summary>
public sealed class FixedEngine(string model = "fixed", int streamChunks = 8, TimeSpan chunkDelay = default) : IEngine
{
    private static readonly byte[] Completion = Encoding.UTF8.GetBytes(
        """{"id":"chatcmpl-fixed","object":"chat.completion","created":1700000000,"model":"fixed","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the fixed engine.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":5,"total_tokens":6}}""");
    private static readonly byte[] Chunk = Encoding.UTF8.GetBytes(
        "data: {\"id\":\"chatcmpl-fixed\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"fixed\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tick \"},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
    private static readonly byte[] LastChunk = Encoding.UTF8.GetBytes(
        "data: {\"id\":\"chatcmpl-fixed\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"fixed\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");

    public string Kind => "fixed";

    public IReadOnlyList<EngineCapability> Capabilities { get; } = [new("chat.completions", model, null)];

    public Task LoadAsync(IProgress<double>? progress, CancellationToken cancellationToken)
    {
        progress?.Report(1);
        return Task.CompletedTask;
    }

    public async Task<EngineUsage> ExecuteAsync(EngineRequest request, IEngineOutput output, CancellationToken cancellationToken)
    {
        if (!request.Stream)
        {
            await output.StartAsync(200, "application/json", cancellationToken);
            await output.WriteAsync(Completion, cancellationToken);
            return new EngineUsage(1, 5);
        }
        await output.StartAsync(200, "text/event-stream", cancellationToken);
        output.ReportUsage(new EngineUsage(1));
        for (var i = 0; i < streamChunks; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            output.ReportUsage(new EngineUsage(1, i + 1));
            await output.WriteAsync(Chunk, cancellationToken);
            if (chunkDelay > TimeSpan.Zero)
            {
                await Task.Delay(chunkDelay, cancellationToken);
            }
        }
        await output.WriteAsync(LastChunk, cancellationToken);
        return new EngineUsage(1, streamChunks);
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
