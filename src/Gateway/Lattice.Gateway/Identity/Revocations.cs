using System.Collections.Concurrent;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Identity;

/// <summary>
/// What has been revoked of OAuth grants and access tokens, in memory, so checking a token on the hot path needs no
/// database round trip. The node that revokes applies it at once; every node reads the whole <c>revocations</c> log
/// before it serves and then polls it with the change feed (<see cref="Changes.ChangeFeedPoller"/>), so no node honours
/// a revoked token for more than a second.
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

    /// <summary>Reads every log entry newer than the last seen.</summary>
    /// <remarks>
    /// Developer keys and runtimes are revoked through the change feed (<see cref="Changes.ChangeKinds"/>): their
    /// snapshots are rebuilt from the database at start-up, whereas an access token is checked offline and so must
    /// find its revocation here for as long as it lives. Entries of those kinds written by older versions are skipped.
    /// </remarks>
    public async Task CatchUpAsync(LatticeDbContext db, CancellationToken cancellationToken)
    {
        while (true)
        {
            var last = Interlocked.Read(ref _lastSeq);
            var count = 0;
            await foreach (var row in _newerThan(db, last).WithCancellation(cancellationToken))
            {
                Apply(row.Kind, row.SubjectId, row.RevokedAt);
                last = row.Seq;
                count++;
            }
            Interlocked.Exchange(ref _lastSeq, last);
            if (count < Batch)
            {
                return;
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
