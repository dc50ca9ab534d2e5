using Lattice.Gateway.OpenAi;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Dispatch;

/// <summary>A kind of place a request can run: sends it and hands back the start of the answer.</summary>
public interface IDispatchTarget
{
    /// <summary>
    /// Sends the request to <paramref name="candidate"/> and waits until its answer starts (status known) or it
    /// fails. Nothing reaches the client here, so a failure may move on to the next candidate.
    /// </summary>
    ValueTask<TargetOpening> OpenAsync(TaskRequest request, Candidate candidate, CancellationToken cancellationToken);
}

/// <summary>The start of an answer, or why there is none.</summary>
public readonly record struct TargetOpening(TargetResponse? Response, DispatchFailure Failure, GatewayError Error, bool Retryable, byte[]? Envelope = null)
{
    public static TargetOpening Opened(TargetResponse response) => new(response, DispatchFailure.None, default, false);

    public static TargetOpening Failed(DispatchFailure failure, GatewayError error, bool retryable, byte[]? envelope = null) =>
        new(null, failure, error, retryable, envelope);
}

/// <summary>One read of an answer's body.</summary>
/// <param name="Data">Bytes to relay (valid until the next read).</param>
/// <param name="Completed">The answer is complete; <paramref name="Data"/> is empty.</param>
/// <param name="MoreReady">More bytes are already waiting, so the relay need not flush yet.</param>
/// <param name="Error">The answer broke here.</param>
public readonly record struct TargetRead(ReadOnlyMemory<byte> Data, bool Completed, bool MoreReady, GatewayError? Error)
{
    public static TargetRead Done => new(default, true, false, null);

    public static TargetRead Broken(GatewayError error) => new(default, true, false, error);
}

/// <summary>An answer being read from a target: its status and content type, then its body in pieces.</summary>
public abstract class TargetResponse : IAsyncDisposable
{
    public int Status { get; protected init; }
    public string ContentType { get; protected init; } = "application/json";
    /// <summary>The body's length when the target declared it.</summary>
    public long? ContentLength { get; protected init; }
    /// <summary>
    /// The answer is in the API of the request's surface (<see cref="TaskRequest.Native"/> was sent), not in the
    /// task's OpenAI format: the surface's sink passes it through instead of translating it.
    /// </summary>
    public bool Native { get; protected init; }
    /// <summary>The gateway asked the target for a stream usage chunk the client did not; the relay removes it.</summary>
    public bool UsageInjected { get; protected init; }

    /// <summary>Usage the target reported beside the body (a runtime's end frame); null when it did not.</summary>
    public Usage? ReportedUsage { get; protected set; }

    /// <summary>
    /// A check <see cref="ReportedUsage"/> must pass to count as the target's word — a sealed dispatch's signature by
    /// the runtime's work key — run off the client's path, before the usage record is written; failing, the record
    /// keeps the counts marked estimated (<see cref="Metering.UsageMeter"/>). Null: nothing to check.
    /// </summary>
    public Func<bool>? ReportedUsageCheck { get; protected set; }

    /// <summary><see cref="ReportedUsage"/> with <see cref="ReportedUsageCheck"/> applied now (for a report passed on to another node).</summary>
    public Usage? CheckedReportedUsage() =>
        ReportedUsage is { } usage && ReportedUsageCheck is { } check ? Metering.UsageMeter.Checked(usage, check) : ReportedUsage;

    /// <summary>The next piece of the body. Never throws: a broken answer is a read with <see cref="TargetRead.Error"/>.</summary>
    public abstract ValueTask<TargetRead> ReadAsync();

    /// <summary>
    /// The client went away: stop the work, and return what the target says was used up to now, when it can say
    /// (a runtime answers a cancel with its usage so far). Null when only the gateway's own count is left.
    /// </summary>
    public virtual ValueTask<Usage?> CancelAsync() => ValueTask.FromResult<Usage?>(null);

    public abstract ValueTask DisposeAsync();
}
