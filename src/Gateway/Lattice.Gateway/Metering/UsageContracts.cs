using System.Text.Json.Serialization;

namespace Lattice.Gateway.Metering;

/// <summary>One usage record as <c>GET /v1/usage/requests</c> shows it.</summary>
public sealed record UsageRequestDto(
    string RequestId,
    long CreatedAt,
    string WorkspaceId,
    string? KeyId,
    string? AppId,
    string? UserId,
    string Task,
    string Surface,
    string Model,
    ServedByDto? ServedBy,
    string? Capacity,
    bool Stream,
    string Status,
    int HttpStatus,
    UsageCountsDto Usage,
    bool Estimated,
    string CostUsd,
    long? TimeToFirstByteMs,
    long DurationMs)
{
    [JsonPropertyOrder(-1)]
    public string Object => "usage.request";
}

public sealed record ServedByDto(string Type, string? Id);

/// <param name="AudioSeconds">Audio in seconds, to the millisecond.</param>
public sealed record UsageCountsDto(long PromptTokens, long CompletionTokens, long TotalTokens, long CachedTokens, decimal AudioSeconds);

public sealed record UsageRequestListDto(IReadOnlyList<UsageRequestDto> Data, bool HasMore)
{
    [JsonPropertyOrder(-1)]
    public string Object => "list";
}

/// <summary>
/// One group's totals in a bucket: OpenAI's <c>organization.usage.completions.result</c> (so clients of OpenAI's usage
/// API read it), with Lattice's cost, audio and grouping fields added. A grouping field is null unless grouped by;
/// <c>status</c> is <c>ok</c>, an error code, <c>cancelled</c> or <c>interrupted</c>.
/// </summary>
public sealed record UsageResultDto(
    long NumModelRequests,
    long InputTokens,
    long OutputTokens,
    long InputCachedTokens,
    long InputUncachedTokens,
    decimal AudioSeconds,
    string CostUsd,
    string? Model,
    string? KeyId,
    string? AppId,
    string? UserId,
    string? Task,
    string? Status = null)
{
    [JsonPropertyOrder(-1)]
    public string Object => "organization.usage.completions.result";

    /// <summary>OpenAI's name for <see cref="KeyId"/>.</summary>
    public string? ApiKeyId => KeyId;
}

public sealed record UsageBucketDto(long StartTime, long EndTime, IReadOnlyList<UsageResultDto> Results)
{
    [JsonPropertyOrder(-1)]
    public string Object => "bucket";
}

public sealed record UsagePageDto(IReadOnlyList<UsageBucketDto> Data, bool HasMore, string? NextPage)
{
    [JsonPropertyOrder(-1)]
    public string Object => "page";
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(UsageRequestListDto))]
[JsonSerializable(typeof(UsagePageDto))]
public sealed partial class UsageJsonContext : JsonSerializerContext;
