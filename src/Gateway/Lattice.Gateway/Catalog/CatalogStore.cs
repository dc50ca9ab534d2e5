using System.Collections.Frozen;
using Lattice.Gateway.Changes;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Catalog;

/// <summary>
/// The catalog's writes (models with their offers, task classes), and the current <see cref="CatalogSnapshot"/>,
/// rebuilt from the database whenever a catalog change is applied — this node's at once, other nodes' from the
/// change feed.
/// </summary>
/// <remarks>
/// A change is applied by rebuilding the whole snapshot (one read of two small, operator-written tables), once per
/// batch of changes however many it holds: simpler than patching a frozen snapshot, and as cheap at catalog sizes.
/// </remarks>
public sealed partial class CatalogStore(IServiceScopeFactory scopes, ChangeFeed feed, ILogger<CatalogStore> logger) : IChangeHandler
{
    private volatile CatalogSnapshot _current = CatalogSnapshot.Empty;
    private readonly SemaphoreSlim _reloadGate = new(1, 1);

    public CatalogSnapshot Current => _current;

    public IReadOnlyCollection<string> Kinds { get; } = [ChangeKinds.Model, ChangeKinds.TaskClass];

    public Task ApplyAsync(IReadOnlyList<ChangeEntity> changes, CancellationToken cancellationToken) => ReloadAsync(cancellationToken);

    // ---- writes ----

    /// <summary>Stores a new task class and publishes it.</summary>
    public Task AddTaskClassAsync(TaskClassEntity row, CancellationToken cancellationToken = default) => feed.WriteAsync(db =>
    {
        db.TaskClasses.Add(row);
        feed.Record(db, ChangeKinds.TaskClass, row.Name);
        return Task.FromResult(row);
    }, cancellationToken);

    /// <summary>Deletes a task class; false when there is none.</summary>
    public Task<bool> DeleteTaskClassAsync(string name, CancellationToken cancellationToken = default) => feed.WriteAsync(async db =>
    {
        if (await db.TaskClasses.FindAsync([name], cancellationToken) is not { } row)
        {
            return false;
        }
        db.TaskClasses.Remove(row);
        feed.Record(db, ChangeKinds.TaskClass, name);
        return true;
    }, cancellationToken);

    /// <summary>Stores a new model with its offers and publishes it.</summary>
    public Task AddModelAsync(CatalogModelEntity row, CancellationToken cancellationToken = default) => feed.WriteAsync(db =>
    {
        db.Models.Add(row);
        feed.Record(db, ChangeKinds.Model, row.Id);
        return Task.FromResult(row);
    }, cancellationToken);

    /// <summary>
    /// Replaces a model's offers with <paramref name="offers"/> and applies <paramref name="change"/> to the rest; the
    /// model as it now stands, or null when there is none.
    /// </summary>
    public Task<CatalogModelEntity?> ReplaceModelAsync(string id, List<ModelOfferEntity> offers, Action<CatalogModelEntity> change,
        CancellationToken cancellationToken = default) => feed.WriteAsync(async db =>
    {
        var row = await db.Models.Include(m => m.Offers).FirstOrDefaultAsync(m => m.Id == id, cancellationToken);
        if (row is null)
        {
            return null;
        }
        db.ModelOffers.RemoveRange(row.Offers);
        row.Offers = offers;
        change(row);
        feed.Record(db, ChangeKinds.Model, id);
        return row;
    }, cancellationToken);

    /// <summary>Deletes a model (and its offers); false when there is none.</summary>
    public Task<bool> DeleteModelAsync(string id, CancellationToken cancellationToken = default) => feed.WriteAsync(async db =>
    {
        if (await db.Models.FindAsync([id], cancellationToken) is not { } row)
        {
            return false;
        }
        db.Models.Remove(row);
        feed.Record(db, ChangeKinds.Model, id);
        return true;
    }, cancellationToken);

    // ---- the snapshot ----

    /// <summary>Rebuilds the snapshot. A task class whose schema no longer compiles is left out and logged; the rest stays served.</summary>
    public async Task ReloadAsync(CancellationToken cancellationToken = default)
    {
        await _reloadGate.WaitAsync(cancellationToken);
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
            var taskRows = await db.TaskClasses.AsNoTracking().ToListAsync(cancellationToken);
            var modelRows = await db.Models.AsNoTracking().Include(m => m.Offers).ToListAsync(cancellationToken);

            var tasks = new Dictionary<string, TaskClass>(StringComparer.Ordinal);
            foreach (var row in taskRows)
            {
                var schema = InputSchema.TryCreate(row.InputSchema, out var error);
                if (schema is null)
                {
                    LogBadSchema(logger, row.Name, error ?? "");
                    continue;
                }
                tasks[row.Name] = new TaskClass(
                    row.Name, schema, row.Streams,
                    row.ContentType.StartsWith("multipart/", StringComparison.OrdinalIgnoreCase) ? TaskContentKind.Multipart : TaskContentKind.Json,
                    row.UpstreamPath, row.UsagePath, row.BuiltIn, row.CreatedAt)
                {
                    MeteringUnit = row.MeteringUnit,
                };
            }

            var models = new Dictionary<string, CatalogModel>(StringComparer.Ordinal);
            foreach (var row in modelRows)
            {
                // Prices are parsed once here, never per request. A model whose stored prices do not read is left
                // out rather than served free.
                if (!Metering.PricesJson.TryFromStored(row.Prices, out var modelPrices) || !TryReadOfferPrices(row, out var offerPrices))
                {
                    LogBadPrices(logger, row.Id);
                    continue;
                }
                var prices = modelPrices ?? Metering.Prices.Free;
                var offers = row.Offers
                    .OrderBy(o => o.Priority).ThenBy(o => o.Id, StringComparer.Ordinal)
                    .Select(o => new UpstreamOffer(
                        o.Id, o.Task,
                        o.RuntimeId is null ? new Uri(o.BaseUrl.EndsWith('/') ? o.BaseUrl : o.BaseUrl + "/") : null,
                        o.RuntimeId, o.CredentialName, o.UpstreamModel, o.Priority,
                        o.TimeoutSeconds is { } s ? TimeSpan.FromSeconds(s) : null,
                        o.Capacity == "marketplace")
                    {
                        Prices = offerPrices.GetValueOrDefault(o.Id) ?? prices,
                        Kind = o.Kind,
                        ServesResponses = o.ServesResponses,
                    })
                    .ToArray();
                models[row.Id] = new CatalogModel(row.Id, row.OwnedBy, row.CreatedAt, offers) { Prices = prices, MaxOutputTokens = row.MaxOutputTokens };
            }

            _current = new CatalogSnapshot(tasks.ToFrozenDictionary(StringComparer.Ordinal), models.ToFrozenDictionary(StringComparer.Ordinal));
        }
        finally
        {
            _reloadGate.Release();
        }
    }

    private static bool TryReadOfferPrices(CatalogModelEntity row, out Dictionary<string, Metering.Prices?> prices)
    {
        prices = new Dictionary<string, Metering.Prices?>(StringComparer.Ordinal);
        foreach (var offer in row.Offers)
        {
            if (!Metering.PricesJson.TryFromStored(offer.Prices, out var read))
            {
                return false;
            }
            prices[offer.Id] = read;
        }
        return true;
    }

    [LoggerMessage(EventId = 2002, Level = LogLevel.Warning, Message = "Model {ModelId} has stored prices that do not read and is not served")]
    private static partial void LogBadPrices(ILogger logger, string modelId);

    [LoggerMessage(EventId = 2001, Level = LogLevel.Warning, Message = "Task class {TaskName} has a schema that does not compile and is not served: {Reason}")]
    private static partial void LogBadSchema(ILogger logger, string taskName, string reason);
}
