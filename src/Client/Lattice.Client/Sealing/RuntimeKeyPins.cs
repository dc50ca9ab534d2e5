using System.Collections.Concurrent;

namespace Lattice.Client;

/// <summary>
/// Where a client keeps the work-key fingerprint it pinned for each personal runtime (trust on first use). The default
/// (<see cref="InMemoryRuntimeKeyPinStore"/>) forgets at restart; an app that must notice a key changed between runs
/// keeps its pins in its own storage.
/// </summary>
public interface IRuntimeKeyPinStore
{
    /// <summary>The fingerprint pinned for <paramref name="latticeId"/>, or null when none is.</summary>
    ValueTask<string?> GetAsync(string latticeId, CancellationToken cancellationToken);

    /// <summary>Pins <paramref name="fingerprint"/> for <paramref name="latticeId"/>, replacing any earlier pin.</summary>
    ValueTask SetAsync(string latticeId, string fingerprint, CancellationToken cancellationToken);
}

/// <summary>Pins held in memory for the life of the store (shared by the clients made from one <see cref="LatticeClientOptions"/>).</summary>
public sealed class InMemoryRuntimeKeyPinStore : IRuntimeKeyPinStore
{
    private readonly ConcurrentDictionary<string, string> _pins = new(StringComparer.Ordinal);

    /// <inheritdoc/>
    public ValueTask<string?> GetAsync(string latticeId, CancellationToken cancellationToken) =>
        ValueTask.FromResult(_pins.TryGetValue(latticeId, out var fingerprint) ? fingerprint : null);

    /// <inheritdoc/>
    public ValueTask SetAsync(string latticeId, string fingerprint, CancellationToken cancellationToken)
    {
        _pins[latticeId] = fingerprint;
        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// A runtime's work key is not the one this client pinned for it: nothing was sent. The key changes when the daemon's
/// <c>work-key.pem</c> is replaced — or when someone between the app and the runtime offers their own key. Confirm the
/// new fingerprint with the runtime's owner (<c>lattice status</c> shows it), then <see cref="LatticeClient.AcceptRuntimeKeyAsync"/>.
/// </summary>
public sealed class RuntimeKeyChangedException : LatticeException
{
    /// <summary>The key of <paramref name="latticeId"/> is <paramref name="presented"/>, not the pinned <paramref name="pinned"/>.</summary>
    public RuntimeKeyChangedException(string latticeId, string pinned, string presented)
        : base(new LatticeError(0, LatticeErrorCodes.RuntimeKeyChanged, null,
            $"The work key of runtime '{latticeId}' changed: pinned {pinned}, now {presented}. Nothing was sent; accept the new key only once its owner confirms it."))
    {
        LatticeId = latticeId;
        PinnedFingerprint = pinned;
        PresentedFingerprint = presented;
    }

    /// <summary>The runtime.</summary>
    public string LatticeId { get; }

    /// <summary>The fingerprint pinned on first use.</summary>
    public string PinnedFingerprint { get; }

    /// <summary>The fingerprint of the key the gateway now publishes for it.</summary>
    public string PresentedFingerprint { get; }
}

/// <summary>
/// A sealed answer did not open: altered on the way, cut short (no final chunk), or not sealed to this call's reply key.
/// Nothing of it is returned.
/// </summary>
public sealed class SealedAnswerException : LatticeException
{
    /// <summary>The answer to request <paramref name="requestId"/> failed to open.</summary>
    public SealedAnswerException(string message, string? requestId, Exception? innerException = null)
        : base(new LatticeError(0, LatticeErrorCodes.SealedAnswerInvalid, null, message, RequestId: requestId), innerException)
    {
    }
}
