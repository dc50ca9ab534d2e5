using System.Buffers;
using System.Text;
using System.Text.Json;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Billing.Idempotency;

/// <summary>The statements both database stores run alike (<see cref="SqliteIdempotencyStore"/> prepares them).</summary>
internal static class IdempotencySql
{
    /// <summary>
    /// Claims a free key, an expired one, or one whose holder's lease lapsed, in one statement, so two nodes racing for the
    /// same key cannot both win it (an upsert with a condition: SQLite 3.24+ and PostgreSQL spell it alike). One row
    /// changed: claimed. Parameters <c>@caller @key @hash @now @expires @locked</c>, times in Unix milliseconds.
    /// </summary>
    public const string Claim = """
        INSERT INTO idempotency_keys ("CallerId", "Key", "RequestHash", "State", "Status", "Headers", "Body", "CreatedAt", "ExpiresAt", "LockedUntil")
        VALUES (@caller, @key, @hash, 'running', 0, NULL, NULL, @now, @expires, @locked)
        ON CONFLICT ("CallerId", "Key") DO UPDATE SET
            "RequestHash" = excluded."RequestHash", "State" = excluded."State", "Status" = 0, "Headers" = NULL, "Body" = NULL,
            "CreatedAt" = excluded."CreatedAt", "ExpiresAt" = excluded."ExpiresAt", "LockedUntil" = excluded."LockedUntil"
        WHERE idempotency_keys."ExpiresAt" <= @now
            OR (idempotency_keys."State" = 'running' AND idempotency_keys."LockedUntil" <= @now)
        """;
}

/// <summary>
/// Idempotency keys in the gateway's database (<c>idempotency_keys</c>) through EF Core, shared by every node that uses
/// it: the store on PostgreSQL (SQLite has <see cref="SqliteIdempotencyStore"/>).
/// </summary>
public sealed class SqlIdempotencyStore(IServiceScopeFactory scopes, IOptions<IdempotencyOptions> options, TimeProvider time) : IIdempotencyStore
{
    private const string Running = "running";
    private const string Done = "done";
    private const string Unreplayable = "unreplayable";

    /// <summary>Tries before a key that is claimed and released again under our feet is reported as in use.</summary>
    private const int ClaimAttempts = 3;

    private readonly TimeSpan _retention = options.Value.Retention;

    public async ValueTask<ClaimOutcome> TryClaimAsync(string callerId, string key, string requestHash, TimeSpan lease, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        for (var attempt = 0; attempt < ClaimAttempts; attempt++)
        {
            // Whole milliseconds: what the table keeps, so the claim's time compares equal to the row's.
            var now = DateTimeOffset.FromUnixTimeMilliseconds(time.GetUtcNow().ToUnixTimeMilliseconds());
            var nowMs = now.ToUnixTimeMilliseconds();
            var expiresMs = (now + _retention).ToUnixTimeMilliseconds();
            var lockedMs = (now + lease).ToUnixTimeMilliseconds();
            var claimed = await db.Database.ExecuteSqlRawAsync(IdempotencySql.Claim,
                Parameters(db, ("caller", callerId), ("key", key), ("hash", requestHash), ("now", nowMs), ("expires", expiresMs), ("locked", lockedMs)),
                cancellationToken);
            if (claimed == 1)
            {
                return new ClaimOutcome(new IdempotencyClaim(callerId, key, now), null);
            }
            if (await FindAsync(db, callerId, key, now, cancellationToken) is { } existing)
            {
                return new ClaimOutcome(null, existing);
            }
        }
        return new ClaimOutcome(null, new IdempotencyRecord(requestHash, IdempotencyState.Running, 0, [], null));
    }

    public async ValueTask CompleteAsync(IdempotencyClaim claim, IdempotentAnswer? answer, CancellationToken cancellationToken)
    {
        var state = answer is null ? Unreplayable : Done;
        var status = answer?.Status ?? 0;
        var headers = answer is null ? null : HeadersJson.Write(answer.Headers);
        var body = answer?.Body;
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        await Held(db, claim).ExecuteUpdateAsync(set => set
            .SetProperty(r => r.State, state)
            .SetProperty(r => r.Status, status)
            .SetProperty(r => r.Headers, headers)
            .SetProperty(r => r.Body, body), cancellationToken);
    }

    public async ValueTask<bool> RenewAsync(IdempotencyClaim claim, TimeSpan lease, CancellationToken cancellationToken)
    {
        var until = time.GetUtcNow() + lease;
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        return await Held(db, claim).ExecuteUpdateAsync(set => set.SetProperty(r => r.LockedUntil, until), cancellationToken) == 1;
    }

    public async ValueTask ReleaseAsync(IdempotencyClaim claim, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        await Held(db, claim).ExecuteDeleteAsync(cancellationToken);
    }

    public async ValueTask<IdempotencyRecord?> FindAsync(string callerId, string key, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        return await FindAsync(db, callerId, key, time.GetUtcNow(), cancellationToken);
    }

    public async ValueTask<int> PruneAsync(int batch, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        return await db.IdempotencyKeys.Where(r => r.ExpiresAt <= now).OrderBy(r => r.ExpiresAt).Take(batch).ExecuteDeleteAsync(cancellationToken);
    }

    /// <summary>Named parameters (<c>@name</c>) of the database's own provider.</summary>
    private static System.Data.Common.DbParameter[] Parameters(LatticeDbContext db, params (string Name, object Value)[] values)
    {
        using var factory = db.Database.GetDbConnection().CreateCommand();
        return [.. values.Select(v =>
        {
            var parameter = factory.CreateParameter();
            parameter.ParameterName = v.Name;
            parameter.Value = v.Value;
            return parameter;
        })];
    }

    /// <summary>The row while <paramref name="claim"/> still holds it: a claim taken over after its lease lapsed writes nothing.</summary>
    private static IQueryable<IdempotencyRecordEntity> Held(LatticeDbContext db, IdempotencyClaim claim) =>
        db.IdempotencyKeys.Where(r => r.CallerId == claim.CallerId && r.Key == claim.Key && r.CreatedAt == claim.ClaimedAt && r.State == Running);

    private static async Task<IdempotencyRecord?> FindAsync(LatticeDbContext db, string callerId, string key, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var row = await db.IdempotencyKeys.AsNoTracking()
            .Where(r => r.CallerId == callerId && r.Key == key && r.ExpiresAt > now)
            .FirstOrDefaultAsync(cancellationToken);
        if (row is null)
        {
            return null;
        }
        var state = row.State switch
        {
            Done => IdempotencyState.Done,
            Unreplayable => IdempotencyState.Unreplayable,
            _ => IdempotencyState.Running,
        };
        return new IdempotencyRecord(row.RequestHash, state, row.Status, HeadersJson.Read(row.Headers), row.Body);
    }
}

/// <summary>Kept headers as the JSON object the table stores (<c>{"content-type":"…",…}</c>), in their order.</summary>
public static class HeadersJson
{
    public static string Write(IReadOnlyList<KeyValuePair<string, string>> headers)
    {
        var buffer = new ArrayBufferWriter<byte>(128);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            foreach (var (name, value) in headers)
            {
                writer.WriteString(name, value);
            }
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    public static IReadOnlyList<KeyValuePair<string, string>> Read(string? json)
    {
        if (string.IsNullOrEmpty(json))
        {
            return [];
        }
        using var document = JsonDocument.Parse(json);
        var headers = new List<KeyValuePair<string, string>>();
        foreach (var property in document.RootElement.EnumerateObject())
        {
            headers.Add(new(property.Name, property.Value.GetString() ?? ""));
        }
        return headers;
    }
}
