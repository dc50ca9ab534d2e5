using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Dispatch;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Metering;

/// <summary>
/// Turns a dispatch into its usage record: journals the request when dispatch starts (so a crash leaves it as
/// <c>interrupted</c>), and when it ends prices the outcome and hands the record to the ledger. The only writer of
/// usage records on the request path.
/// </summary>
public sealed class UsageMeter(UsageLedger ledger, TokenEstimator estimator, TimeProvider time, Microsoft.Extensions.Options.IOptions<MeteringOptions> options)
{
    public TokenEstimator Estimator => estimator;

    /// <summary>Off only for the benchmark's A/B (<see cref="MeteringOptions.Enabled"/>).</summary>
    public bool Enabled { get; } = options.Value.Enabled;

    public LedgerEntry? Begin(TaskRequest request) => Enabled ? ledger.Begin(Provisional(request)) : null;

    /// <summary>Records the outcome (when metering is on) and returns what the request costs, in pico-USD.</summary>
    public long Finish(LedgerEntry? entry, TaskRequest request, DispatchOutcome outcome)
    {
        if (entry is not null)
        {
            // How it ended, beside the provisional record the entry holds: one record object per request, not a copy.
            var end = End(request, outcome);
            if (outcome.UsageCheck is { } check)
            {
                // A sealed dispatch's signed usage: the signature (an ECDSA verification) is checked on the thread pool,
                // off the client's path, and the record completed only then (a graceful stop waits for it). The cost does
                // not depend on it.
                ledger.CompleteOffPath(entry, (end, check), static state => state.end with { Usage = Checked(state.end.Usage, state.check) });
            }
            else
            {
                ledger.Complete(entry, end);
            }
            return end.CostPicoUsd;
        }
        return Charged(outcome) ? CostCalculator.PicoUsd(outcome.ServedBy!.Prices, outcome.Usage, request.Task.MeteringUnit) : 0;
    }

    /// <summary><paramref name="usage"/> as it stands when <paramref name="check"/> holds, else marked estimated (also when the check throws).</summary>
    public static Usage Checked(Usage usage, Func<bool> check)
    {
        bool holds;
        try
        {
            holds = check();
        }
        catch (Exception)
        {
            holds = false;
        }
        return holds ? usage : usage with { Estimated = true };
    }

    /// <summary>
    /// What was served is charged: a complete answer, a stream that broke part way, a cancelled one for what it
    /// generated. A failure that served nothing costs nothing.
    /// </summary>
    private static bool Charged(DispatchOutcome outcome) => outcome.ServedBy is not null && (outcome.Succeeded
        || (outcome.Failure is DispatchFailure.MidStream or DispatchFailure.ClientCancelled && outcome.HttpStatus is >= 200 and < 300));

    /// <summary>The record as known before anything answered: what an interrupted request is recorded as.</summary>
    internal static UsageRecord Provisional(TaskRequest request)
    {
        var caller = request.Caller;
        return new UsageRecord
        {
            RequestId = request.RequestId,
            CreatedAt = request.ReceivedAt,
            WorkspaceId = caller.WorkspaceId,
            KeyId = caller.Kind == CredentialKind.ApiKey ? caller.CredentialId : null,
            AppId = caller.ClientId,
            UserId = caller.UserId,
            GrantId = caller.Kind == CredentialKind.AccessToken ? caller.CredentialId : null,
            Task = request.Task.Name,
            Surface = request.Surface,
            Model = request.Model,
            Stream = request.Stream,
            Status = UsageStatuses.Interrupted,
        };
    }

    /// <summary>How the request ended: what the final record adds to the provisional one (who asked, what for).</summary>
    internal UsageEnd End(TaskRequest request, DispatchOutcome outcome)
    {
        var served = outcome.ServedBy;
        var usage = outcome.Usage;
        var status = outcome.Failure switch
        {
            DispatchFailure.None when outcome.HttpStatus is >= 200 and < 300 => UsageStatuses.Ok,
            DispatchFailure.None => outcome.AnswerErrorCode ?? $"http_{outcome.HttpStatus}",
            DispatchFailure.ClientCancelled => UsageStatuses.Cancelled,
            _ => outcome.Error.Code ?? "error",
        };
        var charged = Charged(outcome);
        return new UsageEnd(
            ServedBy: served?.ServedBy,
            ServedById: served?.Id,
            Capacity: served?.Capacity,
            Status: status,
            HttpStatus: outcome.HttpStatus,
            Usage: usage,
            CostPicoUsd: charged ? CostCalculator.PicoUsd(served!.Prices, usage, request.Task.MeteringUnit) : 0,
            Prices: charged ? PricesJson.Stored(served!.Prices) : null,
            TimeToFirstByteMicroseconds: outcome.TimeToFirstByteTicks is { } t ? Microseconds(t) : null,
            DurationMicroseconds: Microseconds(outcome.DurationTicks));
    }

    private long Microseconds(long ticks) => ticks * 1_000_000 / time.TimestampFrequency;
}
