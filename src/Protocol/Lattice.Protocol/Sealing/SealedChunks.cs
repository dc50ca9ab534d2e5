using System.Security.Cryptography;

namespace Lattice.Protocol.Sealing;

/// <summary>
/// Daemon side of a sealed answer: seals each chunk with the reply key. Wire format of a chunk:
/// <c>version (0x02) || flags (0x01 = final) || ciphertext || tag (16)</c>; the nonce is <see cref="SealedFormat.ChunkNonce"/>
/// of the chunk's index (0, 1, 2, …, never sent) and its final flag, so a reordered, replayed, dropped or re-flagged
/// chunk does not open.
/// </summary>
public sealed class SealedChunkSealer : IDisposable
{
    private readonly AesGcm _gcm;
    private readonly byte[] _ad;
    private ulong _counter;
    private bool _finished;

    internal SealedChunkSealer(byte[] key, byte[] associatedData)
    {
        _gcm = new AesGcm(key, SealedFormat.TagBytes);
        CryptographicOperations.ZeroMemory(key);
        _ad = associatedData;
    }

    /// <summary>Whether the final chunk has been sealed: nothing more may be.</summary>
    public bool Finished => _finished;

    /// <summary>Seals the next chunk; <paramref name="final"/> marks the last one, after which no more may be sealed.</summary>
    public byte[] Seal(ReadOnlySpan<byte> plaintext, bool final = false)
    {
        ObjectDisposedException.ThrowIf(_finished, this);
        var chunk = new byte[SealedFormat.ChunkOverhead + plaintext.Length];
        chunk[0] = SealedFormat.Version;
        chunk[1] = final ? SealedFormat.FinalFlag : (byte)0;
        Span<byte> nonce = stackalloc byte[SealedFormat.NonceBytes];
        SealedFormat.ChunkNonce(_counter++, final, nonce);
        _gcm.Encrypt(nonce, plaintext, chunk.AsSpan(2, plaintext.Length), chunk.AsSpan(chunk.Length - SealedFormat.TagBytes), _ad);
        _finished = final;
        return chunk;
    }

    public void Dispose() => _gcm.Dispose();
}

/// <summary>
/// Client side of a sealed answer: opens chunks in order. <see cref="Complete"/> is true once the final chunk opened;
/// an answer that ends without it was cut short (<see cref="EnsureComplete"/>).
/// </summary>
public sealed class SealedChunkOpener : IDisposable
{
    private readonly AesGcm _gcm;
    private readonly byte[] _ad;
    private ulong _counter;

    internal SealedChunkOpener(byte[] key, byte[] associatedData)
    {
        _gcm = new AesGcm(key, SealedFormat.TagBytes);
        CryptographicOperations.ZeroMemory(key);
        _ad = associatedData;
    }

    public bool Complete { get; private set; }

    /// <summary>Opens the next chunk; throws <see cref="SealedMessageException"/> when it does not open.</summary>
    public byte[] Open(ReadOnlySpan<byte> chunk)
    {
        if (Complete)
        {
            throw new SealedMessageException("a chunk came after the final chunk");
        }
        if (chunk.Length < SealedFormat.ChunkOverhead || chunk[0] != SealedFormat.Version || (chunk[1] & ~SealedFormat.FinalFlag) != 0)
        {
            throw new SealedMessageException("malformed sealed chunk");
        }
        var final = chunk[1] == SealedFormat.FinalFlag;
        Span<byte> nonce = stackalloc byte[SealedFormat.NonceBytes];
        SealedFormat.ChunkNonce(_counter, final, nonce);
        var plaintext = new byte[chunk.Length - SealedFormat.ChunkOverhead];
        try
        {
            _gcm.Decrypt(nonce, chunk[2..^SealedFormat.TagBytes], chunk[^SealedFormat.TagBytes..], plaintext, _ad);
        }
        catch (AuthenticationTagMismatchException)
        {
            throw new SealedMessageException("sealed chunk does not open (tampered, reordered, replayed or dropped)");
        }
        _counter++;
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

    public void Dispose() => _gcm.Dispose();
}
