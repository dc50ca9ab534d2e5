using System.Collections.Concurrent;

namespace Lattice.StandIn.OpenAi;

/// <summary>
/// Gates a test holds requests at: a request for model <c>standin-held-&lt;name&gt;</c> is counted, then waits (before
/// anything is answered) until the test lets it through — one at a time (<see cref="Gate.Release"/>, or
/// <c>POST /_standin/release?gate=&lt;name&gt;&amp;count=N</c> from another process) or all from then on
/// (<see cref="Gate.Open"/>). Tests wait on <see cref="Gate.Arrived"/> or on the counts
/// (<c>GET /_standin/held?gate=&lt;name&gt;</c>) rather than sleeping.
/// </summary>
public static class StandInGates
{
    private static readonly ConcurrentDictionary<string, Gate> s_gates = new(StringComparer.Ordinal);

    public static Gate Get(string name) => s_gates.GetOrAdd(name, static _ => new Gate());

    public sealed class Gate
    {
        private readonly TaskCompletionSource _arrived = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly SemaphoreSlim _permits = new(0);
        private volatile bool _open;
        private long _arrivals;
        private int _waiting;

        /// <summary>Completes when the first request has reached the gate.</summary>
        public Task Arrived => _arrived.Task;

        /// <summary>Requests that reached the gate so far.</summary>
        public long Arrivals => Interlocked.Read(ref _arrivals);

        /// <summary>Requests waiting at the gate now.</summary>
        public int Waiting => Volatile.Read(ref _waiting);

        /// <summary>Lets <paramref name="count"/> waiting (or later) requests through.</summary>
        public void Release(int count = 1) => _permits.Release(count);

        /// <summary>Lets every waiting and later request through.</summary>
        public void Open()
        {
            _open = true;
            _permits.Release(1 << 20);
        }

        internal async Task PassAsync(CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _arrivals);
            _arrived.TrySetResult();
            if (_open)
            {
                return;
            }
            Interlocked.Increment(ref _waiting);
            try
            {
                await _permits.WaitAsync(cancellationToken);
            }
            finally
            {
                Interlocked.Decrement(ref _waiting);
            }
        }
    }
}
