using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lattice.Gateway.Metering;

/// <summary>
/// Prices in USD, as decimals: per million input, cached input and output tokens, per audio minute and per request.
/// Stored as JSON on catalog models, offers (an offer's price wins) and workspaces (their personal runtimes).
/// A missing price is zero.
/// </summary>
public sealed record Prices
{
    [JsonPropertyName("input_per_mtok")] public decimal? InputPerMTok { get; init; }
    [JsonPropertyName("cached_input_per_mtok")] public decimal? CachedInputPerMTok { get; init; }
    [JsonPropertyName("output_per_mtok")] public decimal? OutputPerMTok { get; init; }
    [JsonPropertyName("audio_per_minute")] public decimal? AudioPerMinute { get; init; }
    [JsonPropertyName("per_request")] public decimal? PerRequest { get; init; }

    public static readonly Prices Free = new();
}
