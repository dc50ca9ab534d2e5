using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Lattice.Protocol.Sealing;

/// <summary>
/// Constants and shared steps of the sealed-dispatch format v3 (docs/sealed-dispatch.md): P-256 ECDH and HKDF-SHA256
/// once per session, AES-256-GCM per request under the session's keys. Public keys travel as SEC1 uncompressed points (65 bytes: <c>0x04 || X || Y</c>).
/// </summary>
public static class SealedFormat
{
    /// <summary>
    /// The format's version, the first byte of every sealed request, chunk and associated data. v1 (one ECDH per request)
    /// and v2 (keys expanded per request) are not accepted: their keys are derived differently.
    /// </summary>
    public const byte Version = 0x03;
    public const int PublicKeyBytes = 65;
    public const int KeyBytes = 32;
    public const int NonceBytes = 12;
    public const int TagBytes = 16;

    /// <summary>The daemon's random salt for one answer, sent in its first chunk: the first 8 bytes of every chunk's nonce.</summary>
    public const int AnswerSaltBytes = 8;

    /// <summary>Chunks one answer may have: the chunk index takes 3 bytes of the nonce.</summary>
    public const int MaxChunks = 1 << 24;

    /// <summary>Sealed request: version, ephemeral public key, nonce, then ciphertext and tag.</summary>
    public const int RequestOverhead = 1 + PublicKeyBytes + NonceBytes + TagBytes;

    /// <summary>Sealed chunk after the first: version, flags, then ciphertext and tag.</summary>
    public const int ChunkOverhead = 2 + TagBytes;

    /// <summary>An answer's first chunk: version, flags, the answer's salt, then ciphertext and tag.</summary>
    public const int FirstChunkOverhead = ChunkOverhead + AnswerSaltBytes;

    /// <summary>Chunk flag: the last chunk of the answer.</summary>
    public const byte FinalFlag = 0x01;

    internal static readonly byte[] RequestInfo = "lattice sealed v3 request"u8.ToArray();
    internal static readonly byte[] ReplyInfo = "lattice sealed v3 reply"u8.ToArray();

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

    /// <summary>A request's nonce: 4 zero bytes, then the u64 BE number of the request in its session (0, 1, 2, …).</summary>
    public static void RequestNonce(ulong number, Span<byte> nonce)
    {
        nonce[..4].Clear();
        BinaryPrimitives.WriteUInt64BigEndian(nonce[4..], number);
    }

    /// <summary>
    /// A chunk's nonce: the answer's salt (8 bytes), the u24 BE chunk index, then 0x01 for the final chunk else 0x00.
    /// </summary>
    public static void ChunkNonce(ReadOnlySpan<byte> salt, int index, bool final, Span<byte> nonce)
    {
        if ((uint)index >= MaxChunks)
        {
            throw new ArgumentOutOfRangeException(nameof(index), "An answer has at most 2^24 chunks.");
        }
        salt[..AnswerSaltBytes].CopyTo(nonce);
        nonce[8] = (byte)(index >> 16);
        nonce[9] = (byte)(index >> 8);
        nonce[10] = (byte)index;
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
    /// <c>ephemeral public || work public</c>. 32 bytes; <see cref="SessionKeys"/> expands it into the session's keys.
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
    /// The request and reply keys of a session: HKDF-SHA256's expand step over the session secret, info
    /// <c>"lattice sealed v3 request"</c> and <c>"lattice sealed v3 reply"</c>, 32 bytes each — once per session, on
    /// each side; requests and answers are told apart by their nonces and associated data.
    /// </summary>
    internal static (byte[] Request, byte[] Reply) SessionKeys(ReadOnlySpan<byte> sessionSecret)
    {
        var request = new byte[KeyBytes];
        HKDF.Expand(HashAlgorithmName.SHA256, sessionSecret, request, RequestInfo);
        var reply = new byte[KeyBytes];
        HKDF.Expand(HashAlgorithmName.SHA256, sessionSecret, reply, ReplyInfo);
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
