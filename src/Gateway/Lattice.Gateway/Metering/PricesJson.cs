using System.Text.Json;
using System.Text.Json.Serialization;
using Lattice.Gateway.OpenAi;
using Lattice.Protocol;

namespace Lattice.Gateway.Metering;

/// <summary>
/// <see cref="Prices"/> at the edges: read from an admin request (checked, with an error naming the field), stored as
/// JSON in a column, and read back from it when a snapshot is built.
/// </summary>
public static class PricesJson
{
    /// <summary>
    /// The most a price may be, in USD per unit. Caps what one request can cost so that a cost always fits in pico-USD
    /// in a <see cref="long"/> for any realistic usage.
    /// </summary>
    public const decimal MaxPrice = 1_000_000m;

    /// <summary>Decimal places a price may have: micro-USD per unit, so a token's price is a whole number of pico-USD.</summary>
    public const int MaxDecimalPlaces = 6;

    private static readonly string[] Fields = ["input_per_mtok", "cached_input_per_mtok", "output_per_mtok", "audio_per_minute", "per_request"];

    /// <summary>
    /// Reads a <c>prices</c> object from an admin request. Every field is optional; a field that is present must be a
    /// number from 0 to <see cref="MaxPrice"/> with at most <see cref="MaxDecimalPlaces"/> decimals, or null.
    /// </summary>
    /// <param name="param">The parameter path for errors, e.g. <c>prices</c> or <c>offers[1].prices</c>.</param>
    public static bool TryRead(JsonElement element, string param, out Prices prices, out GatewayError error)
    {
        prices = Prices.Free;
        error = default;
        if (element.ValueKind != JsonValueKind.Object)
        {
            error = GatewayError.InvalidRequest($"'{param}' must be an object with any of: {string.Join(", ", Fields)}.", param, ErrorCodes.InvalidType);
            return false;
        }
        var read = new decimal?[Fields.Length];
        foreach (var property in element.EnumerateObject())
        {
            var index = Array.IndexOf(Fields, property.Name);
            var name = $"{param}.{property.Name}";
            if (index < 0)
            {
                error = GatewayError.InvalidRequest($"Unknown price '{property.Name}'; prices are {string.Join(", ", Fields)}.", name, ErrorCodes.UnknownParameter);
                return false;
            }
            if (property.Value.ValueKind == JsonValueKind.Null)
            {
                continue;
            }
            if (property.Value.ValueKind != JsonValueKind.Number || !property.Value.TryGetDecimal(out var value))
            {
                error = GatewayError.InvalidRequest($"'{name}' must be a number of USD.", name, ErrorCodes.InvalidType);
                return false;
            }
            if (value < 0 || value > MaxPrice)
            {
                error = GatewayError.InvalidRequest($"'{name}' must be between 0 and {MaxPrice} USD.", name);
                return false;
            }
            if (decimal.Round(value, MaxDecimalPlaces) != value)
            {
                error = GatewayError.InvalidRequest($"'{name}' may have at most {MaxDecimalPlaces} decimal places.", name);
                return false;
            }
            read[index] = Normalize(value);
        }
        prices = new Prices
        {
            InputPerMTok = read[0],
            CachedInputPerMTok = read[1],
            OutputPerMTok = read[2],
            AudioPerMinute = read[3],
            PerRequest = read[4],
        };
        return true;
    }

    /// <summary>The column value: null when nothing is priced, so "free" has one stored form.</summary>
    public static string? ToStored(Prices prices) =>
        IsFree(prices) ? null : JsonSerializer.Serialize(prices, PricesJsonContext.Default.Prices);

    /// <summary>
    /// <see cref="ToStored"/> for prices the catalog holds, serialized once per instance: what a usage record keeps of
    /// the prices it was charged at, without a serialization per request.
    /// </summary>
    public static string? Stored(Prices prices) =>
        StoredForms.GetValue(prices, static p => new StoredForm(ToStored(p))).Json;

    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Prices, StoredForm> StoredForms = new();

    private sealed record StoredForm(string? Json);

    /// <summary>Reads a column written by <see cref="ToStored"/>; null for a null column, false for text that is not prices.</summary>
    public static bool TryFromStored(string? json, out Prices? prices)
    {
        prices = null;
        if (string.IsNullOrWhiteSpace(json))
        {
            return true;
        }
        try
        {
            prices = JsonSerializer.Deserialize(json, PricesJsonContext.Default.Prices);
            return prices is not null && IsValid(prices);
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>True when no price is set.</summary>
    public static bool IsFree(Prices prices) =>
        prices.InputPerMTok is null && prices.CachedInputPerMTok is null && prices.OutputPerMTok is null && prices.AudioPerMinute is null && prices.PerRequest is null;

    private static bool IsValid(Prices p) =>
        Ok(p.InputPerMTok) && Ok(p.CachedInputPerMTok) && Ok(p.OutputPerMTok) && Ok(p.AudioPerMinute) && Ok(p.PerRequest);

    private static bool Ok(decimal? value) => value is null || (value >= 0 && value <= MaxPrice);

    /// <summary>Drops trailing zeros, so 1.50 is stored and shown as 1.5.</summary>
    private static decimal Normalize(decimal value) => value / 1.000000000000000000000000000000000m;
}

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(Prices))]
internal sealed partial class PricesJsonContext : JsonSerializerContext;
