namespace Lattice.Client;

/// <summary>What one request used and cost, as <c>GET /v1/usage/requests</c> shows it.</summary>
/// <param name="RequestId">The <c>x-request-id</c> the client received.</param>
/// <param name="CreatedAt">When the gateway received it, in Unix seconds.</param>
/// <param name="WorkspaceId">The workspace that pays.</param>
/// <param name="KeyId">The developer key; null for access-token requests.</param>
/// <param name="AppId">The OAuth app, for access-token requests.</param>
/// <param name="UserId">The user who granted the app, for access-token requests.</param>
/// <param name="Task">The task class.</param>
/// <param name="Surface"><c>openai</c>, <c>anthropic</c> or <c>responses</c>.</param>
/// <param name="Model">The model exactly as the client named it.</param>
/// <param name="ServedBy">What served it; null when nothing did.</param>
/// <param name="Capacity"><c>hosted</c>, <c>marketplace</c> or <c>personal</c>.</param>
/// <param name="Stream">Whether it streamed.</param>
/// <param name="Status"><c>ok</c>, an error code, <c>cancelled</c> or <c>interrupted</c>.</param>
/// <param name="HttpStatus">The status the client got (0 if none).</param>
/// <param name="Usage">What it used.</param>
/// <param name="Estimated">True when the target reported no usage and the gateway counted it itself.</param>
/// <param name="CostUsd">The cost in USD, exact to 10⁻¹².</param>
/// <param name="TimeToFirstByteMs">Latency to the first response byte.</param>
/// <param name="DurationMs">Latency to the end.</param>
public sealed record UsageRequest(
    string RequestId, long CreatedAt, string WorkspaceId, string? KeyId, string? AppId, string? UserId, string Task, string Surface,
    string Model, UsageServedBy? ServedBy, string? Capacity, bool Stream, string Status, int HttpStatus, UsageCounts Usage, bool Estimated,
    decimal CostUsd, long? TimeToFirstByteMs, long DurationMs);

/// <summary>What served a request.</summary>
/// <param name="Type"><c>upstream</c>, <c>hosted_runtime</c> or <c>personal_runtime</c>.</param>
/// <param name="Id">The offer id or the runtime's <c>lat_…</c> id.</param>
public sealed record UsageServedBy(string Type, string? Id);

/// <summary>Token and audio counts of a request.</summary>
/// <param name="PromptTokens">Prompt tokens (cached ones included).</param>
/// <param name="CompletionTokens">Completion tokens.</param>
/// <param name="TotalTokens">Prompt plus completion.</param>
/// <param name="CachedTokens">Prompt tokens read from a cache.</param>
/// <param name="AudioSeconds">Audio, to the millisecond.</param>
public sealed record UsageCounts(long PromptTokens, long CompletionTokens, long TotalTokens, long CachedTokens, decimal AudioSeconds);

/// <summary>One page of usage records, newest first.</summary>
/// <param name="Data">The records.</param>
/// <param name="HasMore">More lie beyond the last one: pass its <see cref="UsageRequest.RequestId"/> as <c>after</c>.</param>
public sealed record UsageRequestPage(IReadOnlyList<UsageRequest> Data, bool HasMore);

/// <summary>Filters of <c>GET /v1/usage/requests</c>; every one optional.</summary>
public sealed record UsageRequestQuery
{
    /// <summary>1–100 (the gateway's default is 20).</summary>
    public int? Limit { get; init; }
    /// <summary>A request id from a previous page: records older than it.</summary>
    public string? After { get; init; }
    /// <summary>Only this model id.</summary>
    public string? Model { get; init; }
    /// <summary>Only this developer key.</summary>
    public string? KeyId { get; init; }
    /// <summary>Only this status (<c>ok</c>, an error code, …).</summary>
    public string? Status { get; init; }
    /// <summary>Only this surface.</summary>
    public string? Surface { get; init; }
}

/// <summary>Parameters of <c>GET /v1/usage</c>: totals per time bucket.</summary>
/// <param name="StartTime">Inclusive start.</param>
public sealed record UsageQuery(DateTimeOffset StartTime)
{
    /// <summary>Exclusive end; the gateway's default is now.</summary>
    public DateTimeOffset? EndTime { get; init; }
    /// <summary><c>1m</c>, <c>1h</c> or <c>1d</c> (default).</summary>
    public string? BucketWidth { get; init; }
    /// <summary>Any of <c>model</c>, <c>key_id</c>, <c>app_id</c>, <c>user_id</c>, <c>task</c>.</summary>
    public IReadOnlyList<string>? GroupBy { get; init; }
    /// <summary>Buckets per page.</summary>
    public int? Limit { get; init; }
    /// <summary>The previous page's <see cref="UsagePage.NextPage"/>.</summary>
    public string? Page { get; init; }
}

/// <summary>Totals per time bucket, in the shape of OpenAI's organization usage API.</summary>
/// <param name="Data">The buckets, oldest first.</param>
/// <param name="HasMore">More buckets follow: ask for <see cref="NextPage"/>.</param>
/// <param name="NextPage">The cursor of the next page.</param>
public sealed record UsagePage(IReadOnlyList<UsageBucket> Data, bool HasMore, string? NextPage);

/// <summary>One time bucket.</summary>
/// <param name="StartTime">Its start, Unix seconds.</param>
/// <param name="EndTime">Its end, Unix seconds.</param>
/// <param name="Results">One result per group.</param>
public sealed record UsageBucket(long StartTime, long EndTime, IReadOnlyList<UsageResult> Results);

/// <summary>One group's totals in a bucket; a grouping field is null unless grouped by.</summary>
/// <param name="NumModelRequests">Requests.</param>
/// <param name="InputTokens">Input tokens.</param>
/// <param name="OutputTokens">Output tokens.</param>
/// <param name="InputCachedTokens">Input tokens read from a cache.</param>
/// <param name="InputUncachedTokens">Input tokens not read from a cache.</param>
/// <param name="AudioSeconds">Audio seconds.</param>
/// <param name="CostUsd">Cost in USD.</param>
/// <param name="Model">The group's model.</param>
/// <param name="KeyId">The group's developer key.</param>
/// <param name="AppId">The group's app.</param>
/// <param name="UserId">The group's user.</param>
/// <param name="Task">The group's task.</param>
public sealed record UsageResult(long NumModelRequests, long InputTokens, long OutputTokens, long InputCachedTokens, long InputUncachedTokens,
    decimal AudioSeconds, decimal CostUsd, string? Model, string? KeyId, string? AppId, string? UserId, string? Task);
