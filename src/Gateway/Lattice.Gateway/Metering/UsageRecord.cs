using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Metering;

/// <summary>What served a request: the kind of target, as the usage API names it.</summary>
public static class ServedByKinds
{
    public const string Upstream = "upstream";
    public const string HostedRuntime = "hosted_runtime";
    public const string PersonalRuntime = "personal_runtime";
}

/// <summary>The APIs a request can come through, as the usage record names them.</summary>
public static class Surfaces
{
    /// <summary>OpenAI's API: chat completions, embeddings, audio and the rest of the task routes.</summary>
    public const string OpenAi = "openai";
    /// <summary>Anthropic's Messages API.</summary>
    public const string Anthropic = "anthropic";
    /// <summary>OpenAI's Responses API.</summary>
    public const string Responses = "responses";
}

/// <summary>Capacity classes a record is billed under.</summary>
public static class CapacityClasses
{
    public const string Hosted = "hosted";
    public const string Marketplace = "marketplace";
    public const string Personal = "personal";
}

/// <summary>Record statuses that are not error codes.</summary>
public static class UsageStatuses
{
    public const string Ok = "ok";
    /// <summary>The client went away before the answer was complete.</summary>
    public const string Cancelled = "cancelled";
    /// <summary>The gateway stopped (crash, kill) while the request was in flight; found at the next start.</summary>
    public const string Interrupted = "interrupted";
}

/// <summary>
/// One request's line in the usage ledger: who asked, what served it, how it ended, what it used and cost.
/// Written exactly once per <see cref="RequestId"/>.
/// </summary>
public sealed record UsageRecord
{
    /// <summary>The <c>x-request-id</c> the client received.</summary>
    public required string RequestId { get; init; }
    /// <summary>When the gateway received the request.</summary>
    public required DateTimeOffset CreatedAt { get; init; }
    public required string WorkspaceId { get; init; }
    /// <summary>The developer key (<c>key_…</c>) for key callers.</summary>
    public string? KeyId { get; init; }
    /// <summary>The OAuth app (client id) for access-token callers.</summary>
    public string? AppId { get; init; }
    /// <summary>The user who granted the access token.</summary>
    public string? UserId { get; init; }
    /// <summary>The grant (authorization id) an access token was issued under.</summary>
    public string? GrantId { get; init; }
    public required string Task { get; init; }
    /// <summary>The API the request came through (<see cref="Surfaces"/>).</summary>
    public string Surface { get; init; } = Surfaces.OpenAi;
    /// <summary>The model exactly as the client requested it.</summary>
    public required string Model { get; init; }
    /// <summary><see cref="ServedByKinds"/>; null when nothing served (the request failed before a target answered).</summary>
    public string? ServedBy { get; init; }
    /// <summary>The offer id (upstream) or runtime id (<c>lat_…</c>) that served.</summary>
    public string? ServedById { get; init; }
    /// <summary><see cref="CapacityClasses"/> of what served.</summary>
    public string? Capacity { get; init; }
    public bool Stream { get; init; }
    /// <summary><see cref="UsageStatuses.Ok"/>, an error code (<c>upstream_error</c>, <c>model_not_found</c>, …), <c>cancelled</c> or <c>interrupted</c>.</summary>
    public required string Status { get; init; }
    /// <summary>The HTTP status the client got (0 when it never got one).</summary>
    public int HttpStatus { get; init; }
    public Usage Usage { get; init; }
    /// <summary>Cost in pico-USD (10⁻¹² USD): exact integer arithmetic, summed without drift.</summary>
    public long CostPicoUsd { get; init; }
    /// <summary>The prices <see cref="CostPicoUsd"/> was computed at, as stored <see cref="Metering.Prices"/> JSON; null when free or nothing was charged.</summary>
    public string? Prices { get; init; }
    /// <summary>From receiving the request to its first response byte leaving; null when no byte did.</summary>
    public long? TimeToFirstByteMicroseconds { get; init; }
    public long DurationMicroseconds { get; init; }
}

/// <summary>
/// How a request ended: the fields of its final <see cref="UsageRecord"/> that its provisional one (who asked, what for)
/// does not know. The meter hands the ledger this beside the provisional record already held, so a request makes one
/// record object, not a second copy of it: the journal encodes the two together (<see cref="UsageRecordCodec"/>), and a
/// final record object is built only when one is needed (<see cref="ApplyTo"/>).
/// </summary>
public readonly record struct UsageEnd(
    string? ServedBy,
    string? ServedById,
    string? Capacity,
    string Status,
    int HttpStatus,
    Usage Usage,
    long CostPicoUsd,
    string? Prices,
    long? TimeToFirstByteMicroseconds,
    long DurationMicroseconds)
{
    /// <summary>The end of a whole record.</summary>
    public static UsageEnd Of(UsageRecord record) => new(record.ServedBy, record.ServedById, record.Capacity, record.Status, record.HttpStatus,
        record.Usage, record.CostPicoUsd, record.Prices, record.TimeToFirstByteMicroseconds, record.DurationMicroseconds);

    /// <summary>The final record: <paramref name="provisional"/> with this end.</summary>
    public UsageRecord ApplyTo(UsageRecord provisional) => provisional with
    {
        ServedBy = ServedBy,
        ServedById = ServedById,
        Capacity = Capacity,
        Status = Status,
        HttpStatus = HttpStatus,
        Usage = Usage,
        CostPicoUsd = CostPicoUsd,
        Prices = Prices,
        TimeToFirstByteMicroseconds = TimeToFirstByteMicroseconds,
        DurationMicroseconds = DurationMicroseconds,
    };
}
