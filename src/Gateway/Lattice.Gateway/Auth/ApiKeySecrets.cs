using System.Security.Cryptography;
using System.Text;

namespace Lattice.Gateway.Auth;

/// <summary>Makes and hashes developer key secrets. Secrets are 256-bit random, so a plain SHA-256 is a sound at-rest hash.</summary>
public static class ApiKeySecrets
{
    public const string Prefix = "sk_";
    private const string Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    /// <summary>A new secret: <c>sk_</c> followed by 43 base62 characters (~256 bits).</summary>
    public static string NewSecret(string prefix = Prefix) => prefix + RandomNumberGenerator.GetString(Alphabet, 43);

    /// <summary>A new opaque id such as <c>key_…</c> or <c>ws_…</c>.</summary>
    public static string NewId(string prefix) => prefix + RandomNumberGenerator.GetString(Alphabet, 20);

    /// <summary>Lowercase hex SHA-256 of the secret, as stored.</summary>
    public static string Hash(string secret)
    {
        Span<char> hex = stackalloc char[64];
        return HashInto(secret, hex) ? new string(hex) : throw new ArgumentException("Secret too long.", nameof(secret));
    }

    /// <summary>Hashes into <paramref name="hex"/> (64 chars) without allocating; false when the secret is unreasonably long.</summary>
    public static bool HashInto(ReadOnlySpan<char> secret, Span<char> hex)
    {
        if (secret.Length > 512)
        {
            return false;
        }
        Span<byte> utf8 = stackalloc byte[secret.Length * 3];
        var n = Encoding.UTF8.GetBytes(secret, utf8);
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(utf8[..n], digest);
        return Convert.TryToHexStringLower(digest, hex, out _);
    }

    /// <summary>What a listing shows of a secret: enough to recognise it, never enough to use it.</summary>
    public static string DisplayPrefix(string secret) => secret.Length <= 11 ? secret : secret[..11];
}
