using System.Collections.Concurrent;

namespace Lattice.StandIn.OpenAi;

/// <summary>
/// Gates an in-process test holds requests at: a request for model <c>standin-gate-&lt;name&gt;</c> is counted, then
/// waits (before anything is answered) until the test opens gate <c>&lt;name&gt;</c>; an open gate lets requests
/// straight through. Tests wait on <see cref="Gate.Arrived"/> rather than sleeping.
/// </summary>
public static class StandInGates
{
    private static readonly ConcurrentDictionary<string, Gate> s_gates = new(StringComparer.Ordinal);

    public static Gate Get(string name) => s_gates.GetOrAdd(name, static _ => new Gate());

    public sealed class Gate
    {
        private readonly TaskCompletionSource _arrived = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _open = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private long _arrivals;

        /// <summary>Completes when the first request has reached the gate.</summary>
        public Task Arrived => _arrived.Task;

        /// <summary>Requests that reached the gate so far.</summary>
        public long Arrivals => Interlocked.Read(ref _arrivals);

        /// <summary>Lets every waiting and later request through.</summary>
        public void Open() => _open.TrySetResult();

        internal async Task PassAsync(CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _arrivals);
            _arrived.TrySetResult();
            await _open.Task.WaitAsync(cancellationToken);
        }
    }
}
