using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Serialization;
using Lattice.Protocol;
using Lattice.Protocol.Runtime;

namespace Lattice.Runtime.Connection;

/// <summary>What pairing gave this machine: which gateway, who it is there, and its long-lived credential.</summary>
public sealed record RuntimeCredentials(string Gateway, string LatticeId, string Credential)
{
    public const string FileName = "runtime.json";

    public static string PathIn(string dataDirectory) => System.IO.Path.Combine(dataDirectory, FileName);

    public static RuntimeCredentials? Load(string dataDirectory)
    {
        var path = PathIn(dataDirectory);
        if (!File.Exists(path))
        {
            return null;
        }
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(path), CredentialsJsonContext.Default.RuntimeCredentials);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Writes the file readable by its owner only (0600), atomically.</summary>
    public void Save(string dataDirectory)
    {
        OwnerOnlyFile.Write(PathIn(dataDirectory), stream => JsonSerializer.Serialize(stream, this, CredentialsJsonContext.Default.RuntimeCredentials));
    }

    /// <summary>Exchanges a one-time bootstrap token for a runtime credential.</summary>
    public static async Task<RuntimeCredentials> PairAsync(Uri gateway, string bootstrapToken, CancellationToken cancellationToken)
    {
        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(30) };
        var origin = new Uri(gateway.GetLeftPart(UriPartial.Authority));
        using var response = await http.PostAsJsonAsync(new Uri(origin, RuntimeLink.PairPath), new PairBody(bootstrapToken), CredentialsJsonContext.Default.PairBody, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            string? message = null;
            try
            {
                message = JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("message").GetString();
            }
            catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
            {
            }
            throw new PairingException($"The gateway refused the bootstrap token ({(int)response.StatusCode}): {message ?? text}");
        }
        var paired = JsonSerializer.Deserialize(text, CredentialsJsonContext.Default.PairAnswer)
            ?? throw new PairingException("The gateway's answer to pairing was empty.");
        return new RuntimeCredentials(origin.ToString().TrimEnd('/'), paired.LatticeId, paired.RuntimeCredential);
    }

    internal sealed record PairBody(string BootstrapToken);

    internal sealed record PairAnswer(string LatticeId, string RuntimeCredential);
}

/// <summary>Pairing failed; the message says why in words for the user.</summary>
public sealed class PairingException(string message) : Exception(message);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(RuntimeCredentials))]
[JsonSerializable(typeof(RuntimeCredentials.PairBody))]
[JsonSerializable(typeof(RuntimeCredentials.PairAnswer))]
internal sealed partial class CredentialsJsonContext : JsonSerializerContext;
