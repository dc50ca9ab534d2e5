using System.Security.Cryptography;

namespace Lattice.Protocol.Sealing;

/// <summary>
/// Seals a request body to a runtime's public work key and opens it on the daemon. Wire format:
/// <c>0x01 || ephemeral public key (65) || AES-256-GCM ciphertext || tag (16)</c>, nonce all zero (each request key is
/// used once: it comes from a fresh ephemeral key), associated data <see cref="SealedFormat.AssociatedData"/>.
/// </summary>
public static class SealedRequest
{
    /// <summary>
    /// Seals <paramref name="body"/> with a fresh ephemeral key; <paramref name="reply"/> opens the answer's chunks.
    /// </summary>
    public static byte[] Seal(ReadOnlySpan<byte> body, ReadOnlySpan<byte> runtimePublicKey, string requestId, string runtimeId, out SealedChunkOpener reply)
    {
        using var ephemeral = SealedFormat.NewKey();
        return Seal(body, runtimePublicKey, requestId, runtimeId, ephemeral, out reply);
    }

    /// <summary>Seals with a given ephemeral key; only for test vectors (an ephemeral key must never be reused).</summary>
    public static byte[] Seal(ReadOnlySpan<byte> body, ReadOnlySpan<byte> runtimePublicKey, string requestId, string runtimeId, ECDiffieHellman ephemeral, out SealedChunkOpener reply)
    {
        using var work = SealedFormat.ImportPublicKey(runtimePublicKey);
        var ephemeralPublic = SealedFormat.PublicKeyOf(ephemeral);
        var (requestKey, replyKey) = SealedFormat.DeriveKeys(ephemeral, work, ephemeralPublic, runtimePublicKey.ToArray());
        var ad = SealedFormat.AssociatedData(requestId, runtimeId);
        var sealedBody = new byte[SealedFormat.RequestOverhead + body.Length];
        sealedBody[0] = SealedFormat.Version;
        ephemeralPublic.CopyTo(sealedBody, 1);
        using (var gcm = new AesGcm(requestKey, SealedFormat.TagBytes))
        {
            var ciphertext = sealedBody.AsSpan(1 + SealedFormat.PublicKeyBytes, body.Length);
            gcm.Encrypt(stackalloc byte[SealedFormat.NonceBytes], body, ciphertext, sealedBody.AsSpan(sealedBody.Length - SealedFormat.TagBytes), ad);
        }
        CryptographicOperations.ZeroMemory(requestKey);
        reply = new SealedChunkOpener(replyKey, ad);
        return sealedBody;
    }

    /// <summary>
    /// Opens a sealed request with the runtime's private work key; <paramref name="reply"/> seals the answer's chunks
    /// to the client. Throws <see cref="SealedMessageException"/> when it does not open.
    /// </summary>
    public static byte[] Open(ReadOnlySpan<byte> sealedBody, ECDiffieHellman workKey, string requestId, string runtimeId, out SealedChunkSealer reply)
    {
        if (sealedBody.Length < SealedFormat.RequestOverhead)
        {
            throw new SealedMessageException("sealed request too short");
        }
        if (sealedBody[0] != SealedFormat.Version)
        {
            throw new SealedMessageException("unknown sealed format version");
        }
        var ephemeralPublic = sealedBody.Slice(1, SealedFormat.PublicKeyBytes).ToArray();
        using var ephemeral = SealedFormat.ImportPublicKey(ephemeralPublic);
        var (requestKey, replyKey) = SealedFormat.DeriveKeys(workKey, ephemeral, ephemeralPublic, SealedFormat.PublicKeyOf(workKey));
        var ad = SealedFormat.AssociatedData(requestId, runtimeId);
        var ciphertext = sealedBody[(1 + SealedFormat.PublicKeyBytes)..^SealedFormat.TagBytes];
        var body = new byte[ciphertext.Length];
        try
        {
            using var gcm = new AesGcm(requestKey, SealedFormat.TagBytes);
            gcm.Decrypt(stackalloc byte[SealedFormat.NonceBytes], ciphertext, sealedBody[^SealedFormat.TagBytes..], body, ad);
        }
        catch (AuthenticationTagMismatchException)
        {
            CryptographicOperations.ZeroMemory(replyKey);
            throw new SealedMessageException("sealed request does not open (tampered, or for another request or runtime)");
        }
        finally
        {
            CryptographicOperations.ZeroMemory(requestKey);
        }
        reply = new SealedChunkSealer(replyKey, ad);
        return body;
    }
}
