using System.Buffers.Binary;
using System.Security.Cryptography;
using Lattice.Protocol.Runtime;

namespace Lattice.Protocol.Sealing;

/// <summary>
/// The usage a daemon reports for a sealed dispatch, signed with its work key (ECDSA P-256, SHA-256, IEEE P1363
/// <c>r || s</c>, 64 bytes) — or, on a link that agreed one, tagged with the link's <see cref="UsageKey"/> — so the
/// gateway meters what it cannot read. The signed (or tagged) bytes are canonical:
/// <code>
/// "lattice sealed v3 usage" (23 bytes) || associated data (request id, runtime id)
///   || u64 BE prompt tokens || u64 BE completion tokens || u64 BE cached tokens || u64 BE audio milliseconds
///   || flags (1 byte: 0x01 estimated, 0x02 cancelled)
/// </code>
/// </summary>
public static class SealedUsage
{
    public const int SignatureBytes = 64;

    private static readonly byte[] Label = "lattice sealed v3 usage"u8.ToArray();

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
        var signature = signer.SignData(Canonical(end, requestId, runtimeId), HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
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

    /// <summary>
    /// The bytes of <paramref name="end"/>'s signature or tag (base64url in <see cref="DispatchEnd.Signature"/>) when it
    /// decodes to exactly <paramref name="length"/> of them; else null.
    /// </summary>
    internal static byte[]? Authentication(DispatchEnd end, int length)
    {
        if (end.Signature is not { Length: > 0 } text)
        {
            return null;
        }
        try
        {
            var bytes = System.Buffers.Text.Base64Url.DecodeFromChars(text);
            return bytes.Length == length ? bytes : null;
        }
        catch (FormatException)
        {
            return null;
        }
    }

    /// <summary>Whether <paramref name="end"/> carries a valid signature by <paramref name="verifier"/> (<see cref="Verifier"/>).</summary>
    public static bool Verify(DispatchEnd end, ECDsa verifier, string requestId, string runtimeId)
    {
        if (Authentication(end, SignatureBytes) is not { } signature)
        {
            return false;
        }
        try
        {
            return verifier.VerifyData(Canonical(end, requestId, runtimeId), signature, HashAlgorithmName.SHA256,
                DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        }
        catch (CryptographicException)
        {
            return false;
        }
    }
}

/// <summary>
/// A link's usage key (docs/sealed-dispatch.md, "The link's usage key"): agreed once per link between the gateway and
/// the daemon's work key, so that the daemon authenticates each sealed dispatch's usage with an HMAC-SHA256 tag rather
/// than an ECDSA signature — the same proof to the gateway (only the work key's holder, and the gateway that made the
/// link key, can derive it) for a hash instead of a public-key operation on each side of every request. The gateway
/// makes a fresh P-256 link key pair for the link, sends its public half in the welcome, and drops the private half
/// once the key is derived:
/// <code>
/// shared = ECDH(link private, work public) = ECDH(work private, link public)   # X coordinate, 32 bytes
/// prk    = HKDF-Extract-SHA256(salt = "lattice usage link key" || link public (65) || work public (65), shared)
/// key    = HKDF-Expand-SHA256(prk, info = "lattice sealed v3 usage key", 32 bytes)
/// tag    = HMAC-SHA256(key, SealedUsage.Canonical(end, request id, runtime id))      # 32 bytes, base64url
/// </code>
/// Thread-safe.
/// </summary>
public sealed class UsageKey : IDisposable
{
    public const int TagBytes = 32;

    private static readonly byte[] SaltLabel = "lattice usage link key"u8.ToArray();
    private static readonly byte[] Info = "lattice sealed v3 usage key"u8.ToArray();

    private readonly byte[] _key;

    private UsageKey(byte[] key) => _key = key;

    /// <summary>
    /// The gateway's side: a fresh link key pair, whose public half (SEC1) goes to the daemon in the welcome, and the
    /// key agreed with the work key <paramref name="workPublicKey"/> (SEC1). The link's private key is not kept.
    /// </summary>
    /// <exception cref="SealedMessageException"><paramref name="workPublicKey"/> is not a P-256 point.</exception>
    public static UsageKey ForGateway(ReadOnlySpan<byte> workPublicKey, out byte[] linkPublicKey)
    {
        using var link = SealedFormat.NewKey();
        return ForGateway(workPublicKey, link, out linkPublicKey);
    }

    /// <summary>The gateway's side with a given link key; only for test vectors (a link key must never be reused).</summary>
    public static UsageKey ForGateway(ReadOnlySpan<byte> workPublicKey, ECDiffieHellman link, out byte[] linkPublicKey)
    {
        linkPublicKey = SealedFormat.PublicKeyOf(link);
        using var work = SealedFormat.ImportPublicKey(workPublicKey);
        using var workPublic = work.PublicKey;
        return new UsageKey(Derive(link, workPublic, linkPublicKey, workPublicKey));
    }

    /// <summary>The daemon's side: the key its work key agrees with the link key the welcome carried (SEC1).</summary>
    /// <exception cref="SealedMessageException"><paramref name="linkPublicKey"/> is not a P-256 point.</exception>
    public static UsageKey ForDaemon(ECDiffieHellman workKey, ReadOnlySpan<byte> linkPublicKey)
    {
        using var link = SealedFormat.ImportPublicKey(linkPublicKey);
        using var linkPublic = link.PublicKey;
        return new UsageKey(Derive(workKey, linkPublic, linkPublicKey, SealedFormat.PublicKeyOf(workKey)));
    }

    private static byte[] Derive(ECDiffieHellman own, ECDiffieHellmanPublicKey peer, ReadOnlySpan<byte> linkPublic, ReadOnlySpan<byte> workPublic)
    {
        // The label keeps this apart from every session secret, whose salt is two public keys alone: a link key chosen
        // equal to some app's ephemeral key still gives another key.
        var prk = SealedFormat.ExtractAgreement(own, peer, SaltLabel, linkPublic, workPublic);
        try
        {
            var key = new byte[SealedFormat.KeyBytes];
            HKDF.Expand(HashAlgorithmName.SHA256, prk, key, Info);
            return key;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(prk);
        }
    }

    /// <summary><paramref name="end"/> with its tag (base64url, in <see cref="DispatchEnd.Signature"/>).</summary>
    public DispatchEnd Tag(DispatchEnd end, string requestId, string runtimeId)
    {
        Span<byte> tag = stackalloc byte[TagBytes];
        HMACSHA256.HashData(_key, SealedUsage.Canonical(end, requestId, runtimeId), tag);
        return end with { Signature = WorkKey.Base64Url(tag) };
    }

    /// <summary>Whether <paramref name="end"/> carries this key's tag for its counts, request and runtime.</summary>
    public bool Verify(DispatchEnd end, string requestId, string runtimeId)
    {
        if (SealedUsage.Authentication(end, TagBytes) is not { } tag)
        {
            return false;
        }
        Span<byte> expected = stackalloc byte[TagBytes];
        HMACSHA256.HashData(_key, SealedUsage.Canonical(end, requestId, runtimeId), expected);
        return CryptographicOperations.FixedTimeEquals(expected, tag);
    }

    /// <summary>Forgets the key (zeroed): tags made after this do not verify.</summary>
    public void Dispose() => CryptographicOperations.ZeroMemory(_key);
}
