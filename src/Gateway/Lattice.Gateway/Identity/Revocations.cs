using System.Collections.Concurrent;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Identity;

/// <summary>
/// What has been revoked, in memory, so checking a token on the hot path needs no database round trip. The node
/// that revokes applies it at once; every node also polls the <c>revocations</c> log four times a second, so no node
/// honours a revoked credential for more than a second.
/// </summary>
public sealed class RevocationSet
{
    public const string GrantKind = "grant";
    public const string TokenKind = "token";
    public const string KeyKind = "key";

    private readonly ConcurrentDictionary<string, byte> _grants = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte> _tokens = new(StringComparer.Ordinal);
    private long _lastSeq;

    public bool IsGrantRevoked(string? authorizationId) => authorizationId is not null && _grants.ContainsKey(authorizationId);

    public bool IsTokenRevoked(string? tokenId) => tokenId is not null && _tokens.ContainsKey(tokenId);

    public void Apply(string kind, string subjectId)
    {
        switch (kind)
        {
            case GrantKind:
                _grants.TryAdd(subjectId, 0);
                break;
            case TokenKind:
                _tokens.TryAdd(subjectId, 0);
                break;
        }
    }

    /// <summary>Reads log entries newer than the last seen; true when a developer key was revoked elsewhere.</summary>
    public async Task<bool> CatchUpAsync(LatticeDbContext db, CancellationToken cancellationToken)
    {
        var last = Interlocked.Read(ref _lastSeq);
        var rows = await db.Revocations.AsNoTracking().Where(r => r.Seq > last).OrderBy(r => r.Seq).Take(10_000).ToListAsync(cancellationToken);
        var keys = false;
        foreach (var row in rows)
        {
            Apply(row.Kind, row.SubjectId);
            keys |= row.Kind == KeyKind;
            last = row.Seq;
        }
        Interlocked.Exchange(ref _lastSeq, last);
        return keys;
    }
}

/// <summary>Keeps this node's <see cref="RevocationSet"/> current with revocations made on any node.</summary>
public sealed class RevocationPoller(IServiceScopeFactory scopes, RevocationSet set, ApiKeyStore keys, ILogger<RevocationPoller> logger) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(250);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval);
        do
        {
            try
            {
                await using var scope = scopes.CreateAsyncScope();
                var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
                if (await set.CatchUpAsync(db, stoppingToken))
                {
                    await keys.ReloadAsync(stoppingToken);
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
