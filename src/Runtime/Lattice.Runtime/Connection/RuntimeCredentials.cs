using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Serialization;
using Lattice.Protocol;
using Lattice.Protocol.Runtime;

namespace Lattice.Runtime.Connection;

/// <summary>What pairing gave this machine: which gateway, who it is there, and its long-lived credential.</summary>
/// <param name="Gateway">The gateway origin pairing went through.</param>
/// <param name="Gateways">
/// Every gateway origin given at pairing, when there were several (nodes of one deployment); null when only
/// <paramref name="Gateway"/> was. The credential is valid on each, since they share one database.
/// </param>
public sealed record RuntimeCredentials(string Gateway, string LatticeId, string Credential, IReadOnlyList<string>? Gateways = null)
{
    public const string FileName = "runtime.json";

    /// <summary>The gateway origins to connect to, in order: <see cref="Gateways"/>, else <see cref="Gateway"/>.</summary>
    [JsonIgnore]
    public IReadOnlyList<string> Endpoints => Gateways is { Count: > 0 } gateways ? gateways : [Gateway];

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

    /// <summary>
    /// Exchanges a one-time bootstrap token for a runtime credential at the first of <paramref name="gateways"/> that
    /// can be reached (a node that refuses the token ends it: the others share its database), and keeps them all.
    /// </summary>
    public static async Task<RuntimeCredentials> PairAsync(IReadOnlyList<Uri> gateways, string bootstrapToken, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfZero(gateways.Count);
        for (var i = 0; ; i++)
        {
            try
            {
                var paired = await PairAsync(gateways[i], bootstrapToken, cancellationToken);
                return gateways.Count == 1 ? paired : paired with { Gateways = [.. gateways.Select(g => g.GetLeftPart(UriPartial.Authority))] };
            }
            catch (HttpRequestException) when (i < gateways.Count - 1)
            {
                // Not reachable: the next node may be.
            }
        }
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
