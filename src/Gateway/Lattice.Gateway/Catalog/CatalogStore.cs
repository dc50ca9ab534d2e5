using System.Collections.Frozen;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Catalog;

/// <summary>Holds the current <see cref="CatalogSnapshot"/> and rebuilds it from the database after a catalog write.</summary>
public sealed partial class CatalogStore(IServiceScopeFactory scopes, ILogger<CatalogStore> logger)
{
    private volatile CatalogSnapshot _current = CatalogSnapshot.Empty;
    private readonly SemaphoreSlim _reloadGate = new(1, 1);

    public CatalogSnapshot Current => _current;

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
