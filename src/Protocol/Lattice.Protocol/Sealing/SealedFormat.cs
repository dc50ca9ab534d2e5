using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Lattice.Protocol.Sealing;

/// <summary>
/// Constants and shared steps of the sealed-dispatch format v2 (docs/sealed-dispatch.md): P-256 ECDH once per session,
/// HKDF-SHA256 per request, AES-256-GCM. Public keys travel as SEC1 uncompressed points (65 bytes: <c>0x04 || X || Y</c>).
/// </summary>
public static class SealedFormat
{
    /// <summary>
    /// The format's version, the first byte of every sealed request, chunk and associated data. v1 (one ECDH per request)
    /// is not accepted: its keys are derived differently.
    /// </summary>
    public const byte Version = 0x02;
    public const int PublicKeyBytes = 65;
    public const int KeyBytes = 32;
    public const int NonceBytes = 12;
    public const int TagBytes = 16;

    /// <summary>Sealed request: version, ephemeral public key, then ciphertext and tag.</summary>
    public const int RequestOverhead = 1 + PublicKeyBytes + TagBytes;

    /// <summary>Sealed chunk: version, flags, then ciphertext and tag.</summary>
    public const int ChunkOverhead = 2 + TagBytes;

    /// <summary>Chunk flag: the last chunk of the answer.</summary>
    public const byte FinalFlag = 0x01;

    internal static readonly byte[] RequestInfo = "lattice sealed v2 request"u8.ToArray();
    internal static readonly byte[] ReplyInfo = "lattice sealed v2 reply"u8.ToArray();

    /// <summary>
    /// Associated data binding a sealed message to one request on one runtime:
    /// <c>version || u16 BE len || request id (UTF-8) || u16 BE len || runtime id (UTF-8)</c>.
    /// </summary>
    public static byte[] AssociatedData(string requestId, string runtimeId)
    {
        var request = Encoding.UTF8.GetBytes(requestId);
        var runtime = Encoding.UTF8.GetBytes(runtimeId);
        if (request.Length > ushort.MaxValue || runtime.Length > ushort.MaxValue)
        {
            throw new ArgumentException("Request and runtime ids are at most 65535 bytes.");
        }
        var ad = new byte[1 + 2 + request.Length + 2 + runtime.Length];
        ad[0] = Version;
        BinaryPrimitives.WriteUInt16BigEndian(ad.AsSpan(1), (ushort)request.Length);
        request.CopyTo(ad, 3);
        BinaryPrimitives.WriteUInt16BigEndian(ad.AsSpan(3 + request.Length), (ushort)runtime.Length);
        runtime.CopyTo(ad, 5 + request.Length);
        return ad;
    }

    /// <summary>Chunk nonce: 3 zero bytes, u64 BE chunk counter, then 0x01 for the final chunk else 0x00.</summary>
    public static void ChunkNonce(ulong counter, bool final, Span<byte> nonce)
    {
        nonce[..3].Clear();
        BinaryPrimitives.WriteUInt64BigEndian(nonce[3..], counter);
        nonce[11] = final ? (byte)1 : (byte)0;
    }

    /// <summary>The SEC1 uncompressed encoding of a key's public point.</summary>
    public static byte[] PublicKeyOf(ECDiffieHellman key)
    {
        var q = key.ExportParameters(false).Q;
        var point = new byte[PublicKeyBytes];
        point[0] = 0x04;
        q.X!.CopyTo(point, 1);
        q.Y!.CopyTo(point, 33);
        return point;
    }

    /// <summary>Imports a SEC1 uncompressed P-256 point; throws <see cref="SealedMessageException"/> when it is not one.</summary>
    public static ECDiffieHellman ImportPublicKey(ReadOnlySpan<byte> point)
    {
        if (point.Length != PublicKeyBytes || point[0] != 0x04)
        {
            throw new SealedMessageException("not a SEC1 uncompressed P-256 public key");
        }
        try
        {
            return ECDiffieHellman.Create(new ECParameters
            {
                Curve = ECCurve.NamedCurves.nistP256,
                Q = new ECPoint { X = point[1..33].ToArray(), Y = point[33..].ToArray() },
            });
        }
        catch (CryptographicException)
        {
            throw new SealedMessageException("the public key is not a point on P-256");
        }
    }

    /// <summary>A fresh P-256 key pair.</summary>
    public static ECDiffieHellman NewKey() => ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);

    /// <summary>
    /// The secret of a session: HKDF-SHA256's extract step over the ECDH shared secret (the X coordinate), salt
    /// <c>ephemeral public || work public</c>. 32 bytes; <see cref="RequestKeys"/> expands it per request.
    /// </summary>
    internal static byte[] SessionSecret(ECDiffieHellman own, ECDiffieHellmanPublicKey peer, ReadOnlySpan<byte> ephemeralPublic, ReadOnlySpan<byte> workPublic) =>
        ExtractAgreement(own, peer, [], ephemeralPublic, workPublic);

    /// <summary>
    /// HKDF-SHA256's extract step over the ECDH shared secret of <paramref name="own"/> and <paramref name="peer"/> (the X
    /// coordinate, zeroed after), salt <c>label || first public || second public</c>: 32 bytes. The one place a sealed
    /// key is agreed — a session's secret (no label), a link's usage key (<see cref="UsageKey"/>, its own label).
    /// </summary>
    internal static byte[] ExtractAgreement(ECDiffieHellman own, ECDiffieHellmanPublicKey peer, ReadOnlySpan<byte> label,
        ReadOnlySpan<byte> firstPublic, ReadOnlySpan<byte> secondPublic)
    {
        var shared = own.DeriveRawSecretAgreement(peer);
        try
        {
            Span<byte> salt = stackalloc byte[label.Length + PublicKeyBytes * 2];
            label.CopyTo(salt);
            firstPublic.CopyTo(salt[label.Length..]);
            secondPublic.CopyTo(salt[(label.Length + PublicKeyBytes)..]);
            var secret = new byte[KeyBytes];
            HKDF.Extract(HashAlgorithmName.SHA256, shared, salt, secret);
            return secret;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(shared);
        }
    }

    /// <summary>
    /// Request and reply keys of one request in a session: HKDF-SHA256's expand step over the session secret, info
    /// <c>"lattice sealed v2 request" || ad</c> and <c>"lattice sealed v2 reply" || ad</c>, 32 bytes each. The associated
    /// data names the request, so every request id of a session has keys of its own.
    /// </summary>
    internal static (byte[] Request, byte[] Reply) RequestKeys(ReadOnlySpan<byte> sessionSecret, ReadOnlySpan<byte> associatedData)
    {
        var info = new byte[RequestInfo.Length + associatedData.Length];
        associatedData.CopyTo(info.AsSpan(RequestInfo.Length));
        RequestInfo.CopyTo(info, 0);
        var request = new byte[KeyBytes];
        HKDF.Expand(HashAlgorithmName.SHA256, sessionSecret, request, info);
        info = new byte[ReplyInfo.Length + associatedData.Length];
        associatedData.CopyTo(info.AsSpan(ReplyInfo.Length));
        ReplyInfo.CopyTo(info, 0);
        var reply = new byte[KeyBytes];
        HKDF.Expand(HashAlgorithmName.SHA256, sessionSecret, reply, info);
        return (request, reply);
    }

    /// <summary>Fingerprint of a public work key: the first 16 bytes of SHA-256(SEC1 point), hex, in groups of 4.</summary>
    public static string Fingerprint(ReadOnlySpan<byte> publicKey)
    {
        var hash = SHA256.HashData(publicKey);
        var hex = Convert.ToHexStringLower(hash.AsSpan(0, 16));
        return string.Join('-', Enumerable.Range(0, 8).Select(i => hex.Substring(i * 4, 4)));
    }
}

/// <summary>A sealed message could not be opened: tampered, for another request or runtime, reordered, cut short, or malformed.</summary>
public sealed class SealedMessageException(string message) : CryptographicException(message);
