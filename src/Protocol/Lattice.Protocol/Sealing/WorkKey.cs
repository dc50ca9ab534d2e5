using System.Security.Cryptography;

namespace Lattice.Protocol.Sealing;

/// <summary>
/// A daemon's P-256 work key. The private key lives in an owner-only (0600) PKCS#8 PEM file in the data directory;
/// the public key (SEC1 uncompressed, base64url without padding in JSON) is published in the runtime's record.
/// </summary>
public sealed class WorkKey : IDisposable
{
    public const string FileName = "work-key.pem";

    private readonly Lock _signing = new();
    private ECDsa? _signer;

    private WorkKey(ECDiffieHellman key)
    {
        Key = key;
        PublicKey = SealedFormat.PublicKeyOf(key);
        Opener = new SealedRequestOpener(key);
    }

    public ECDiffieHellman Key { get; }

    /// <summary>Opens the sealed requests sent to this key, keeping each session's secret (<see cref="SealedRequestOpener"/>).</summary>
    public SealedRequestOpener Opener { get; }

    /// <summary>
    /// <paramref name="end"/> signed with this key (<see cref="SealedUsage"/>); the key is imported for signing once,
    /// and signatures are made one at a time.
    /// </summary>
    public Runtime.DispatchEnd Sign(Runtime.DispatchEnd end, string requestId, string runtimeId)
    {
        lock (_signing)
        {
            _signer ??= ECDsa.Create(Key.ExportParameters(includePrivateParameters: true));
            return SealedUsage.Sign(end, _signer, requestId, runtimeId);
        }
    }

    /// <summary>SEC1 uncompressed public point (65 bytes).</summary>
    public byte[] PublicKey { get; }

    /// <summary>The public key as sent in the hello and stored as <c>publicWorkKey</c>: base64url, no padding.</summary>
    public string PublicKeyText => Base64Url(PublicKey);

    public string Fingerprint => SealedFormat.Fingerprint(PublicKey);

    public static string PathIn(string dataDirectory) => Path.Combine(dataDirectory, FileName);

    /// <summary>Loads the key from <paramref name="dataDirectory"/>, generating and saving it (0600) the first time.</summary>
    public static WorkKey LoadOrCreate(string dataDirectory)
    {
        if (Load(dataDirectory) is { } existing)
        {
            return existing;
        }
        var fresh = SealedFormat.NewKey();
        var pem = fresh.ExportPkcs8PrivateKeyPem();
        OwnerOnlyFile.Write(PathIn(dataDirectory), stream =>
        {
            using var writer = new StreamWriter(stream);
            writer.Write(pem);
        }, overwrite: false);
        return new WorkKey(fresh);
    }

    /// <summary>Loads the key from <paramref name="dataDirectory"/>, or null when there is none yet.</summary>
    public static WorkKey? Load(string dataDirectory)
    {
        var path = PathIn(dataDirectory);
        if (File.Exists(path))
        {
            var key = ECDiffieHellman.Create();
            key.ImportFromPem(File.ReadAllText(path));
            if (key.KeySize != 256)
            {
                key.Dispose();
                throw new CryptographicException($"{path} does not hold a P-256 key.");
            }
            return new WorkKey(key);
        }
        return null;
    }

    /// <summary>
    /// Decodes a published key text (base64url SEC1) and checks it is a point on P-256; null when it is not.
    /// </summary>
    public static byte[]? ParsePublic(string? publicKeyText)
    {
        if (publicKeyText is null)
        {
            return null;
        }
        try
        {
            var bytes = System.Buffers.Text.Base64Url.DecodeFromChars(publicKeyText);
            using var _ = SealedFormat.ImportPublicKey(bytes);
            return bytes;
        }
        catch (Exception ex) when (ex is FormatException or SealedMessageException)
        {
            return null;
        }
    }

    /// <summary>Fingerprint of a published key text (base64url SEC1), or null when it is not one.</summary>
    public static string? FingerprintOf(string? publicKeyText) => ParsePublic(publicKeyText) is { } bytes ? SealedFormat.Fingerprint(bytes) : null;

    public static string Base64Url(ReadOnlySpan<byte> bytes) => System.Buffers.Text.Base64Url.EncodeToString(bytes);

    public void Dispose()
    {
        Opener.Dispose();
        lock (_signing)
        {
            _signer?.Dispose();
        }
        Key.Dispose();
    }
}
