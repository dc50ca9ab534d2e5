using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Tasks;

namespace Lattice.Gateway.Dispatch;

/// <summary>
/// One compute request, whatever surface it came through: the task, the model as the client named it, who is
/// calling, the body still as the client's bytes, and what the surface must promise the client back.
/// </summary>
public sealed class TaskRequest
{
    public required TaskClass Task { get; init; }
    /// <summary>The model exactly as requested.</summary>
    public required string Model { get; init; }
    public required Caller Caller { get; init; }
    /// <summary>The API the request came through (<see cref="Metering.Surfaces"/>): the usage record names it, and a
    /// target that speaks that API natively is sent <see cref="Native"/> instead of <see cref="Input"/>.</summary>
    public string Surface { get; init; } = Metering.Surfaces.OpenAi;
    /// <summary>
    /// The client's own bytes when the surface translated them into <see cref="Input"/> (the chat task): a target that
    /// speaks the surface's API (an Anthropic upstream for <c>/v1/messages</c>, a Responses-serving upstream for
    /// <c>/v1/responses</c>) gets these, with only the model replaced. Null on the OpenAI surface.
    /// </summary>
    public TaskInput? Native { get; init; }
    /// <summary>The validated body (bytes, and where <c>model</c> sits in them).</summary>
    public required TaskInput Input { get; init; }
    public bool Stream => Input.Stream;
    /// <summary>The body is sealed to a personal runtime's work key: it is relayed, never read, and so is the answer.</summary>
    public bool Sealed => Input.SealedRequestId is not null;
    /// <summary>The client asked for the usage chunk of a stream (<c>stream_options.include_usage</c>).</summary>
    public bool IncludeUsage => Input.IncludeUsage;
    /// <summary>The <c>x-request-id</c> the client gets; the usage record's key.</summary>
    public required string RequestId { get; init; }
    /// <summary>The client's <c>Idempotency-Key</c>, if any.</summary>
    public string? IdempotencyKey { get; init; }
    /// <summary>When the gateway received the request (wall clock, for the record).</summary>
    public required DateTimeOffset ReceivedAt { get; init; }
    /// <summary><see cref="TimeProvider.GetTimestamp"/> at receipt, for time to first byte and duration.</summary>
    public required long StartTimestamp { get; init; }

    /// <summary>The request an HTTP surface dispatches: its request id and <c>Idempotency-Key</c>, received now.</summary>
    public static TaskRequest FromHttp(HttpContext context, TaskClass task, Caller caller, TaskInput input, TimeProvider time, long startTimestamp,
        string surface = Metering.Surfaces.OpenAi, TaskInput? native = null) => new()
    {
        Task = task,
        Surface = surface,
        Native = native,
        Model = input.Model,
        Caller = caller,
        Input = input,
        RequestId = context.TraceIdentifier,
        IdempotencyKey = context.Request.Headers["Idempotency-Key"] is { Count: > 0 } key ? key.ToString() : null,
        ReceivedAt = time.GetUtcNow(),
        StartTimestamp = startTimestamp,
    };
}
