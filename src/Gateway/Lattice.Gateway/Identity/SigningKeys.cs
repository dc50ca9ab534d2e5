using System.Security.Cryptography;
using Lattice.Protocol;
using Microsoft.IdentityModel.Tokens;

namespace Lattice.Gateway.Identity;

/// <summary>
/// The authorization server's RSA keys: one signs access tokens (published in the JWKS), one encrypts the tokens only
/// the server reads (authorization codes, refresh tokens, device codes). Created on first start and kept in
/// <c>&lt;DataDirectory&gt;/oauth/</c> (mode 0600), so tokens survive restarts.
/// </summary>
public sealed class SigningKeys
{
    public SigningKeys(string dataDirectory)
    {
        var dir = Path.Combine(dataDirectory, "oauth");
        Directory.CreateDirectory(dir);
        Signing = LoadOrCreate(Path.Combine(dir, "signing-key.pem"));
        Encryption = LoadOrCreate(Path.Combine(dir, "encryption-key.pem"));
    }

    public RsaSecurityKey Signing { get; }
    public RsaSecurityKey Encryption { get; }

    private static RsaSecurityKey LoadOrCreate(string path)
    {
        var rsa = RSA.Create();
        if (File.Exists(path))
        {
            rsa.ImportFromPem(File.ReadAllText(path));
        }
        else
        {
            rsa.KeySize = 2048;
            var pem = rsa.ExportRSAPrivateKeyPem();
            try
            {
                OwnerOnlyFile.Write(path, stream =>
                {
                    using var writer = new StreamWriter(stream);
                    writer.Write(pem);
                }, overwrite: false);
            }
            catch (IOException) when (File.Exists(path))
            {
                // Another node on the same data directory created it first: everyone uses that one.
                rsa.ImportFromPem(File.ReadAllText(path));
            }
        }
        var modulus = rsa.ExportParameters(false).Modulus!;
        return new RsaSecurityKey(rsa) { KeyId = Base64UrlEncoder.Encode(SHA256.HashData(modulus)[..12]) };
    }
}
