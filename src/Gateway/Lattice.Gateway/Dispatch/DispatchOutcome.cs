using Lattice.Gateway.OpenAi;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Dispatch;

/// <summary>Where a dispatch failed: a closed set, so every surface maps each one to its own answer.</summary>
public enum DispatchFailure : byte
{
    /// <summary>A target served the request (whatever status it answered with).</summary>
    None = 0,
    /// <summary>Routing found nothing that may serve it (unknown model, runtime not found, offline, no capacity).</summary>
    Route,
    /// <summary>Admission refused it: a rate limit or a budget (nothing was called).</summary>
    Refused,
    /// <summary>Every candidate failed before answering (unreachable, refused, 5xx, link lost before the start).</summary>
    Unavailable,
    /// <summary>The target did not start answering in time.</summary>
    Timeout,
    /// <summary>The answer broke after its first byte reached the client (target error, link lost, timeout, truncated stream).</summary>
    MidStream,
    /// <summary>The client went away before the answer was complete.</summary>
    ClientCancelled,
}

/// <summary>
/// What became of a dispatched request: who served it, how it ended, what it used, how long it took. The surface
/// renders its answer or error from this; metering records it.
/// </summary>
public sealed record DispatchOutcome
{
    public DispatchFailure Failure { get; init; }
    /// <summary>The error to tell the client (for every failure but <see cref="DispatchFailure.ClientCancelled"/>).</summary>
    public GatewayError Error { get; init; }
    /// <summary>An upstream's own OpenAI error envelope, relayed when every candidate failed with one.</summary>
    public byte[]? UpstreamEnvelope { get; init; }
    /// <summary>The candidate that served (or the last one tried); null when none was.</summary>
    public Candidate? ServedBy { get; init; }
    /// <summary>The status the client got or is about to get.</summary>
    public int HttpStatus { get; init; }
    /// <summary>For a served non-2xx answer: the error code it carried, when one could be read.</summary>
    public string? AnswerErrorCode { get; init; }
    /// <summary>Bytes of the response already went to the client (so an error can only end the stream).</summary>
    public bool ResponseStarted { get; init; }
    /// <summary>The answer is an SSE stream.</summary>
    public bool Sse { get; init; }
    public Usage Usage { get; init; }
    /// <summary>
    /// A check <see cref="Usage"/> must pass before it is recorded as the target's word (a sealed dispatch's signature,
    /// <see cref="TargetResponse.ReportedUsageCheck"/>); null: none.
    /// </summary>
    public Func<bool>? UsageCheck { get; init; }
    public long? TimeToFirstByteTicks { get; init; }
    public long DurationTicks { get; init; }
    public long BytesRelayed { get; init; }

    public bool Succeeded => Failure == DispatchFailure.None && HttpStatus is >= 200 and < 300;
}
