using System.Security.Cryptography;

namespace Lattice.Protocol.Sealing;

/// <summary>
/// Daemon side of a sealed answer: seals each chunk with the session's reply key. Wire format of a chunk:
/// <c>version (0x03) || flags (0x01 = final) || [answer salt (8), first chunk only] || ciphertext || tag (16)</c>; the
/// nonce is <see cref="SealedFormat.ChunkNonce"/> of the answer's salt, the chunk's index (0, 1, 2, …, never sent) and
/// its final flag, so a reordered, replayed, dropped or re-flagged chunk does not open. The salt is drawn at random for
/// each answer, so two answers never share a nonce — not even two answers to one request the gateway sent twice.
/// </summary>
public sealed class SealedChunkSealer : IDisposable
{
    private readonly SessionCiphers _ciphers;
    private readonly byte[] _ad;
    private readonly byte[] _salt;
    private int _index;
    private bool _finished;
    private int _disposed;

    /// <param name="ciphers">A reference this sealer owns (released by <see cref="Dispose"/>).</param>
    /// <param name="salt">The answer's salt; null draws a fresh one (anything else is for test vectors only).</param>
    internal SealedChunkSealer(SessionCiphers ciphers, byte[] associatedData, ReadOnlySpan<byte> salt = default)
    {
        _ciphers = ciphers;
        _ad = associatedData;
        _salt = new byte[SealedFormat.AnswerSaltBytes];
        if (salt.IsEmpty)
        {
            RandomNumberGenerator.Fill(_salt);
        }
        else
        {
            salt[..SealedFormat.AnswerSaltBytes].CopyTo(_salt);
        }
    }

    /// <summary>Whether the final chunk has been sealed: nothing more may be.</summary>
    public bool Finished => _finished;

    /// <summary>Seals the next chunk; <paramref name="final"/> marks the last one, after which no more may be sealed.</summary>
    public byte[] Seal(ReadOnlySpan<byte> plaintext, bool final = false)
    {
        ObjectDisposedException.ThrowIf(_finished || _disposed != 0, this);
        var first = _index == 0;
        var head = first ? 2 + SealedFormat.AnswerSaltBytes : 2;
        var chunk = new byte[head + plaintext.Length + SealedFormat.TagBytes];
        chunk[0] = SealedFormat.Version;
        chunk[1] = final ? SealedFormat.FinalFlag : (byte)0;
        if (first)
        {
            _salt.CopyTo(chunk, 2);
        }
        Span<byte> nonce = stackalloc byte[SealedFormat.NonceBytes];
        SealedFormat.ChunkNonce(_salt, _index, final, nonce);
        _ciphers.Reply.Seal(nonce, plaintext, chunk.AsSpan(head, plaintext.Length), chunk.AsSpan(chunk.Length - SealedFormat.TagBytes), _ad);
        _index++;
        _finished = final;
        return chunk;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _ciphers.Release();
        }
    }
}

/// <summary>
/// Client side of a sealed answer: opens chunks in order, the answer's salt taken from its first chunk.
/// <see cref="Complete"/> is true once the final chunk opened; an answer that ends without it was cut short
/// (<see cref="EnsureComplete"/>).
/// </summary>
public sealed class SealedChunkOpener : IDisposable
{
    private readonly SessionCiphers _ciphers;
    private readonly byte[] _ad;
    private readonly byte[] _salt = new byte[SealedFormat.AnswerSaltBytes];
    private int _index;
    private int _disposed;

    /// <param name="ciphers">A reference this opener owns (released by <see cref="Dispose"/>).</param>
    internal SealedChunkOpener(SessionCiphers ciphers, byte[] associatedData)
    {
        _ciphers = ciphers;
        _ad = associatedData;
    }

    public bool Complete { get; private set; }

    /// <summary>Opens the next chunk; throws <see cref="SealedMessageException"/> when it does not open.</summary>
    public byte[] Open(ReadOnlySpan<byte> chunk)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (Complete)
        {
            throw new SealedMessageException("a chunk came after the final chunk");
        }
        var first = _index == 0;
        var head = first ? 2 + SealedFormat.AnswerSaltBytes : 2;
        if (chunk.Length < head + SealedFormat.TagBytes || chunk[0] != SealedFormat.Version || (chunk[1] & ~SealedFormat.FinalFlag) != 0)
        {
            throw new SealedMessageException("malformed sealed chunk");
        }
        if (_index >= SealedFormat.MaxChunks)
        {
            throw new SealedMessageException("a sealed answer has at most 2^24 chunks");
        }
        if (first)
        {
            chunk.Slice(2, SealedFormat.AnswerSaltBytes).CopyTo(_salt);
        }
        var final = chunk[1] == SealedFormat.FinalFlag;
        Span<byte> nonce = stackalloc byte[SealedFormat.NonceBytes];
        SealedFormat.ChunkNonce(_salt, _index, final, nonce);
        var plaintext = new byte[chunk.Length - head - SealedFormat.TagBytes];
        try
        {
            _ciphers.Reply.Open(nonce, chunk[head..^SealedFormat.TagBytes], chunk[^SealedFormat.TagBytes..], plaintext, _ad);
        }
        catch (AuthenticationTagMismatchException)
        {
            throw new SealedMessageException("sealed chunk does not open (tampered, reordered, replayed or dropped)");
        }
        _index++;
        Complete = final;
        return plaintext;
    }

    /// <summary>Throws unless the final chunk has been opened: the answer was cut short.</summary>
    public void EnsureComplete()
    {
        if (!Complete)
        {
            throw new SealedMessageException("the sealed answer ended without its final chunk");
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _ciphers.Release();
        }
    }
}
