using System.Security.Cryptography;

namespace Lattice.Protocol.Sealing;

/// <summary>
/// Seals a request body to a runtime's public work key and opens it on the daemon, one request at a time: a session of
/// one request (<see cref="SealingSession"/>, <see cref="SealedRequestOpener"/> hold sessions across requests). Wire
/// format: <c>0x02 || ephemeral public key (65) || AES-256-GCM ciphertext || tag (16)</c>, nonce all zero (each request
/// key is used once: it is expanded for one request id of one session), associated data <see cref="SealedFormat.AssociatedData"/>.
/// </summary>
public static class SealedRequest
{
    /// <summary>
    /// Seals <paramref name="body"/> in a session of its own (a fresh ephemeral key: one key pair and one ECDH on this
    /// call); <paramref name="reply"/> opens the answer's chunks.
    /// </summary>
    public static byte[] Seal(ReadOnlySpan<byte> body, ReadOnlySpan<byte> runtimePublicKey, string requestId, string runtimeId, out SealedChunkOpener reply)
    {
        using var session = SealingSession.Create(runtimePublicKey);
        return session.Seal(body, requestId, runtimeId, out reply);
    }

    /// <summary>Seals with a given ephemeral key; only for test vectors (an ephemeral key must never be reused across sessions).</summary>
    public static byte[] Seal(ReadOnlySpan<byte> body, ReadOnlySpan<byte> runtimePublicKey, string requestId, string runtimeId, ECDiffieHellman ephemeral, out SealedChunkOpener reply)
    {
        using var session = SealingSession.Create(runtimePublicKey, ephemeral);
        return session.Seal(body, requestId, runtimeId, out reply);
    }

    /// <summary>
    /// Opens a sealed request with the runtime's private work key, keeping no session (one ECDH on this call);
    /// <paramref name="reply"/> seals the answer's chunks to the client. Throws <see cref="SealedMessageException"/>
    /// when it does not open.
    /// </summary>
    public static byte[] Open(ReadOnlySpan<byte> sealedBody, ECDiffieHellman workKey, string requestId, string runtimeId, out SealedChunkSealer reply) =>
        new SealedRequestOpener(workKey, capacity: 0).Open(sealedBody, requestId, runtimeId, out reply);

    /// <summary>Throws unless <paramref name="sealedBody"/> can be a v2 sealed request (version and length).</summary>
    internal static void CheckLayout(ReadOnlySpan<byte> sealedBody)
    {
        if (sealedBody.Length < SealedFormat.RequestOverhead)
        {
            throw new SealedMessageException("sealed request too short");
        }
        if (sealedBody[0] != SealedFormat.Version)
        {
            throw new SealedMessageException("unknown sealed format version");
        }
    }
}

/// <summary>
/// The app's side of a session with one runtime: a fresh ephemeral P-256 key pair and the ECDH with the runtime's work
/// key, done once by <see cref="Create(ReadOnlySpan{byte})"/> (ahead of the calls, off their path); each
/// <see cref="Seal"/> then only expands per-request keys from the session secret (HKDF) and encrypts (AES-GCM). Every
/// request of a session needs a request id of its own: a session refuses one it has sealed before. Thread-safe.
/// </summary>
public sealed class SealingSession : IDisposable
{
    private readonly byte[] _secret;
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);
    private bool _disposed;

    private SealingSession(byte[] secret, byte[] ephemeralPublic)
    {
        _secret = secret;
        EphemeralPublicKey = ephemeralPublic;
    }

    /// <summary>The session's ephemeral public key (SEC1, 65 bytes): in every request it seals, and the client's reply key.</summary>
    public byte[] EphemeralPublicKey { get; }

    /// <summary>Requests sealed so far.</summary>
    public int Sealed
    {
        get
        {
            lock (_used)
            {
                return _used.Count;
            }
        }
    }

    /// <summary>A session with a fresh ephemeral key (a key pair and an ECDH: the costly part, done once here).</summary>
    /// <exception cref="SealedMessageException"><paramref name="runtimePublicKey"/> is not a P-256 point.</exception>
    public static SealingSession Create(ReadOnlySpan<byte> runtimePublicKey)
    {
        using var ephemeral = SealedFormat.NewKey();
        return Create(runtimePublicKey, ephemeral);
    }

    /// <summary>A session with a given ephemeral key; only for test vectors (an ephemeral key must never be reused across sessions).</summary>
    public static SealingSession Create(ReadOnlySpan<byte> runtimePublicKey, ECDiffieHellman ephemeral)
    {
        using var work = SealedFormat.ImportPublicKey(runtimePublicKey);
        using var workPublic = work.PublicKey;
        var ephemeralPublic = SealedFormat.PublicKeyOf(ephemeral);
        return new SealingSession(SealedFormat.SessionSecret(ephemeral, workPublic, ephemeralPublic, runtimePublicKey), ephemeralPublic);
    }

    /// <summary>
    /// Seals <paramref name="body"/> for request <paramref name="requestId"/> on runtime <paramref name="runtimeId"/>;
    /// <paramref name="reply"/> opens the answer's chunks. No public-key operation.
    /// </summary>
    /// <exception cref="InvalidOperationException">This session already sealed a request with this id.</exception>
    public byte[] Seal(ReadOnlySpan<byte> body, string requestId, string runtimeId, out SealedChunkOpener reply)
    {
        var ad = SealedFormat.AssociatedData(requestId, runtimeId);
        Span<byte> secret = stackalloc byte[SealedFormat.KeyBytes];
        lock (_used)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_used.Add(requestId))
            {
                throw new InvalidOperationException("A sealing session seals each request id once: a second body under the same id would reuse its key.");
            }
            _secret.CopyTo(secret);
        }
        var (requestKey, replyKey) = SealedFormat.RequestKeys(secret, ad);
        CryptographicOperations.ZeroMemory(secret);
        var sealedBody = new byte[SealedFormat.RequestOverhead + body.Length];
        sealedBody[0] = SealedFormat.Version;
        EphemeralPublicKey.CopyTo(sealedBody, 1);
        using (var gcm = new AesGcm(requestKey, SealedFormat.TagBytes))
        {
            var ciphertext = sealedBody.AsSpan(1 + SealedFormat.PublicKeyBytes, body.Length);
            gcm.Encrypt(stackalloc byte[SealedFormat.NonceBytes], body, ciphertext, sealedBody.AsSpan(sealedBody.Length - SealedFormat.TagBytes), ad);
        }
        CryptographicOperations.ZeroMemory(requestKey);
        reply = new SealedChunkOpener(replyKey, ad);
        return sealedBody;
    }

    /// <summary>Forgets the session secret (zeroed): nothing more can be sealed in it.</summary>
    public void Dispose()
    {
        lock (_used)
        {
            _disposed = true;
            CryptographicOperations.ZeroMemory(_secret);
        }
    }
}

/// <summary>
/// The daemon's side: opens sealed requests with the work key, keeping the secret of each session that sealed a request
/// which opened (keyed by its ephemeral public key; the <c>capacity</c> most recently used), so a session's later
/// requests need no ECDH. A secret enters only once a request sealed with it opened: made up keys fill nothing.
/// Thread-safe; the work key is not owned.
/// </summary>
public sealed class SealedRequestOpener : IDisposable
{
    /// <summary>Sessions kept by default.</summary>
    public const int DefaultCapacity = 1024;

    private readonly ECDiffieHellman _workKey;
    private readonly byte[] _workPublic;
    private readonly int _capacity;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, LinkedListNode<(string Key, byte[] Secret)>> _sessions = new(StringComparer.Ordinal);
    private readonly LinkedList<(string Key, byte[] Secret)> _recent = new();

    /// <param name="workKey">The runtime's private work key (not owned).</param>
    /// <param name="capacity">Sessions kept (least recently used goes first); 0 keeps none.</param>
    public SealedRequestOpener(ECDiffieHellman workKey, int capacity = DefaultCapacity)
    {
        ArgumentNullException.ThrowIfNull(workKey);
        ArgumentOutOfRangeException.ThrowIfNegative(capacity);
        _workKey = workKey;
        _workPublic = SealedFormat.PublicKeyOf(workKey);
        _capacity = capacity;
    }

    /// <summary>Sessions kept now.</summary>
    public int Sessions
    {
        get
        {
            lock (_gate)
            {
                return _sessions.Count;
            }
        }
    }

    /// <summary>
    /// Opens a sealed request; <paramref name="reply"/> seals the answer's chunks to the client. Throws
    /// <see cref="SealedMessageException"/> when it does not open (another key, request or runtime, altered, not v2).
    /// </summary>
    public byte[] Open(ReadOnlySpan<byte> sealedBody, string requestId, string runtimeId, out SealedChunkSealer reply)
    {
        SealedRequest.CheckLayout(sealedBody);
        var ephemeralPublic = sealedBody.Slice(1, SealedFormat.PublicKeyBytes);
        var ciphertext = sealedBody[(1 + SealedFormat.PublicKeyBytes)..^SealedFormat.TagBytes];
        var tag = sealedBody[^SealedFormat.TagBytes..];
        var key = Convert.ToBase64String(ephemeralPublic);
        Span<byte> secret = stackalloc byte[SealedFormat.KeyBytes];
        var known = false;
        lock (_gate)
        {
            if (_sessions.TryGetValue(key, out var node))
            {
                _recent.Remove(node);
                _recent.AddFirst(node);
                node.Value.Secret.CopyTo(secret);
                known = true;
            }
        }
        if (!known)
        {
            using var ephemeral = SealedFormat.ImportPublicKey(ephemeralPublic);
            using var peer = ephemeral.PublicKey;
            var fresh = SealedFormat.SessionSecret(_workKey, peer, ephemeralPublic, _workPublic);
            fresh.CopyTo(secret);
            CryptographicOperations.ZeroMemory(fresh);
        }
        var ad = SealedFormat.AssociatedData(requestId, runtimeId);
        var (requestKey, replyKey) = SealedFormat.RequestKeys(secret, ad);
        var body = new byte[ciphertext.Length];
        try
        {
            using var gcm = new AesGcm(requestKey, SealedFormat.TagBytes);
            gcm.Decrypt(stackalloc byte[SealedFormat.NonceBytes], ciphertext, tag, body, ad);
        }
        catch (AuthenticationTagMismatchException)
        {
            CryptographicOperations.ZeroMemory(replyKey);
            CryptographicOperations.ZeroMemory(secret);
            throw new SealedMessageException("sealed request does not open (tampered, or for another request or runtime)");
        }
        finally
        {
            CryptographicOperations.ZeroMemory(requestKey);
        }
        if (!known)
        {
            Keep(key, secret);
        }
        CryptographicOperations.ZeroMemory(secret);
        reply = new SealedChunkSealer(replyKey, ad);
        return body;
    }

    private void Keep(string key, ReadOnlySpan<byte> secret)
    {
        if (_capacity == 0)
        {
            return;
        }
        lock (_gate)
        {
            if (_sessions.ContainsKey(key))
            {
                return;
            }
            while (_sessions.Count >= _capacity && _recent.Last is { } oldest)
            {
                _recent.RemoveLast();
                _sessions.Remove(oldest.Value.Key);
                CryptographicOperations.ZeroMemory(oldest.Value.Secret);
            }
            _sessions[key] = _recent.AddFirst((key, secret.ToArray()));
        }
    }

    /// <summary>Forgets every session secret (zeroed).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var (_, secret) in _recent)
            {
                CryptographicOperations.ZeroMemory(secret);
            }
            _recent.Clear();
            _sessions.Clear();
        }
    }
}
