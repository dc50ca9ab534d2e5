using System.Security.Cryptography;

namespace Lattice.Protocol.Sealing;

/// <summary>
/// A session's two AES-256-GCM keys (<see cref="SealedFormat.SessionKeys"/>), each set up once — a key schedule and an
/// OpenSSL context — and used for every request of the session and every chunk of its answers, which is what makes a
/// sealed call's own cryptography a few AES-GCM operations and nothing more. Both sides hold one: the app's
/// <see cref="SealingSession"/> and the daemon's <see cref="SealedRequestOpener"/>, per session.
/// </summary>
/// <remarks>
/// An <see cref="AesGcm"/> is one OpenSSL context, not safe for two threads at once, so each key is used under its own
/// lock (an operation on a chunk takes about a microsecond). Counted references: the owner (a session, the daemon's list
/// of sessions) holds one, and every opener or sealer of an answer in flight holds one, so the contexts are freed — and
/// the keys in them cleansed — when the last of them lets go, never under an answer still being sealed or opened.
/// </remarks>
internal sealed class SessionCiphers
{
    private int _references = 1;

    /// <summary>The ciphers of the session whose secret is <paramref name="sessionSecret"/>, with one reference (the caller's).</summary>
    public SessionCiphers(ReadOnlySpan<byte> sessionSecret)
    {
        var (request, reply) = SealedFormat.SessionKeys(sessionSecret);
        try
        {
            Request = new SessionKey(request);
            Reply = new SessionKey(reply);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(request);
            CryptographicOperations.ZeroMemory(reply);
        }
    }

    /// <summary>Seals the app's requests.</summary>
    public SessionKey Request { get; }

    /// <summary>Seals the daemon's answers.</summary>
    public SessionKey Reply { get; }

    /// <summary>Takes one more reference; false once the last one was released (the ciphers are gone).</summary>
    public bool TryAcquire()
    {
        var seen = Volatile.Read(ref _references);
        while (seen > 0)
        {
            var before = Interlocked.CompareExchange(ref _references, seen + 1, seen);
            if (before == seen)
            {
                return true;
            }
            seen = before;
        }
        return false;
    }

    /// <summary>Lets go of one reference; the last one frees both contexts.</summary>
    public void Release()
    {
        if (Interlocked.Decrement(ref _references) == 0)
        {
            Request.Dispose();
            Reply.Dispose();
        }
    }
}

/// <summary>One of a session's keys: an AES-256-GCM context, used under its own lock.</summary>
internal sealed class SessionKey(byte[] key) : IDisposable
{
    private readonly AesGcm _gcm = new(key, SealedFormat.TagBytes);
    private readonly Lock _gate = new();

    public void Seal(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext, Span<byte> tag, ReadOnlySpan<byte> ad)
    {
        lock (_gate)
        {
            _gcm.Encrypt(nonce, plaintext, ciphertext, tag, ad);
        }
    }

    /// <exception cref="AuthenticationTagMismatchException">It does not open.</exception>
    public void Open(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext, ReadOnlySpan<byte> ad)
    {
        lock (_gate)
        {
            _gcm.Decrypt(nonce, ciphertext, tag, plaintext, ad);
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _gcm.Dispose();
        }
    }
}
