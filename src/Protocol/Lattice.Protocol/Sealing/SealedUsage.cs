using System.Buffers.Binary;
using System.Security.Cryptography;
using Lattice.Protocol.Runtime;

namespace Lattice.Protocol.Sealing;

/// <summary>
/// The usage a daemon reports for a sealed dispatch, signed with its work key (ECDSA P-256, SHA-256, IEEE P1363
/// <c>r || s</c>, 64 bytes) so the gateway meters what it cannot read. The signed bytes are canonical:
/// <code>
/// "lattice sealed v2 usage" (23 bytes) || associated data (request id, runtime id)
///   || u64 BE prompt tokens || u64 BE completion tokens || u64 BE cached tokens || u64 BE audio milliseconds
///   || flags (1 byte: 0x01 estimated, 0x02 cancelled)
/// </code>
/// </summary>
public static class SealedUsage
{
    public const int SignatureBytes = 64;

    private static readonly byte[] Label = "lattice sealed v2 usage"u8.ToArray();

    /// <summary>The bytes a usage signature covers.</summary>
    public static byte[] Canonical(DispatchEnd end, string requestId, string runtimeId)
    {
        var ad = SealedFormat.AssociatedData(requestId, runtimeId);
        var bytes = new byte[Label.Length + ad.Length + 4 * 8 + 1];
        var span = bytes.AsSpan();
        Label.CopyTo(span);
        span = span[Label.Length..];
        ad.CopyTo(span);
        span = span[ad.Length..];
        BinaryPrimitives.WriteUInt64BigEndian(span, (ulong)Math.Max(0, end.PromptTokens));
        BinaryPrimitives.WriteUInt64BigEndian(span[8..], (ulong)Math.Max(0, end.CompletionTokens));
        BinaryPrimitives.WriteUInt64BigEndian(span[16..], (ulong)Math.Max(0, end.CachedTokens));
        BinaryPrimitives.WriteUInt64BigEndian(span[24..], (ulong)Math.Max(0, AudioMilliseconds(end.AudioSeconds)));
        span[32] = (byte)((end.Estimated ? 0x01 : 0) | (end.Cancelled ? 0x02 : 0));
        return bytes;
    }

    /// <summary>Audio seconds as the milliseconds metering records (rounded half to even).</summary>
    public static long AudioMilliseconds(double seconds) =>
        double.IsFinite(seconds) && seconds > 0 ? (long)Math.Round(seconds * 1000, MidpointRounding.ToEven) : 0;

    /// <summary><paramref name="end"/> with its signature (base64url) by <paramref name="workKey"/> (imported for this one signature).</summary>
    public static DispatchEnd Sign(DispatchEnd end, ECDiffieHellman workKey, string requestId, string runtimeId)
    {
        using var ecdsa = ECDsa.Create(workKey.ExportParameters(includePrivateParameters: true));
        return Sign(end, ecdsa, requestId, runtimeId);
    }

    /// <summary><paramref name="end"/> with its signature (base64url) by <paramref name="signer"/>, the work key as an ECDSA key.</summary>
    public static DispatchEnd Sign(DispatchEnd end, ECDsa signer, string requestId, string runtimeId)
    {
        var signature = signer.SignData(Canonical(end with { Signature = null }, requestId, runtimeId), HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        return end with { Signature = WorkKey.Base64Url(signature) };
    }

    /// <summary>Whether <paramref name="end"/> carries a valid signature by the work key <paramref name="workPublicKey"/> (SEC1).</summary>
    public static bool Verify(DispatchEnd end, ReadOnlySpan<byte> workPublicKey, string requestId, string runtimeId)
    {
        using var verifier = Verifier(workPublicKey);
        return verifier is not null && Verify(end, verifier, requestId, runtimeId);
    }

    /// <summary>
    /// The work key <paramref name="workPublicKey"/> (SEC1) imported once as an ECDSA key, to verify many reports with
    /// <see cref="Verify(DispatchEnd, ECDsa, string, string)"/>; null when it is not a P-256 point.
    /// </summary>
    public static ECDsa? Verifier(ReadOnlySpan<byte> workPublicKey)
    {
        if (workPublicKey.Length != SealedFormat.PublicKeyBytes || workPublicKey[0] != 0x04)
        {
            return null;
        }
        try
        {
            return ECDsa.Create(new ECParameters
            {
                Curve = ECCurve.NamedCurves.nistP256,
                Q = new ECPoint { X = workPublicKey[1..33].ToArray(), Y = workPublicKey[33..].ToArray() },
            });
        }
        catch (CryptographicException)
        {
            return null;
        }
    }

    /// <summary>Whether <paramref name="end"/> carries a valid signature by <paramref name="verifier"/> (<see cref="Verifier"/>).</summary>
    public static bool Verify(DispatchEnd end, ECDsa verifier, string requestId, string runtimeId)
    {
        if (end.Signature is not { Length: > 0 } text)
        {
            return false;
        }
        byte[] signature;
        try
        {
            signature = System.Buffers.Text.Base64Url.DecodeFromChars(text);
        }
        catch (FormatException)
        {
            return false;
        }
        if (signature.Length != SignatureBytes)
        {
            return false;
        }
        try
        {
            return verifier.VerifyData(Canonical(end with { Signature = null }, requestId, runtimeId), signature, HashAlgorithmName.SHA256,
                DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        }
        catch (CryptographicException)
        {
            return false;
        }
    }
}
