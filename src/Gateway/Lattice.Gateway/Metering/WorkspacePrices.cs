using System.Collections.Frozen;
using Lattice.Gateway.Changes;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Metering;

/// <summary>
/// What each workspace charges for requests its own personal runtimes serve: their writes, and a snapshot loaded at
/// start-up and rebuilt whenever a change to them is applied (this node's at once, other nodes' from the change feed),
/// read without locks. Workspaces that set no prices are free.
/// </summary>
/// <remarks>A batch of changes is applied by one rebuild: only workspaces that set prices are read.</remarks>
public sealed partial class WorkspacePrices(IServiceScopeFactory scopes, ChangeFeed feed, ILogger<WorkspacePrices> logger) : IChangeHandler
{
    private volatile FrozenDictionary<string, Prices> _current = FrozenDictionary<string, Prices>.Empty;
    private readonly SemaphoreSlim _reloadGate = new(1, 1);

    public IReadOnlyCollection<string> Kinds { get; } = [ChangeKinds.WorkspacePrices];

    public Task ApplyAsync(IReadOnlyList<ChangeEntity> changes, CancellationToken cancellationToken) => ReloadAsync(cancellationToken);

    /// <summary>Sets a workspace's prices (stored form; null for free) and publishes them; the workspace, or null when there is none.</summary>
    public Task<WorkspaceEntity?> SetAsync(string workspaceId, string? storedPrices, CancellationToken cancellationToken = default) => feed.WriteAsync(async db =>
    {
        if (await db.Workspaces.FindAsync([workspaceId], cancellationToken) is not { } ws)
        {
            return null;
        }
        ws.PersonalRuntimePrices = storedPrices;
        feed.Record(db, ChangeKinds.WorkspacePrices, ws.Id, ws.Id);
        return ws;
    }, cancellationToken);

    /// <summary>The prices of <paramref name="workspaceId"/>'s personal runtimes; <see cref="Prices.Free"/> when it set none.</summary>
    public Prices For(string workspaceId) => _current.GetValueOrDefault(workspaceId, Prices.Free);

    /// <summary>Rebuilds the snapshot. A workspace whose stored prices do not read keeps its last good prices, and is logged.</summary>
    public async Task ReloadAsync(CancellationToken cancellationToken = default)
    {
        await _reloadGate.WaitAsync(cancellationToken);
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
            var rows = await db.Workspaces.AsNoTracking()
                .Where(w => w.PersonalRuntimePrices != null)
                .Select(w => new { w.Id, w.PersonalRuntimePrices })
                .ToListAsync(cancellationToken);
            var previous = _current;
            var prices = new Dictionary<string, Prices>(StringComparer.Ordinal);
            foreach (var row in rows)
            {
                if (PricesJson.TryFromStored(row.PersonalRuntimePrices, out var read))
                {
                    if (read is not null)
                    {
                        prices[row.Id] = read;
                    }
                }
                else
                {
                    LogBadPrices(logger, row.Id);
                    if (previous.TryGetValue(row.Id, out var last))
                    {
                        prices[row.Id] = last;
                    }
                }
            }
            _current = prices.ToFrozenDictionary(StringComparer.Ordinal);
        }
        finally
        {
            _reloadGate.Release();
        }
    }

    [LoggerMessage(EventId = 8501, Level = LogLevel.Warning, Message = "Workspace {WorkspaceId} has personal-runtime prices that do not read; its last good prices stay in force")]
    private static partial void LogBadPrices(ILogger logger, string workspaceId);
}
