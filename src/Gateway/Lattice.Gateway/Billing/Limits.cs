using System.Text.Json;
using System.Text.Json.Serialization;
using Lattice.Gateway.OpenAi;
using Lattice.Protocol;

namespace Lattice.Gateway.Billing;

/// <summary>
/// Rate limits on a key, an OAuth app (each of its users separately) or a workspace: requests per minute, tokens per
/// minute (input estimated at admission plus <c>max_tokens</c>, settled to the actual count) and requests in flight.
/// A missing limit is no limit.
/// </summary>
public sealed record Limits
{
    [JsonPropertyName("requests_per_minute")] public int? RequestsPerMinute { get; init; }
    [JsonPropertyName("tokens_per_minute")] public long? TokensPerMinute { get; init; }
    [JsonPropertyName("max_concurrent")] public int? MaxConcurrent { get; init; }

    [JsonIgnore]
    public bool IsEmpty => RequestsPerMinute is null && TokensPerMinute is null && MaxConcurrent is null;
}

/// <summary><see cref="Limits"/> at the edges: read from an admin request with an error naming the field, stored as JSON.</summary>
public static class LimitsJson
{
    private static readonly string[] Fields = ["requests_per_minute", "tokens_per_minute", "max_concurrent"];

    /// <summary>The largest value any limit may have.</summary>
    public const long MaxValue = 1_000_000_000_000;

    /// <summary>
    /// Reads a <c>limits</c> object: each field optional, a positive integer or null. <c>{}</c> (or JSON null) is no
    /// limits at all, returned as null.
    /// </summary>
    public static bool TryRead(JsonElement element, string param, out Limits? limits, out GatewayError error)
    {
        limits = null;
        error = default;
        if (element.ValueKind == JsonValueKind.Null)
        {
            return true;
        }
        if (element.ValueKind != JsonValueKind.Object)
        {
            error = GatewayError.InvalidRequest($"'{param}' must be an object with any of: {string.Join(", ", Fields)}.", param, ErrorCodes.InvalidType);
            return false;
        }
        var read = new long?[Fields.Length];
        foreach (var property in element.EnumerateObject())
        {
            var index = Array.IndexOf(Fields, property.Name);
            var name = $"{param}.{property.Name}";
            if (index < 0)
            {
                error = GatewayError.InvalidRequest($"Unknown limit '{property.Name}'; limits are {string.Join(", ", Fields)}.", name, ErrorCodes.UnknownParameter);
                return false;
            }
            if (property.Value.ValueKind == JsonValueKind.Null)
            {
                continue;
            }
            var max = index == 1 ? MaxValue : int.MaxValue;
            if (property.Value.ValueKind != JsonValueKind.Number || !property.Value.TryGetInt64(out var value) || value < 1 || value > max)
            {
                error = GatewayError.InvalidRequest($"'{name}' must be a whole number from 1 to {max}, or null for no limit.", name, ErrorCodes.InvalidValue);
                return false;
            }
            read[index] = value;
        }
        var result = new Limits
        {
            RequestsPerMinute = (int?)read[0],
            TokensPerMinute = read[1],
            MaxConcurrent = (int?)read[2],
        };
        limits = result.IsEmpty ? null : result;
        return true;
    }

    /// <summary>The column value: null when there are no limits.</summary>
    public static string? ToStored(Limits? limits) =>
        limits is null || limits.IsEmpty ? null : JsonSerializer.Serialize(limits, LimitsJsonContext.Default.Limits);

    /// <summary>Reads a column written by <see cref="ToStored"/>; null for none or for text that does not read.</summary>
    public static Limits? FromStored(string? json)
    {
        if (string.IsNullOrWhiteSpace(json))
        {
            return null;
        }
        try
        {
            var limits = JsonSerializer.Deserialize(json, LimitsJsonContext.Default.Limits);
            return limits is null || limits.IsEmpty ? null : limits;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(Limits))]
internal sealed partial class LimitsJsonContext : JsonSerializerContext;
