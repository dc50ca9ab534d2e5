using System.Collections.Frozen;
using Lattice.Gateway.Metering;

namespace Lattice.Gateway.Catalog;

/// <summary>How a task's input travels.</summary>
public enum TaskContentKind
{
    Json,
    Multipart,
}

/// <summary>A task class as request code sees it: immutable, schema compiled.</summary>
public sealed record TaskClass(
    string Name,
    InputSchema Schema,
    bool Streams,
    TaskContentKind ContentKind,
    string UpstreamPath,
    string? UsagePath,
    bool BuiltIn,
    DateTimeOffset CreatedAt)
{
    public string ContentType => ContentKind == TaskContentKind.Json ? "application/json" : "multipart/form-data";

    /// <summary>What requests of this task are metered in: one of <see cref="MeteringUnits"/>.</summary>
    public string MeteringUnit { get; init; } = MeteringUnits.Tokens;
}

/// <summary>What an offer is (<c>ModelOfferEntity.Kind</c>).</summary>
public static class OfferKinds
{
    /// <summary>An OpenAI-compatible HTTP endpoint.</summary>
    public const string Upstream = "upstream";
    /// <summary>Anthropic's Messages API.</summary>
    public const string Anthropic = "anthropic";
    /// <summary>A hosted runtime daemon.</summary>
    public const string Runtime = "runtime";
}

/// <summary>One way to serve a model: an OpenAI-compatible or Anthropic upstream, or a hosted runtime (<see cref="RuntimeId"/>).</summary>
public sealed record UpstreamOffer(
    string Id,
    string? Task,
    Uri? BaseUrl,
    string? RuntimeId,
    string? CredentialName,
    string UpstreamModel,
    int Priority,
    TimeSpan? Timeout,
    bool Marketplace = false)
{
    public bool ServesTask(string task) => Task is null || Task == task;

    /// <summary>The effective price of a request this offer serves: the offer's own prices if it has any, else its model's.</summary>
    public Prices Prices { get; init; } = Prices.Free;

    /// <summary><see cref="OfferKinds"/>: which API the upstream speaks.</summary>
    public string Kind { get; init; } = OfferKinds.Upstream;
    /// <summary>An OpenAI upstream that serves <c>/v1/responses</c> itself: Responses requests reach it as the client sent them.</summary>
    public bool ServesResponses { get; init; }
}

/// <summary>A catalog model and its offers, in the order the router tries them.</summary>
public sealed record CatalogModel(string Id, string OwnedBy, DateTimeOffset CreatedAt, UpstreamOffer[] Offers)
{
    /// <summary>True when some offer is marketplace capacity (which private-only requests never reach).</summary>
    public bool HasMarketplaceOffers { get; } = Array.Exists(Offers, o => o.Marketplace);

    /// <summary>The model's own prices (<see cref="Prices.Free"/> when it has none). What a request costs is its offer's <see cref="UpstreamOffer.Prices"/>.</summary>
    public Prices Prices { get; init; } = Prices.Free;

    /// <summary>The most output tokens one answer can have, when the operator set it: what a budget reserves for a request without <c>max_tokens</c>.</summary>
    public int? MaxOutputTokens { get; init; }

    /// <summary>This model without its marketplace offers: what a private-only request may use.</summary>
    public CatalogModel PrivateOnly() => HasMarketplaceOffers
        ? new CatalogModel(Id, OwnedBy, CreatedAt, Array.FindAll(Offers, o => !o.Marketplace)) { Prices = Prices, MaxOutputTokens = MaxOutputTokens }
        : this;

    /// <summary>Offers that can serve <paramref name="task"/>, best first.</summary>
    public bool Serves(string task)
    {
        foreach (var o in Offers)
        {
            if (o.Task is null || o.Task == task)
            {
                return true;
            }
        }
        return false;
    }
}

/// <summary>
/// The whole catalog at one instant. Request code reads one snapshot and never locks; a reload builds a new one
/// and swaps it atomically.
/// </summary>
public sealed class CatalogSnapshot(FrozenDictionary<string, TaskClass> tasks, FrozenDictionary<string, CatalogModel> models)
{
    public static readonly CatalogSnapshot Empty = new(FrozenDictionary<string, TaskClass>.Empty, FrozenDictionary<string, CatalogModel>.Empty);

    public FrozenDictionary<string, TaskClass> Tasks { get; } = tasks;
    public FrozenDictionary<string, CatalogModel> Models { get; } = models;
}
