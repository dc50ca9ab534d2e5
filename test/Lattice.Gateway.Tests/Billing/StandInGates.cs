using Lattice.StandIn.OpenAi;

namespace Lattice.Gateway.Tests.Billing;

/// <summary>A gate of its own at the in-process stand-in: requests for <see cref="UpstreamModel"/> wait there until let through.</summary>
public sealed class StandInGate
{
    private readonly StandInGates.Gate _gate;

    public StandInGate()
    {
        _gate = StandInGates.Get(Name);
    }

    public string Name { get; } = "g" + Guid.NewGuid().ToString("N")[..12];

    public string UpstreamModel => "standin-held-" + Name;

    /// <summary>Waits until <paramref name="count"/> requests are held at the gate (a counter, not a clock).</summary>
    public async Task WaitHeldAsync(int count)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (_gate.Waiting < count)
        {
            await Task.Delay(10, timeout.Token);
        }
    }

    public Task ReleaseAsync(int count = 1)
    {
        _gate.Release(count);
        return Task.CompletedTask;
    }
}
