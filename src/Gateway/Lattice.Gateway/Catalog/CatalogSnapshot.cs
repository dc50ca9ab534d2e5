using System.Collections.Frozen;

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
}

/// <summary>One way to serve a model: an OpenAI-compatible upstream, or a hosted runtime (<see cref="RuntimeId"/>).</summary>
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
}

/// <summary>A catalog model and its offers, in the order the router tries them.</summary>
public sealed record CatalogModel(string Id, string OwnedBy, DateTimeOffset CreatedAt, UpstreamOffer[] Offers)
{
    /// <summary>True when some offer is marketplace capacity (which private-only requests never reach).</summary>
    public bool HasMarketplaceOffers { get; } = Array.Exists(Offers, o => o.Marketplace);

    /// <summary>This model without its marketplace offers: what a private-only request may use.</summary>
    public CatalogModel PrivateOnly() => HasMarketplaceOffers ? new CatalogModel(Id, OwnedBy, CreatedAt, Array.FindAll(Offers, o => !o.Marketplace)) : this;

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
