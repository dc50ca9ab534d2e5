using Npgsql;
using NpgsqlTypes;

namespace Lattice.Gateway.Metering;

/// <summary>
/// The ledger on PostgreSQL: a whole batch in one prepared statement, <c>INSERT … SELECT FROM unnest(arrays) ON CONFLICT
/// ("RequestId") DO NOTHING</c> — one round trip and one commit per batch whatever its size, and a record that is
/// already there (replayed from the journal after a crash, or the same request written by another node) is skipped,
/// so every request id has exactly one row. Binary COPY would be as fast but cannot skip a conflicting row.
/// </summary>
/// <remarks>
/// Commits are synchronous (the server's default): a journal slot is freed once its record is committed, so a record
/// must not be lost by a PostgreSQL crash after that. The batch is what amortises the server's WAL flush.
/// </remarks>
internal sealed class PostgresLedgerStore(string connectionString) : ILedgerStore
{
    private const string InsertSql = """
        INSERT INTO usage_records ("RequestId", "CreatedAt", "WorkspaceId", "KeyId", "AppId", "UserId", "GrantId", "Task", "Model",
            "ServedBy", "ServedById", "Capacity", "Stream", "Status", "HttpStatus", "PromptTokens", "CompletionTokens", "TotalTokens",
            "CachedTokens", "AudioMilliseconds", "Estimated", "CostPicoUsd", "TimeToFirstByteMicroseconds", "DurationMicroseconds",
            "Prices", "Surface")
        -- left(model, 300): the column's length (UsageRecordEntityConfiguration); SQLite keeps a longer name whole, and here
        -- one would fail its whole batch again and again.
        SELECT r.request_id, r.created_at, r.workspace_id, r.key_id, r.app_id, r.user_id, r.grant_id, r.task, left(r.model, 300),
            r.served_by, r.served_by_id, r.capacity, r.stream, r.status, r.http_status, r.prompt_tokens, r.completion_tokens, r.total_tokens,
            r.cached_tokens, r.audio_ms, r.estimated, r.cost, r.ttfb, r.duration, r.prices, r.surface
        FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
            $10::text[], $11::text[], $12::text[], $13::boolean[], $14::text[], $15::integer[], $16::bigint[], $17::bigint[], $18::bigint[],
            $19::bigint[], $20::bigint[], $21::boolean[], $22::bigint[], $23::bigint[], $24::bigint[], $25::text[], $26::text[])
            AS r(request_id, created_at, workspace_id, key_id, app_id, user_id, grant_id, task, model,
                served_by, served_by_id, capacity, stream, status, http_status, prompt_tokens, completion_tokens, total_tokens,
                cached_tokens, audio_ms, estimated, cost, ttfb, duration, prices, surface)
        ON CONFLICT ("RequestId") DO NOTHING
        """;

    public async ValueTask<ILedgerConnection> OpenAsync(CancellationToken cancellationToken)
    {
        var connection = new NpgsqlConnection(connectionString);
        try
        {
            await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
            var command = new NpgsqlCommand(InsertSql, connection);
            foreach (var type in ParameterTypes)
            {
                command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | type });
            }
            await command.PrepareAsync(cancellationToken).ConfigureAwait(false);
            return new Connection(connection, command);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private static readonly NpgsqlDbType[] ParameterTypes =
    [
        NpgsqlDbType.Text, NpgsqlDbType.Bigint, NpgsqlDbType.Text, NpgsqlDbType.Text, NpgsqlDbType.Text, NpgsqlDbType.Text,
        NpgsqlDbType.Text, NpgsqlDbType.Text, NpgsqlDbType.Text, NpgsqlDbType.Text, NpgsqlDbType.Text, NpgsqlDbType.Text,
        NpgsqlDbType.Boolean, NpgsqlDbType.Text, NpgsqlDbType.Integer, NpgsqlDbType.Bigint, NpgsqlDbType.Bigint, NpgsqlDbType.Bigint,
        NpgsqlDbType.Bigint, NpgsqlDbType.Bigint, NpgsqlDbType.Boolean, NpgsqlDbType.Bigint, NpgsqlDbType.Bigint, NpgsqlDbType.Bigint,
        NpgsqlDbType.Text, NpgsqlDbType.Text,
    ];

    private sealed class Connection(NpgsqlConnection connection, NpgsqlCommand insert) : ILedgerConnection
    {
        public async ValueTask CommitAsync(IReadOnlyList<UsageRecord> records, CancellationToken cancellationToken)
        {
            var n = records.Count;
            var requestId = new string[n];
            var createdAt = new long[n];
            var workspaceId = new string[n];
            var keyId = new string?[n];
            var appId = new string?[n];
            var userId = new string?[n];
            var grantId = new string?[n];
            var task = new string[n];
            var model = new string[n];
            var servedBy = new string?[n];
            var servedById = new string?[n];
            var capacity = new string?[n];
            var stream = new bool[n];
            var status = new string[n];
            var httpStatus = new int[n];
            var promptTokens = new long[n];
            var completionTokens = new long[n];
            var totalTokens = new long[n];
            var cachedTokens = new long[n];
            var audioMs = new long[n];
            var estimated = new bool[n];
            var cost = new long[n];
            var ttfb = new long?[n];
            var duration = new long[n];
            var prices = new string?[n];
            var surface = new string[n];
            for (var i = 0; i < n; i++)
            {
                var r = records[i];
                requestId[i] = r.RequestId;
                createdAt[i] = r.CreatedAt.ToUnixTimeMilliseconds();
                workspaceId[i] = r.WorkspaceId;
                keyId[i] = r.KeyId;
                appId[i] = r.AppId;
                userId[i] = r.UserId;
                grantId[i] = r.GrantId;
                task[i] = r.Task;
                model[i] = r.Model;
                servedBy[i] = r.ServedBy;
                servedById[i] = r.ServedById;
                capacity[i] = r.Capacity;
                stream[i] = r.Stream;
                status[i] = r.Status;
                httpStatus[i] = r.HttpStatus;
                promptTokens[i] = r.Usage.PromptTokens;
                completionTokens[i] = r.Usage.CompletionTokens;
                totalTokens[i] = r.Usage.TotalTokens;
                cachedTokens[i] = r.Usage.CachedTokens;
                audioMs[i] = r.Usage.AudioMilliseconds;
                estimated[i] = r.Usage.Estimated;
                cost[i] = r.CostPicoUsd;
                ttfb[i] = r.TimeToFirstByteMicroseconds;
                duration[i] = r.DurationMicroseconds;
                prices[i] = r.Prices;
                surface[i] = r.Surface;
            }
            object[] values =
            [
                requestId, createdAt, workspaceId, keyId, appId, userId, grantId, task, model, servedBy, servedById, capacity,
                stream, status, httpStatus, promptTokens, completionTokens, totalTokens, cachedTokens, audioMs, estimated, cost,
                ttfb, duration, prices, surface,
            ];
            for (var i = 0; i < values.Length; i++)
            {
                insert.Parameters[i].Value = values[i];
            }
            // One statement: atomic on its own, so no explicit transaction.
            await insert.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        public void Dispose()
        {
            insert.Dispose();
            connection.Dispose();
        }
    }
}
