using System.Globalization;
using System.Text;
using Lattice.Gateway.Auth;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Persistence;
using Lattice.Protocol;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Primitives;
using Lattice.Gateway.ApiReference;

namespace Lattice.Gateway.Metering;

/// <summary>
/// The usage API: one line per request (<c>GET /v1/usage/requests</c>) and totals per time bucket shaped like OpenAI's
/// organization usage API (<c>GET /v1/usage</c>). A developer key sees its workspace's records; an access token only
/// the records made with its own grant, unless it also manages the workspace (<c>lattice:workspace:admin</c>, which only an
/// owner signed in to the console holds). Needs <c>lattice:compute:usage:read</c>.
/// </summary>
public static class UsageEndpoints
{
    public const int DefaultRequestLimit = 20;
    public const int MaxRequestLimit = 100;

    /// <summary>The latest Unix time accepted (9999-12-31T23:59:59Z).</summary>
    private const long MaxUnixSeconds = 253402300799;

    public static IEndpointRouteBuilder MapUsage(this IEndpointRouteBuilder routes)
    {
        routes.MapGet("/v1/usage/requests", ListRequestsAsync).Describe("Usage", "ListUsageRequests", "One line per request, newest first, with filters and paging");
        routes.MapGet("/v1/usage", GetUsageAsync).Describe("Usage", "GetUsage", "Totals per time bucket, shaped like OpenAI's organization usage API");
        return routes;
    }

    /// <summary>
    /// Whether <paramref name="caller"/> sees its whole workspace's records: a key does, and a token of someone who manages
    /// the workspace; any other token sees only what its own grant did.
    /// </summary>
    public static bool SeesWholeWorkspace(Caller caller) => caller.Kind != CredentialKind.AccessToken || caller.HasScope(Scopes.WorkspaceAdmin);

    /// <summary>The records <paramref name="caller"/> may see: its workspace's, and of those a token's only its grant's (see <see cref="SeesWholeWorkspace"/>).</summary>
    public static IQueryable<UsageRecordEntity> VisibleTo(this IQueryable<UsageRecordEntity> records, Caller caller)
    {
        var workspaceId = caller.WorkspaceId;
        var query = records.Where(r => r.WorkspaceId == workspaceId);
        if (!SeesWholeWorkspace(caller))
        {
            var grantId = caller.CredentialId;
            query = query.Where(r => r.GrantId == grantId);
        }
        return query;
    }

    // ---- GET /v1/usage/requests ----

    private static async Task<IResult> ListRequestsAsync(HttpContext context, LatticeDbContext db)
    {
        if (await EndpointAuth.RequireAsync(context, Scopes.UsageRead) is not { } caller)
        {
            return TypedResults.Empty;
        }
        var query = context.Request.Query;
        if (!TryReadInt(query, "limit", 1, MaxRequestLimit, DefaultRequestLimit, out var limit, out var error)
            || !TryReadFilter(query, "model", out var model, out error)
            || !TryReadFilter(query, "key_id", out var keyId, out error)
            || !TryReadFilter(query, "status", out var status, out error)
            || !TryReadFilter(query, "surface", out var surface, out error)
            || !TryReadFilter(query, "after", out var after, out error))
        {
            return OpenAiErrors.Result(error);
        }

        var records = db.UsageRecords.AsNoTracking().VisibleTo(caller);
        if (model is not null)
        {
            records = records.Where(r => r.Model == model);
        }
        if (keyId is not null)
        {
            records = records.Where(r => r.KeyId == keyId);
        }
        if (status is not null)
        {
            records = records.Where(r => r.Status == status);
        }
        if (surface is not null)
        {
            records = records.Where(r => r.Surface == surface);
        }
        if (after is not null)
        {
            // The cursor must be a record this caller can see: another tenant's request id tells nothing.
            var cursor = await db.UsageRecords.AsNoTracking().VisibleTo(caller)
                .Where(r => r.RequestId == after)
                .Select(r => new { r.CreatedAt, r.RequestId })
                .FirstOrDefaultAsync(context.RequestAborted);
            if (cursor is null)
            {
                return OpenAiErrors.Result(GatewayError.InvalidRequest($"'after' must be the request_id of a record in your usage; '{after}' is not.", "after"));
            }
            var at = cursor.CreatedAt;
            records = records.Where(r => r.CreatedAt < at || (r.CreatedAt == at && string.Compare(r.RequestId, after) < 0));
        }
        var page = await records
            .OrderByDescending(r => r.CreatedAt).ThenByDescending(r => r.RequestId)
            .Take(limit + 1)
            .ToListAsync(context.RequestAborted);
        var data = page.Take(limit).Select(ToDto).ToList();
        return TypedResults.Json(new UsageRequestListDto(data, page.Count > limit), UsageJsonContext.Default.UsageRequestListDto);
    }

    private static UsageRequestDto ToDto(UsageRecordEntity r) => new(
        r.RequestId,
        r.CreatedAt.ToUnixTimeSeconds(),
        r.WorkspaceId,
        r.KeyId,
        r.AppId,
        r.UserId,
        r.Task,
        r.Surface,
        r.Model,
        r.ServedBy is null ? null : new ServedByDto(r.ServedBy, r.ServedById),
        r.Capacity,
        r.Stream,
        r.Status,
        r.HttpStatus,
        new UsageCountsDto(r.PromptTokens, r.CompletionTokens, r.TotalTokens, r.CachedTokens, Seconds(r.AudioMilliseconds)),
        r.Estimated,
        CostCalculator.FormatUsd(r.CostPicoUsd),
        r.TimeToFirstByteMicroseconds / 1000,
        r.DurationMicroseconds / 1000);

    private static decimal Seconds(long milliseconds) => milliseconds / 1000m;

    // ---- GET /v1/usage ----

    /// <summary>A bucket width, and OpenAI's default and maximum number of buckets per page for it.</summary>
    private sealed record BucketWidth(string Name, long Seconds, int DefaultLimit, int MaxLimit);

    private static readonly BucketWidth[] Widths =
    [
        new("1m", 60, 60, 1440),
        new("1h", 3600, 24, 168),
        new("1d", 86400, 7, 31),
    ];

    /// <summary>What <c>group_by</c> takes, and the column each groups by. <c>api_key_id</c> is OpenAI's name for <c>key_id</c>.</summary>
    private static readonly (string Name, string Column)[] Groupings =
    [
        ("model", "Model"),
        ("key_id", "KeyId"),
        ("api_key_id", "KeyId"),
        ("app_id", "AppId"),
        ("user_id", "UserId"),
        ("task", "Task"),
        ("status", "Status"),
    ];

    private const string PagePrefix = "page_";

    private static async Task<IResult> GetUsageAsync(HttpContext context, LatticeDbContext db, TimeProvider time)
    {
        if (await EndpointAuth.RequireAsync(context, Scopes.UsageRead) is not { } caller)
        {
            return TypedResults.Empty;
        }
        if (ReadUsageQuery(context.Request.Query, time.GetUtcNow().ToUnixTimeSeconds(), out var window, out var error) is not { } request)
        {
            return OpenAiErrors.Result(error);
        }

        var rows = window.Buckets == 0 ? [] : await QueryBucketsAsync(db, caller, request, window, context.RequestAborted);

        var width = request.Width.Seconds;
        var buckets = new List<UsageBucketDto>(window.Buckets);
        var byBucket = rows.ToLookup(r => r.Bucket);
        for (var i = 0; i < window.Buckets; i++)
        {
            var start = window.FirstBucket + i * width;
            var results = byBucket[i]
                .OrderBy(r => r.Model, StringComparer.Ordinal).ThenBy(r => r.KeyId, StringComparer.Ordinal).ThenBy(r => r.AppId, StringComparer.Ordinal)
                .ThenBy(r => r.UserId, StringComparer.Ordinal).ThenBy(r => r.Task, StringComparer.Ordinal).ThenBy(r => r.Status, StringComparer.Ordinal)
                .Select(r => new UsageResultDto(
                    r.Requests, r.InputTokens, r.OutputTokens, r.CachedTokens, r.InputTokens - r.CachedTokens, Seconds(r.AudioMilliseconds),
                    CostCalculator.FormatUsd(r.CostPicoUsd), r.Model, r.KeyId, r.AppId, r.UserId, r.Task, r.Status))
                .ToList();
            buckets.Add(new UsageBucketDto(start, start + width, results));
        }
        var next = window.FirstBucket + window.Buckets * width;
        var hasMore = next < request.EndTime;
        return TypedResults.Json(new UsagePageDto(buckets, hasMore, hasMore ? PagePrefix + next.ToString(CultureInfo.InvariantCulture) : null), UsageJsonContext.Default.UsagePageDto);
    }

    /// <param name="EndMs">The records' exclusive end, in Unix milliseconds: <c>end_time</c>, or without one the end of the current
    /// second, so a request recorded earlier in the second the query arrives is counted.</param>
    private sealed record UsageQuery(long StartTime, long EndTime, long EndMs, BucketWidth Width, string[] GroupColumns);

    /// <summary>The buckets this page holds: <see cref="Buckets"/> buckets from <see cref="FirstBucket"/> (Unix seconds, aligned).</summary>
    private readonly record struct Window(long FirstBucket, int Buckets);

    /// <summary>One row of the aggregate: a bucket (its index in the page) and a group's totals.</summary>
    internal sealed class BucketRow
    {
        public long Bucket { get; set; }
        public string? Model { get; set; }
        public string? KeyId { get; set; }
        public string? AppId { get; set; }
        public string? UserId { get; set; }
        public string? Task { get; set; }
        public string? Status { get; set; }
        public long Requests { get; set; }
        public long InputTokens { get; set; }
        public long OutputTokens { get; set; }
        public long CachedTokens { get; set; }
        public long AudioMilliseconds { get; set; }
        public long CostPicoUsd { get; set; }
    }

    private static UsageQuery? ReadUsageQuery(IQueryCollection query, long now, out Window window, out GatewayError error)
    {
        window = default;
        if (!query.TryGetValue("start_time", out var startValues) || StringValues.IsNullOrEmpty(startValues))
        {
            error = GatewayError.InvalidRequest("'start_time' is required: the start of the range, in Unix seconds.", "start_time", ErrorCodes.MissingRequiredParameter);
            return null;
        }
        if (!TryReadUnixTime(query, "start_time", out var startTime, out error)
            || !TryReadUnixTime(query, "end_time", out var end, out error))
        {
            return null;
        }
        var start = startTime!.Value;
        if (end is { } e && e <= start)
        {
            error = GatewayError.InvalidRequest("'end_time' must be after 'start_time'.", "end_time");
            return null;
        }
        var widthName = query["bucket_width"].ToString();
        var width = widthName.Length == 0 ? Widths[2] : Array.Find(Widths, w => w.Name == widthName);
        if (width is null)
        {
            error = GatewayError.InvalidRequest("'bucket_width' must be one of: 1m, 1h, 1d.", "bucket_width");
            return null;
        }
        var columns = new List<string>();
        foreach (var value in query["group_by"].Concat(query["group_by[]"]))
        {
            foreach (var name in (value ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                var index = Array.FindIndex(Groupings, g => g.Name == name);
                if (index < 0)
                {
                    error = GatewayError.InvalidRequest($"'group_by' takes {string.Join(", ", Groupings.Select(g => g.Name))}; not '{name}'.", "group_by");
                    return null;
                }
                if (!columns.Contains(Groupings[index].Column))
                {
                    columns.Add(Groupings[index].Column);
                }
            }
        }
        if (!TryReadInt(query, "limit", 1, width.MaxLimit, width.DefaultLimit, out var limit, out error))
        {
            return null;
        }

        var aligned = start - start % width.Seconds;
        var endTime = end ?? now;
        var first = aligned;
        if (query["page"].ToString() is { Length: > 0 } page)
        {
            if (!page.StartsWith(PagePrefix, StringComparison.Ordinal)
                || !long.TryParse(page.AsSpan(PagePrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out first)
                || first % width.Seconds != 0 || first <= aligned || first >= endTime)
            {
                error = GatewayError.InvalidRequest("'page' must be the next_page of an earlier answer to the same query.", "page");
                return null;
            }
        }
        var remaining = endTime <= first ? 0 : (endTime - first + width.Seconds - 1) / width.Seconds;
        window = new Window(first, (int)Math.Min(limit, remaining));
        error = default;
        return new UsageQuery(start, endTime, end is { } given ? given * 1000 : (now + 1) * 1000, width, [.. columns]);
    }

    /// <summary>
    /// Totals per bucket and group, summed in the database over integer columns: timestamps are Unix milliseconds, so a
    /// bucket is an integer division, and costs are pico-USD, so their sum is exact.
    /// </summary>
    private static async Task<List<BucketRow>> QueryBucketsAsync(LatticeDbContext db, Caller caller, UsageQuery request, Window window, CancellationToken cancellationToken)
    {
        var widthMs = request.Width.Seconds * 1000;
        var originMs = window.FirstBucket * 1000;
        // Records from start_time (which may fall inside the first bucket) up to end_time or the page's last bucket.
        var fromMs = Math.Max(request.StartTime, window.FirstBucket) * 1000;
        var toMs = Math.Min(request.EndMs, (window.FirstBucket + window.Buckets * request.Width.Seconds) * 1000);

        // Only fixed column names from Groupings are spliced into the text; every value is a parameter.
        string Column(string name) => request.GroupColumns.Contains(name) ? $"\"{name}\"" : "NULL";
        var sql = new StringBuilder()
            .Append("SELECT (\"CreatedAt\" - {0}) / {1} AS \"Bucket\", ")
            .Append(CultureInfo.InvariantCulture, $"{Column("Model")} AS \"Model\", {Column("KeyId")} AS \"KeyId\", {Column("AppId")} AS \"AppId\", ")
            .Append(CultureInfo.InvariantCulture, $"{Column("UserId")} AS \"UserId\", {Column("Task")} AS \"Task\", {Column("Status")} AS \"Status\", ")
            .Append("COUNT(*) AS \"Requests\", SUM(\"PromptTokens\") AS \"InputTokens\", SUM(\"CompletionTokens\") AS \"OutputTokens\", ")
            .Append("SUM(\"CachedTokens\") AS \"CachedTokens\", SUM(\"AudioMilliseconds\") AS \"AudioMilliseconds\", SUM(\"CostPicoUsd\") AS \"CostPicoUsd\" ")
            .Append("FROM \"usage_records\" WHERE \"WorkspaceId\" = {2} AND \"CreatedAt\" >= {3} AND \"CreatedAt\" < {4}");
        var parameters = new List<object> { originMs, widthMs, caller.WorkspaceId, fromMs, toMs };
        if (!SeesWholeWorkspace(caller))
        {
            sql.Append(" AND \"GrantId\" = {5}");
            parameters.Add(caller.CredentialId);
        }
        sql.Append(" GROUP BY (\"CreatedAt\" - {0}) / {1}");
        foreach (var column in request.GroupColumns)
        {
            sql.Append(CultureInfo.InvariantCulture, $", \"{column}\"");
        }
        return await db.Database.SqlQueryRaw<BucketRow>(sql.ToString(), [.. parameters]).ToListAsync(cancellationToken);
    }

    // ---- query parameters ----

    private static bool TryReadInt(IQueryCollection query, string name, int min, int max, int defaultValue, out int value, out GatewayError error)
    {
        value = defaultValue;
        error = default;
        var text = query[name].ToString();
        if (text.Length == 0)
        {
            return true;
        }
        if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out value) || value < min || value > max)
        {
            error = GatewayError.InvalidRequest($"'{name}' must be an integer from {min} to {max}.", name);
            return false;
        }
        return true;
    }

    private static bool TryReadUnixTime(IQueryCollection query, string name, out long? value, out GatewayError error)
    {
        value = null;
        error = default;
        var text = query[name].ToString();
        if (text.Length == 0)
        {
            return true;
        }
        if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) || seconds > MaxUnixSeconds)
        {
            error = GatewayError.InvalidRequest($"'{name}' must be a Unix time in seconds.", name);
            return false;
        }
        value = seconds;
        return true;
    }

    /// <summary>An exact-match filter: absent is no filter; present must not be empty or repeated.</summary>
    private static bool TryReadFilter(IQueryCollection query, string name, out string? value, out GatewayError error)
    {
        value = null;
        error = default;
        if (!query.TryGetValue(name, out var values))
        {
            return true;
        }
        if (values.Count != 1 || string.IsNullOrEmpty(values[0]) || values[0]!.Length > 300)
        {
            error = GatewayError.InvalidRequest($"'{name}' must be given once, as a non-empty value.", name);
            return false;
        }
        value = values[0];
        return true;
    }
}
