using System.Text.Json.Serialization;
using Lattice.Gateway.Metering;

namespace Lattice.Gateway.Billing.Invoices;

/// <summary>Invoice statuses.</summary>
public static class InvoiceStatuses
{
    /// <summary>The month is open, or closed less than the grace period ago: computed from the ledger on every read.</summary>
    public const string Draft = "draft";

    /// <summary>Written once to the <c>invoices</c> table and served from there, unchanged, forever.</summary>
    public const string Final = "final";
}

/// <summary>What one line counts. <see cref="InputTokens"/> includes <see cref="CachedInputTokens"/>, as OpenAI's usage does.</summary>
/// <param name="AudioSeconds">Audio in seconds, to the millisecond.</param>
public sealed record InvoiceQuantitiesDto(long Requests, long InputTokens, long CachedInputTokens, long OutputTokens, decimal AudioSeconds);

/// <summary>
/// The requests of one model and task charged at one set of prices. <see cref="AmountUsd"/> is the sum of those
/// records' costs as the ledger holds them (each rounded once, to the pico-dollar, when it was written), never
/// quantities × prices recomputed.
/// </summary>
public sealed record InvoiceLineDto(string Model, string Task, InvoiceQuantitiesDto Quantities, Prices? UnitPrices, string AmountUsd);

public sealed record InvoiceDto(
    string Id,
    string WorkspaceId,
    long PeriodStart,
    long PeriodEnd,
    string Status,
    IReadOnlyList<InvoiceLineDto> Lines,
    string SubtotalUsd,
    string TotalUsd,
    long? FinalizedAt)
{
    [JsonPropertyOrder(-1)]
    public string Object => "invoice";

    public string Currency => "usd";
}

public sealed record InvoiceListDto(IReadOnlyList<InvoiceDto> Data)
{
    [JsonPropertyOrder(-1)]
    public string Object => "list";

    public bool HasMore => false;
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(InvoiceDto))]
[JsonSerializable(typeof(InvoiceListDto))]
[JsonSerializable(typeof(List<InvoiceLineDto>))]
internal sealed partial class InvoiceJsonContext : JsonSerializerContext;
