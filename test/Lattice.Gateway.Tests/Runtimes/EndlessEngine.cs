using System.Text;
using Lattice.Runtime.Engines;

namespace Lattice.Gateway.Tests.Runtimes;

/// <summary>Streams 1 KiB events without end, as fast as its output takes them, and counts the bytes it wrote.</summary>
public sealed class EndlessEngine(string model) : IEngine
{
    /// <summary>One SSE event of exactly 1024 bytes.</summary>
    public static readonly byte[] Event = Encoding.UTF8.GetBytes("data: {\"pad\":\"" + new string('x', 1024 - 18) + "\"}\n\n");

    private long _written;

    /// <summary>Bytes the daemon has taken from the engine so far.</summary>
    public long Written => Interlocked.Read(ref _written);

    public string Kind => "endless";
    public IReadOnlyList<EngineCapability> Capabilities { get; } = [new("chat.completions", model, null)];

    public Task LoadAsync(IProgress<double>? progress, CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task<EngineUsage> ExecuteAsync(EngineRequest request, IEngineOutput output, CancellationToken cancellationToken)
    {
        await output.StartAsync(200, "text/event-stream", cancellationToken);
        while (true)
        {
            await output.WriteAsync(Event, cancellationToken);
            Interlocked.Add(ref _written, Event.Length);
        }
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
