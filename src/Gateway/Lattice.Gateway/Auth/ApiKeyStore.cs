using System.Collections.Frozen;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Auth;

/// <summary>An active developer key as the hot path sees it.</summary>
public sealed record ApiKeyRecord(string Id, string WorkspaceId, string[] Scopes, DateTimeOffset? ExpiresAt)
{
    /// <summary>The caller this key authenticates as; made once per snapshot, not per request.</summary>
    public Caller Caller { get; } = new(CredentialKind.ApiKey, WorkspaceId, Id, Scopes);
}

/// <summary>
/// In-memory map from key hash to key, rebuilt after every key write and swapped atomically, so checking a key
/// costs one SHA-256 and one dictionary lookup — no database round trip per request.
/// </summary>
public sealed class ApiKeyStore(IServiceScopeFactory scopes)
{
    private volatile Snapshot _current = new(FrozenDictionary<string, ApiKeyRecord>.Empty);
    private readonly SemaphoreSlim _reloadGate = new(1, 1);

    /// <summary>Finds the active (not revoked) key whose secret is <paramref name="secret"/>. Expiry is the caller's check.</summary>
    public ApiKeyRecord? Find(ReadOnlySpan<char> secret)
    {
        Span<char> hex = stackalloc char[64];
        if (!ApiKeySecrets.HashInto(secret, hex))
        {
            return null;
        }
        return _current.Lookup.TryGetValue(hex, out var record) ? record : null;
    }

    public async Task ReloadAsync(CancellationToken cancellationToken = default)
    {
        await _reloadGate.WaitAsync(cancellationToken);
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
            var rows = await db.ApiKeys.AsNoTracking().Where(k => k.RevokedAt == null).ToListAsync(cancellationToken);
            var map = rows.ToFrozenDictionary(
                r => r.Hash,
                r => new ApiKeyRecord(r.Id, r.WorkspaceId, r.Scopes.Split(' ', StringSplitOptions.RemoveEmptyEntries), r.ExpiresAt),
                StringComparer.Ordinal);
            _current = new Snapshot(map);
        }
        finally
        {
            _reloadGate.Release();
        }
    }

    private sealed class Snapshot(FrozenDictionary<string, ApiKeyRecord> byHash)
    {
        public FrozenDictionary<string, ApiKeyRecord>.AlternateLookup<ReadOnlySpan<char>> Lookup { get; } =
            byHash.GetAlternateLookup<ReadOnlySpan<char>>();
    }
}
