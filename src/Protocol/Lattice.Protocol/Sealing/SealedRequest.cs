using System.Security.Cryptography;

namespace Lattice.Protocol.Sealing;

/// <summary>
/// Seals a request body to a runtime's public work key and opens it on the daemon, one request at a time: a session of
/// one request (<see cref="SealingSession"/>, <see cref="SealedRequestOpener"/> hold sessions across requests). Wire
/// format: <c>0x03 || ephemeral public key (65) || nonce (12) || AES-256-GCM ciphertext || tag (16)</c>, under the
/// session's request key, associated data <see cref="SealedFormat.AssociatedData"/>.
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

    /// <summary>Opens with a given answer salt; only for test vectors (a salt must never be reused across answers).</summary>
    public static byte[] Open(ReadOnlySpan<byte> sealedBody, ECDiffieHellman workKey, string requestId, string runtimeId, ReadOnlySpan<byte> answerSalt,
        out SealedChunkSealer reply)
    {
        if (answerSalt.Length != SealedFormat.AnswerSaltBytes)
        {
            throw new ArgumentException($"An answer's salt is {SealedFormat.AnswerSaltBytes} bytes.", nameof(answerSalt));
        }
        return new SealedRequestOpener(workKey, capacity: 0).Open(sealedBody, requestId, runtimeId, answerSalt, out reply);
    }

    /// <summary>Throws unless <paramref name="sealedBody"/> can be a v3 sealed request (version and length).</summary>
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
/// The app's side of a session with one runtime: a fresh ephemeral P-256 key pair, the ECDH with the runtime's work key
/// and the session's two keys, made once by <see cref="Create(ReadOnlySpan{byte})"/> (ahead of the calls, off their
/// path); each <see cref="Seal"/> then only encrypts (AES-GCM, its nonce the request's number in the session). Every
/// request of a session needs a request id of its own: a session refuses one it has sealed before. Thread-safe.
/// </summary>
public sealed class SealingSession : IDisposable
{
    private readonly SessionCiphers _ciphers;
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);
    private ulong _next;
    private bool _disposed;

    private SealingSession(SessionCiphers ciphers, byte[] ephemeralPublic)
    {
        _ciphers = ciphers;
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
        var secret = SealedFormat.SessionSecret(ephemeral, workPublic, ephemeralPublic, runtimePublicKey);
        try
        {
            return new SealingSession(new SessionCiphers(secret), ephemeralPublic);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(secret);
        }
    }

    /// <summary>
    /// Seals <paramref name="body"/> for request <paramref name="requestId"/> on runtime <paramref name="runtimeId"/>;
    /// <paramref name="reply"/> opens the answer's chunks (dispose it when done). No public-key operation and no key
    /// derivation: one AES-GCM encryption.
    /// </summary>
    /// <exception cref="InvalidOperationException">This session already sealed a request with this id.</exception>
    public byte[] Seal(ReadOnlySpan<byte> body, string requestId, string runtimeId, out SealedChunkOpener reply)
    {
        var ad = SealedFormat.AssociatedData(requestId, runtimeId);
        ulong number;
        lock (_used)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_used.Add(requestId))
            {
                throw new InvalidOperationException("A sealing session seals each request id once.");
            }
            number = _next++;
            // The reply's opener holds the ciphers until it is disposed; the session's own reference stays until Dispose.
            _ciphers.TryAcquire();
        }
        try
        {
            var sealedBody = new byte[SealedFormat.RequestOverhead + body.Length];
            sealedBody[0] = SealedFormat.Version;
            EphemeralPublicKey.CopyTo(sealedBody, 1);
            var nonce = sealedBody.AsSpan(1 + SealedFormat.PublicKeyBytes, SealedFormat.NonceBytes);
            SealedFormat.RequestNonce(number, nonce);
            var ciphertext = sealedBody.AsSpan(1 + SealedFormat.PublicKeyBytes + SealedFormat.NonceBytes, body.Length);
            _ciphers.Request.Seal(nonce, body, ciphertext, sealedBody.AsSpan(sealedBody.Length - SealedFormat.TagBytes), ad);
            reply = new SealedChunkOpener(_ciphers, ad);
            return sealedBody;
        }
        catch
        {
            _ciphers.Release();
            throw;
        }
    }

    /// <summary>Ends the session: nothing more can be sealed in it; its keys are freed (cleansed) once the openers of answers still being read are disposed.</summary>
    public void Dispose()
    {
        lock (_used)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
        }
        _ciphers.Release();
    }
}

/// <summary>
/// The daemon's side: opens sealed requests with the work key, keeping the keys of each session that sealed a request
/// which opened (keyed by its ephemeral public key; the <c>capacity</c> most recently used), so a session's later
/// requests need no ECDH and no key derivation. A session enters only once a request sealed in it opened: made up keys
/// fill nothing. Thread-safe; the work key is not owned.
/// </summary>
public sealed class SealedRequestOpener : IDisposable
{
    /// <summary>Sessions kept by default.</summary>
    public const int DefaultCapacity = 1024;

    private readonly ECDiffieHellman _workKey;
    private readonly byte[] _workPublic;
    private readonly int _capacity;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, LinkedListNode<(string Key, SessionCiphers Ciphers)>> _sessions = new(StringComparer.Ordinal);

    /// <summary>Base64 characters of an ephemeral public key, a session's name.</summary>
    private const int SessionKeyChars = (SealedFormat.PublicKeyBytes + 2) / 3 * 4;
    private readonly LinkedList<(string Key, SessionCiphers Ciphers)> _recent = new();

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
    /// Opens a sealed request; <paramref name="reply"/> seals the answer's chunks to the client (dispose it when done).
    /// Throws <see cref="SealedMessageException"/> when it does not open (another key, request or runtime, altered, not v3).
    /// </summary>
    public byte[] Open(ReadOnlySpan<byte> sealedBody, string requestId, string runtimeId, out SealedChunkSealer reply) =>
        Open(sealedBody, requestId, runtimeId, default, out reply);

    internal byte[] Open(ReadOnlySpan<byte> sealedBody, string requestId, string runtimeId, ReadOnlySpan<byte> answerSalt, out SealedChunkSealer reply)
    {
        SealedRequest.CheckLayout(sealedBody);
        var ephemeralPublic = sealedBody.Slice(1, SealedFormat.PublicKeyBytes);
        var nonce = sealedBody.Slice(1 + SealedFormat.PublicKeyBytes, SealedFormat.NonceBytes);
        var ciphertext = sealedBody[(1 + SealedFormat.PublicKeyBytes + SealedFormat.NonceBytes)..^SealedFormat.TagBytes];
        var tag = sealedBody[^SealedFormat.TagBytes..];
        // The session's name is the ephemeral key in base64, looked up as characters on the stack: a string is made
        // only for a session seen the first time.
        Span<char> key = stackalloc char[SessionKeyChars];
        Convert.TryToBase64Chars(ephemeralPublic, key, out _);
        SessionCiphers? ciphers = null;
        lock (_gate)
        {
            if (_sessions.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(key, out var node))
            {
                _recent.Remove(node);
                _recent.AddFirst(node);
                // The list's reference keeps it alive while the lock is held: this one is the answer's.
                ciphers = node.Value.Ciphers;
                ciphers.TryAcquire();
            }
        }
        var known = ciphers is not null;
        if (ciphers is null)
        {
            using var ephemeral = SealedFormat.ImportPublicKey(ephemeralPublic);
            using var peer = ephemeral.PublicKey;
            var secret = SealedFormat.SessionSecret(_workKey, peer, ephemeralPublic, _workPublic);
            try
            {
                ciphers = new SessionCiphers(secret);
            }
            finally
            {
                CryptographicOperations.ZeroMemory(secret);
            }
        }
        var ad = SealedFormat.AssociatedData(requestId, runtimeId);
        var body = new byte[ciphertext.Length];
        try
        {
            ciphers.Request.Open(nonce, ciphertext, tag, body, ad);
        }
        catch (AuthenticationTagMismatchException)
        {
            ciphers.Release();
            throw new SealedMessageException("sealed request does not open (tampered, or for another request or runtime)");
        }
        if (!known)
        {
            Keep(new string(key), ciphers);
        }
        reply = new SealedChunkSealer(ciphers, ad, answerSalt);
        return body;
    }

    private void Keep(string key, SessionCiphers ciphers)
    {
        if (_capacity == 0)
        {
            return;
        }
        lock (_gate)
        {
            if (_sessions.ContainsKey(key) || !ciphers.TryAcquire())
            {
                return;
            }
            while (_sessions.Count >= _capacity && _recent.Last is { } oldest)
            {
                _recent.RemoveLast();
                _sessions.Remove(oldest.Value.Key);
                oldest.Value.Ciphers.Release();
            }
            _sessions[key] = _recent.AddFirst((key, ciphers));
        }
    }

    /// <summary>Forgets every session (their keys freed and cleansed once no answer is being sealed with them).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var (_, ciphers) in _recent)
            {
                ciphers.Release();
            }
            _recent.Clear();
            _sessions.Clear();
        }
    }
}
