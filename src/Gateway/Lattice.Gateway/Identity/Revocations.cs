using System.Collections.Concurrent;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Identity;

/// <summary>
/// What has been revoked, in memory, so checking a token on the hot path needs no database round trip. The node
/// that revokes applies it at once; every node reads the whole <c>revocations</c> log before it serves and then
/// polls it four times a second, so no node honours a revoked credential for more than a second.
/// </summary>
/// <remarks>
/// An entry matters only while an access token it could refuse may still be alive: grants cannot mint new tokens
/// once revoked (the token endpoint checks the database), so after the access-token lifetime plus a margin the
/// entry is dropped from memory and from the log.
/// </remarks>
public sealed class RevocationSet(IOptions<GatewayOptions> options, TimeProvider time)
{
    public const string GrantKind = "grant";
    public const string TokenKind = "token";
    public const string KeyKind = "key";

    /// <summary>A runtime (its lattice id): every node reloads its runtime records and cuts the runtime's link.</summary>
    public const string RuntimeKind = "runtime";

    private const int Batch = 10_000;

    // Compiled once per node: every node runs this four times a second, and building the LINQ query each time cost more
    // CPU than running it. Per instance, not static: a compiled query binds to the first model it runs on, and a process
    // may hold nodes on SQLite and on PostgreSQL (the tests do).
    private readonly Func<LatticeDbContext, long, IAsyncEnumerable<RevocationEntity>> _newerThan = EF.CompileAsyncQuery(
        (LatticeDbContext db, long last) => db.Revocations.AsNoTracking().Where(r => r.Seq > last).OrderBy(r => r.Seq).Take(Batch));

    private readonly TimeSpan _retention = options.Value.AccessTokenLifetime + TimeSpan.FromMinutes(10);
    private readonly ConcurrentDictionary<string, DateTimeOffset> _grants = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, DateTimeOffset> _tokens = new(StringComparer.Ordinal);
    private long _lastSeq;

    /// <summary>How long an entry is kept: the longest an access token lives, plus a margin for clock skew.</summary>
    public TimeSpan Retention => _retention;

    public int Count => _grants.Count + _tokens.Count;

    public bool IsGrantRevoked(string? authorizationId) => authorizationId is not null && _grants.ContainsKey(authorizationId);

    public bool IsTokenRevoked(string? tokenId) => tokenId is not null && _tokens.ContainsKey(tokenId);

    public void Apply(string kind, string subjectId) => Apply(kind, subjectId, time.GetUtcNow());

    private void Apply(string kind, string subjectId, DateTimeOffset revokedAt)
    {
        switch (kind)
        {
            case GrantKind:
                _grants.TryAdd(subjectId, revokedAt);
                break;
            case TokenKind:
                _tokens.TryAdd(subjectId, revokedAt);
                break;
        }
    }

    /// <summary>Reads every log entry newer than the last seen: whether a developer key was revoked, and which runtimes were.</summary>
    public async Task<CaughtUp> CatchUpAsync(LatticeDbContext db, CancellationToken cancellationToken)
    {
        var keys = false;
        List<string>? runtimes = null;
        while (true)
        {
            var last = Interlocked.Read(ref _lastSeq);
            var count = 0;
            await foreach (var row in _newerThan(db, last).WithCancellation(cancellationToken))
            {
                Apply(row.Kind, row.SubjectId, row.RevokedAt);
                keys |= row.Kind == KeyKind;
                if (row.Kind == RuntimeKind)
                {
                    (runtimes ??= []).Add(row.SubjectId);
                }
                last = row.Seq;
                count++;
            }
            Interlocked.Exchange(ref _lastSeq, last);
            if (count < Batch)
            {
                return new CaughtUp(keys, runtimes ?? (IReadOnlyList<string>)[]);
            }
        }
    }

    /// <summary>Forgets entries past <see cref="Retention"/>, in memory and in the log.</summary>
    public async Task<int> PruneAsync(LatticeDbContext db, CancellationToken cancellationToken)
    {
        var cutoff = time.GetUtcNow() - _retention;
        foreach (var set in (ReadOnlySpan<ConcurrentDictionary<string, DateTimeOffset>>)[_grants, _tokens])
        {
            foreach (var (id, revokedAt) in set)
            {
                if (revokedAt < cutoff)
                {
                    set.TryRemove(id, out _);
                }
            }
        }
        var cutoffMs = cutoff.ToUnixTimeMilliseconds();
        return await db.Database.ExecuteSqlInterpolatedAsync($"DELETE FROM revocations WHERE \"RevokedAt\" < {cutoffMs}", cancellationToken);
    }
}

/// <summary>What one read of the revocation log found besides grants and tokens.</summary>
/// <param name="Keys">A developer key was revoked: the key snapshot needs reloading.</param>
/// <param name="Runtimes">Runtimes revoked (lattice ids): their records need reloading and their links cutting.</param>
public readonly record struct CaughtUp(bool Keys, IReadOnlyList<string> Runtimes);

/// <summary>
/// Keeps this node current with revocations made on any node, and prunes the log: grants and tokens in its
/// <see cref="RevocationSet"/>, developer keys in the key snapshot, runtimes in the runtime snapshot — and a revoked
/// runtime's link to this node is cut.
/// </summary>
public sealed class RevocationPoller(
    IServiceScopeFactory scopes,
    RevocationSet set,
    ApiKeyStore keys,
    Runtimes.RuntimeStore runtimes,
    Runtimes.RuntimeRegistry links,
    TimeProvider time,
    ILogger<RevocationPoller> logger) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(250);
    public static readonly TimeSpan PruneInterval = TimeSpan.FromMinutes(10);

    private long _completed;
    private TaskCompletionSource _read = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>How many times this node has read the log to the end since it started.</summary>
    public long CompletedReads => Interlocked.Read(ref _completed);

    /// <summary>Completes once <see cref="CompletedReads"/> has reached <paramref name="count"/>.</summary>
    public async Task ReadsAsync(long count, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            // The signal is taken before the count is read, so a read that ends in between still wakes this wait.
            var read = Volatile.Read(ref _read);
            if (CompletedReads >= count)
            {
                return;
            }
            await read.Task.WaitAsync(cancellationToken);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval);
        var nextPrune = time.GetUtcNow() + PruneInterval;
        do
        {
            try
            {
                await using var scope = scopes.CreateAsyncScope();
                var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
                var caughtUp = await set.CatchUpAsync(db, stoppingToken);
                if (caughtUp.Keys)
                {
                    await keys.ReloadAsync(stoppingToken);
                }
                if (caughtUp.Runtimes.Count > 0)
                {
                    // The snapshot first: a link that registers after the cut finds the record revoked (see the link's
                    // check after its hello).
                    await runtimes.ReloadAsync(stoppingToken);
                    foreach (var latticeId in caughtUp.Runtimes)
                    {
                        links.Disconnect(latticeId);
                    }
                }
                Interlocked.Increment(ref _completed);
                Interlocked.Exchange(ref _read, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
                if (time.GetUtcNow() >= nextPrune)
                {
                    nextPrune = time.GetUtcNow() + PruneInterval;
                    await set.PruneAsync(db, stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // The database may be restarting; the next tick tries again.
                logger.LogWarning("Reading the revocation log failed: {Error}", e.Message);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }
}
