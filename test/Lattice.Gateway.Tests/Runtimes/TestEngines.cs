using System.Text;
using Lattice.Runtime.Engines;

namespace Lattice.Gateway.Tests.Runtimes;

/// <summary>Streams numbered chunks with a pause between them and notes when it was cancelled.</summary>
public sealed class SlowEngine(string model, TimeSpan pause, int chunks) : IEngine
{
    private readonly TaskCompletionSource _cancelled = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _firstChunk = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task Cancelled => _cancelled.Task;
    public Task FirstChunkSent => _firstChunk.Task;
    public string Kind => "slow";
    public IReadOnlyList<EngineCapability> Capabilities { get; } = [new("chat.completions", model, null)];

    public Task LoadAsync(IProgress<double>? progress, CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task<EngineUsage> ExecuteAsync(EngineRequest request, IEngineOutput output, CancellationToken cancellationToken)
    {
        await output.StartAsync(200, "text/event-stream", cancellationToken);
        try
        {
            for (var i = 0; i < chunks; i++)
            {
                await output.WriteAsync(Encoding.UTF8.GetBytes($"data: {{\"i\":{i}}}\n\n"), cancellationToken);
                _firstChunk.TrySetResult();
                await Task.Delay(pause, cancellationToken);
            }
            await output.WriteAsync("data: [DONE]\n\n"u8.ToArray(), cancellationToken);
            return new EngineUsage(1, chunks);
        }
        catch (OperationCanceledException)
        {
            _cancelled.TrySetResult();
            throw;
        }
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
