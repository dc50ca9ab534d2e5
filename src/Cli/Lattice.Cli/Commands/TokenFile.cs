using System.Buffers.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Lattice.Protocol;

namespace Lattice.Cli.Commands;

/// <summary>What <c>lattice login</c> keeps in <c>&lt;data-dir&gt;/oauth-token.json</c>.</summary>
internal sealed record StoredToken(
    string Gateway,
    string ClientId,
    string TokenType,
    string AccessToken,
    string? RefreshToken,
    long? ExpiresAt,
    string? Scope,
    string? Subject,
    string? Email,
    string? WorkspaceId);

/// <summary>The public claims of a JWT access token: who it is for. Read for display only, never trusted.</summary>
internal sealed record TokenClaims(string? Subject, string? Email, string? WorkspaceId, long? ExpiresAt)
{
    /// <summary>Reads the payload of a JWS compact token; the claims are not secret (the token itself is).</summary>
    public static TokenClaims Read(string jwt)
    {
        var parts = jwt.Split('.');
        if (parts.Length != 3)
        {
            return new TokenClaims(null, null, null, null);
        }
        try
        {
            using var doc = JsonDocument.Parse(Base64Url.DecodeFromChars(parts[1]));
            var root = doc.RootElement;
            string? Str(string name) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
            long? exp = root.TryGetProperty("exp", out var e) && e.TryGetInt64(out var n) ? n : null;
            return new TokenClaims(Str("sub"), Str("email"), Str("lattice_ws"), exp);
        }
        catch (Exception ex) when (ex is FormatException or JsonException)
        {
            return new TokenClaims(null, null, null, null);
        }
    }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(StoredToken))]
internal sealed partial class TokenFileJsonContext : JsonSerializerContext;

/// <summary><c>&lt;data-dir&gt;/oauth-token.json</c>: the CLI's OAuth tokens. Readable by its owner only.</summary>
internal static class TokenFile
{
    public static string PathIn(string dataDirectory) => Path.Combine(dataDirectory, "oauth-token.json");

    public static StoredToken? Read(string dataDirectory)
    {
        var path = PathIn(dataDirectory);
        if (!File.Exists(path))
        {
            return null;
        }
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(path), TokenFileJsonContext.Default.StoredToken);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    public static void Write(string dataDirectory, StoredToken token)
    {
        OwnerOnlyFile.Write(PathIn(dataDirectory), stream => JsonSerializer.Serialize(stream, token, TokenFileJsonContext.Default.StoredToken));
    }

    public static void Delete(string dataDirectory) => File.Delete(PathIn(dataDirectory));
}
