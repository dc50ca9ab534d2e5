using System.Collections.Concurrent;
using System.Collections.Frozen;
using Lattice.Gateway.Changes;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Auth;

/// <summary>An active developer key as the hot path sees it.</summary>
public sealed record ApiKeyRecord(string Id, string WorkspaceId, string[] Scopes, DateTimeOffset? ExpiresAt)
{
    /// <summary>The caller this key authenticates as; made once per snapshot, not per request.</summary>
    public Caller Caller { get; } = new(CredentialKind.ApiKey, WorkspaceId, Id, Scopes);

    internal static ApiKeyRecord From(ApiKeyEntity row) =>
        new(row.Id, row.WorkspaceId, row.Scopes.Split(' ', StringSplitOptions.RemoveEmptyEntries), row.ExpiresAt);
}

/// <summary>
/// Developer keys: their writes, and an in-memory map from key hash to key, swapped atomically, so checking a key
/// costs one SHA-256 and one dictionary lookup — no database round trip per request.
/// </summary>
/// <remarks>
/// <para>The map is kept current by the change feed: each key written here or on another node is read again by its id
/// (<see cref="ApplyAsync"/>). A key the map lacks — created on another node a moment ago — is looked up in the database
/// once, by its hash (<see cref="FindMissAsync"/>); misses are remembered briefly and boundedly (<see cref="KeyMissCache"/>).</para>
/// </remarks>
public sealed partial class ApiKeyStore(IServiceScopeFactory scopes, ChangeFeed feed, TimeProvider time, ILogger<ApiKeyStore> logger) : IChangeHandler
{
    /// <summary>More keys than this in one batch of changes: the whole map is read again rather than key by key.</summary>
    private const int RefreshLimit = 500;

    private volatile Snapshot _current = new(FrozenDictionary<string, ApiKeyRecord>.Empty);
    private readonly SemaphoreSlim _gate = new(1, 1);
    // Under _gate: every active key by id, with its hash; the snapshot is made from it.
    private readonly Dictionary<string, (string Hash, ApiKeyRecord Record)> _byId = new(StringComparer.Ordinal);
    // Bumped under _gate by every refresh: a database miss lookup that raced one reads again before adding its key.
    private long _version;
    private readonly KeyMissCache _misses = new(time);
    private readonly ConcurrentDictionary<string, Lazy<Task<ApiKeyRecord?>>> _lookups = new(StringComparer.Ordinal);
    private long _databaseLookups;

    public IReadOnlyCollection<string> Kinds { get; } = [ChangeKinds.Key];

    /// <summary>How many times a key missing from the map was looked up in the database (for tests and metrics).</summary>
    public long DatabaseLookups => Interlocked.Read(ref _databaseLookups);

    /// <summary>Misses remembered now.</summary>
    public int RememberedMisses => _misses.Count;

    /// <summary>Finds the active (not revoked) key whose secret is <paramref name="secret"/> in the map. Expiry is the caller's check.</summary>
    public ApiKeyRecord? Find(ReadOnlySpan<char> secret)
    {
        Span<char> hex = stackalloc char[64];
        return ApiKeySecrets.HashInto(secret, hex) ? FindByHash(hex) : null;
    }

    /// <summary>The key whose hash (lowercase hex) is <paramref name="hash"/>, in the map.</summary>
    public ApiKeyRecord? FindByHash(ReadOnlySpan<char> hash) => _current.Lookup.TryGetValue(hash, out var record) ? record : null;

    /// <summary>
    /// After a miss in the map: the key in the database, added to the map when it is active. A hash that missed
    /// recently is not looked up again, concurrent misses of one hash share one lookup, and once the miss table is
    /// full, nothing more is looked up until it empties.
    /// </summary>
    public ValueTask<ApiKeyRecord?> FindMissAsync(string hash)
    {
        if (_misses.Contains(hash) || _misses.IsFull)
        {
            return ValueTask.FromResult<ApiKeyRecord?>(null);
        }
        // Lazy: GetOrAdd may make several entries under contention, but only the one it keeps is ever run.
        var lookup = _lookups.GetOrAdd(hash, static (h, store) => new Lazy<Task<ApiKeyRecord?>>(() => store.LookUpAsync(h)), this);
        return new ValueTask<ApiKeyRecord?>(lookup.Value);
    }

    private async Task<ApiKeyRecord?> LookUpAsync(string hash)
    {
        try
        {
            var version = Interlocked.Read(ref _version);
            var row = await ReadByHashAsync(hash);
            if (row is null || row.RevokedAt is not null)
            {
                _misses.TryAdd(hash);
                return null;
            }
            await _gate.WaitAsync();
            try
            {
                if (Interlocked.Read(ref _version) != version)
                {
                    // A refresh ran meanwhile and may have applied this key's revocation: read it again, now that no
                    // refresh can run until it is in the map.
                    row = await ReadByHashAsync(hash);
                    if (row is null || row.RevokedAt is not null)
                    {
                        _misses.TryAdd(hash);
                        return null;
                    }
                }
                var record = ApiKeyRecord.From(row);
                _byId[row.Id] = (row.Hash, record);
                Publish();
                return record;
            }
            finally
            {
                _gate.Release();
            }
        }
        catch (Exception e)
        {
            // The database may be unreachable: the key is refused this time, and not remembered as a miss.
            LogLookupFailed(logger, e.Message);
            return null;
        }
        finally
        {
            _lookups.TryRemove(hash, out _);
        }
    }

    private async Task<ApiKeyEntity?> ReadByHashAsync(string hash)
    {
        Interlocked.Increment(ref _databaseLookups);
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        return await db.ApiKeys.AsNoTracking().FirstOrDefaultAsync(k => k.Hash == hash);
    }

    // ---- writes ----

    /// <summary>Stores a new key (and its limits, if it has any) and publishes it.</summary>
    public Task CreateAsync(ApiKeyEntity key, CancellationToken cancellationToken = default) => feed.WriteAsync(db =>
    {
        db.ApiKeys.Add(key);
        feed.Record(db, ChangeKinds.Key, key.Id, key.WorkspaceId);
        if (key.Limits is not null)
        {
            feed.Record(db, ChangeKinds.Limits, Billing.BillingPolicies.KeySubject(key.Id), key.WorkspaceId);
        }
        return Task.FromResult(key);
    }, cancellationToken);

    /// <summary>Revokes a key on every node (at once on this one); the key as it now stands, or null when there is none.</summary>
    public Task<ApiKeyEntity?> RevokeAsync(string keyId, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        return UpdateAsync(keyId, key => key.RevokedAt ??= now, cancellationToken);
    }

    /// <summary>
    /// Changes a key (its name, limits, or revocation) and publishes it — its limits too, when they changed. The key as
    /// it now stands, or null when there is none.
    /// </summary>
    public Task<ApiKeyEntity?> UpdateAsync(string keyId, Action<ApiKeyEntity> change, CancellationToken cancellationToken = default) => feed.WriteAsync(async db =>
    {
        var key = await db.ApiKeys.FindAsync([keyId], cancellationToken);
        if (key is null)
        {
            return null;
        }
        var limits = key.Limits;
        change(key);
        feed.Record(db, ChangeKinds.Key, key.Id, key.WorkspaceId);
        if (key.Limits != limits)
        {
            feed.Record(db, ChangeKinds.Limits, Billing.BillingPolicies.KeySubject(key.Id), key.WorkspaceId);
        }
        return key;
    }, cancellationToken);

    // ---- the map ----

    /// <summary>Reads the changed keys again, by id (or the whole map, for a large batch).</summary>
    public async Task ApplyAsync(IReadOnlyList<ChangeEntity> changes, CancellationToken cancellationToken)
    {
        var ids = changes.Select(c => c.EntityId).Distinct(StringComparer.Ordinal).ToList();
        if (ids.Count > RefreshLimit)
        {
            await ReloadAsync(cancellationToken);
            return;
        }
        await _gate.WaitAsync(cancellationToken);
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
            var rows = await db.ApiKeys.AsNoTracking().Where(k => ids.Contains(k.Id)).ToListAsync(cancellationToken);
            foreach (var id in ids)
            {
                _byId.Remove(id);
            }
            foreach (var row in rows)
            {
                if (row.RevokedAt is null)
                {
                    _byId[row.Id] = (row.Hash, ApiKeyRecord.From(row));
                }
            }
            Interlocked.Increment(ref _version);
            Publish();
        }
        finally
        {
            _gate.Release();
        }
    }

    public async Task ReloadAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
            var rows = await db.ApiKeys.AsNoTracking().Where(k => k.RevokedAt == null).ToListAsync(cancellationToken);
            _byId.Clear();
            foreach (var row in rows)
            {
                _byId[row.Id] = (row.Hash, ApiKeyRecord.From(row));
            }
            Interlocked.Increment(ref _version);
            Publish();
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Swaps in a snapshot made from <see cref="_byId"/>; under the gate.</summary>
    private void Publish() =>
        _current = new Snapshot(_byId.Values.ToFrozenDictionary(v => v.Hash, v => v.Record, StringComparer.Ordinal));

    [LoggerMessage(EventId = 1101, Level = LogLevel.Warning, Message = "Looking up a key missing from this node's map failed: {Error}")]
    private static partial void LogLookupFailed(ILogger logger, string error);

    private sealed class Snapshot(FrozenDictionary<string, ApiKeyRecord> byHash)
    {
        public FrozenDictionary<string, ApiKeyRecord>.AlternateLookup<ReadOnlySpan<char>> Lookup { get; } =
            byHash.GetAlternateLookup<ReadOnlySpan<char>>();
    }
}
