using Lattice.Protocol.Sealing;

namespace Lattice.Client.Sealing;

/// <summary>
/// The sealing sessions of one sealed client with one runtime key (docs/sealed-dispatch.md, "Sessions"). A session's
/// costly part — a fresh ephemeral key pair and the ECDH with the work key — is made on the thread pool ahead of the
/// calls: the first when the sealed client is made (<see cref="Prepare"/>), the next once the current one has used
/// half its requests or half its time. A call then only encrypts (AES-GCM under the session's key). A session serves at
/// most <c>maxRequests</c> requests and lives at most <c>maxAge</c> from when it was made; a call that finds none
/// ready (the first after a long pause) waits for the one being made.
/// </summary>
internal sealed class SealingSessions(byte[] runtimePublicKey, TimeProvider time, int maxRequests = SealingSessions.DefaultMaxRequests, TimeSpan? maxAge = null)
    : IDisposable
{
    /// <summary>Requests one session seals by default.</summary>
    public const int DefaultMaxRequests = 1000;

    /// <summary>How long a session is used by default, from when it was made.</summary>
    public static readonly TimeSpan DefaultMaxAge = TimeSpan.FromMinutes(10);

    private readonly TimeSpan _maxAge = maxAge ?? DefaultMaxAge;
    private readonly Lock _gate = new();
    private Made? _current;
    private int _used;
    private Task<Made>? _next;
    private bool _disposed;

    private sealed record Made(SealingSession Session, long At);

    /// <summary>Sessions made so far (for tests: how many ECDH the calls cost).</summary>
    public int SessionsMade { get; private set; }

    /// <summary>Starts making the first session on the thread pool, so the first call finds it ready.</summary>
    public void Prepare()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_current is null)
            {
                _next ??= Make();
            }
        }
    }

    /// <summary>
    /// Seals <paramref name="body"/> for request <paramref name="requestId"/> in the current session (moving on to the
    /// next when it is spent); the opener opens the answer.
    /// </summary>
    public async ValueTask<(byte[] SealedBody, SealedChunkOpener Reply)> SealAsync(ReadOnlyMemory<byte> body, string requestId, string runtimeId,
        CancellationToken cancellationToken)
    {
        while (true)
        {
            SealingSession? session = null;
            Task<Made>? making = null;
            lock (_gate)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (_current is { } current && _used < maxRequests && time.GetElapsedTime(current.At) < _maxAge)
                {
                    _used++;
                    if (_next is null && (_used * 2 >= maxRequests || time.GetElapsedTime(current.At) * 2 >= _maxAge))
                    {
                        _next = Make();
                    }
                    session = current.Session;
                }
                else if (_next is { IsCompletedSuccessfully: true } ready)
                {
                    // The next session takes over; the spent one is dropped (a call may still be sealing with it).
                    _current = ready.Result;
                    _used = 0;
                    _next = null;
                    continue;
                }
                else
                {
                    making = _next ??= Make();
                }
            }
            if (session is not null)
            {
                var sealedBody = session.Seal(body.Span, requestId, runtimeId, out var reply);
                return (sealedBody, reply);
            }
            try
            {
                await making!.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception) when (!cancellationToken.IsCancellationRequested)
            {
                // Making it failed: the next call tries again.
                lock (_gate)
                {
                    if (_next == making)
                    {
                        _next = null;
                    }
                }
                throw;
            }
        }
    }

    private Task<Made> Make()
    {
        SessionsMade++;
        return Task.Run(() => new Made(SealingSession.Create(runtimePublicKey), time.GetTimestamp()));
    }

    /// <summary>Forgets the current and next sessions' secrets (zeroed).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            _current?.Session.Dispose();
            _current = null;
            if (_next is { } next)
            {
                _ = next.ContinueWith(static t => t.Result.Session.Dispose(), CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
                _next = null;
            }
        }
    }
}
