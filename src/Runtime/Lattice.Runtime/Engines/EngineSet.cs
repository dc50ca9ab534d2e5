using Lattice.Protocol.Runtime;

namespace Lattice.Runtime.Engines;

/// <summary>The loaded engines of a daemon, and which one serves a task/model pair.</summary>
public sealed class EngineSet(IReadOnlyList<IEngine> engines) : IAsyncDisposable
{
    public IReadOnlyList<IEngine> Engines { get; } = engines;

    public IReadOnlyList<CapabilityInfo> Capabilities =>
        Engines.SelectMany(e => e.Capabilities.Select(c => new CapabilityInfo(c.Task, c.Model, e.Kind, c.ModelSha256))).ToList();

    /// <summary>The engine serving <paramref name="model"/> for <paramref name="task"/>.</summary>
    public IEngine? Find(string task, string model)
    {
        foreach (var engine in Engines)
        {
            foreach (var c in engine.Capabilities)
            {
                if (c.Task == task && c.Model == model)
                {
                    return engine;
                }
            }
        }
        return null;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var engine in Engines)
        {
            await engine.DisposeAsync();
        }
    }
}
