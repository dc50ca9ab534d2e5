using System.Collections.Frozen;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Runtimes;

/// <summary>What routing needs to know of a runtime record.</summary>
public sealed record RuntimeRecord(string LatticeId, string WorkspaceId, bool Hosted, bool Revoked);

/// <summary>Runtime records for routing, as a snapshot rebuilt after every runtime write.</summary>
public sealed class RuntimeStore(IServiceScopeFactory scopes)
{
    private volatile FrozenDictionary<string, RuntimeRecord> _current = FrozenDictionary<string, RuntimeRecord>.Empty;
    private readonly SemaphoreSlim _gate = new(1, 1);

    public RuntimeRecord? Find(string latticeId) => _current.GetValueOrDefault(latticeId);

    public async Task ReloadAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
            var rows = await db.Runtimes.AsNoTracking().ToListAsync(cancellationToken);
            _current = rows.ToFrozenDictionary(r => r.LatticeId, r => new RuntimeRecord(r.LatticeId, r.WorkspaceId, r.Hosted, r.RevokedAt is not null), StringComparer.Ordinal);
        }
        finally
        {
            _gate.Release();
        }
    }
}
