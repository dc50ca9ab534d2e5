using Lattice.Gateway.Dispatch;
using Lattice.Gateway.Metering;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Persistence;
using Lattice.Protocol;
using Lattice.Protocol.Metering;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Billing;

/// <summary>
/// What admission decided for one request: let through (with what it holds, to give back when the request ends) or
/// refused (with the error), and in both cases what a limited caller is told.
/// </summary>
public sealed class Admission
{
    public static readonly Admission Unlimited = new();

    public bool Admitted => Error is null;
    public GatewayError? Error { get; private init; }
    /// <summary>Null when no limit applies to the caller.</summary>
    public RateLimitReport? Report { get; private init; }

    private IRateLimitCounters? _limiter;
    private LimitSubject[] _subjects = [];
    private long _tokens;
    private RateAllotmentHold? _hold;
    private IBudgetCounters? _budgets;
    private BudgetReservation? _reservation;
    private int _settled;

    internal static Admission Refused(GatewayError error, RateLimitReport? report) => new() { Error = error, Report = report };

    internal static Admission Holding(RateLimitReport? report, IRateLimitCounters limiter, LimitSubject[] subjects, long tokens, RateAllotmentHold? hold,
        IBudgetCounters budgets, BudgetReservation? reservation) =>
        new() { Report = report, _limiter = limiter, _subjects = subjects, _tokens = tokens, _hold = hold, _budgets = budgets, _reservation = reservation };

    /// <summary>
    /// Gives back what admission took, once: the in-flight slot, the tokens (settled to <paramref name="actualTokens"/>)
    /// and the budget reservation (settled to <paramref name="actualPicoUsd"/>; a failure that served nothing costs 0).
    /// Both are sent together, so with shared counters the two cost one round trip between them.
    /// </summary>
    public async ValueTask SettleAsync(long actualPicoUsd, long actualTokens)
    {
        // Most callers hold nothing (Unlimited is shared): no write to a shared line for them.
        if ((_subjects.Length == 0 && _reservation is null) || Interlocked.Exchange(ref _settled, 1) != 0)
        {
            return;
        }
        var release = _subjects.Length > 0 ? _limiter!.ReleaseAsync(_subjects, _tokens, actualTokens, hold: _hold) : default;
        var settle = _reservation is { } reservation ? _budgets!.SettleAsync(reservation, actualPicoUsd) : default;
        try
        {
            await release;
        }
        finally
        {
            await settle;
        }
    }
}

/// <summary>
/// The quota and rate-limit stage of the one request path, between routing and dispatch: takes the request from the
/// caller's rate limits (key or app user, and workspace) and reserves its worst-case cost against its budgets, all
/// before any target is called.
/// </summary>
public sealed class AdmissionGate(BillingPolicies policies, IRateLimitCounters limiter, IBudgetCounters budgets, IOptions<BillingOptions> options, RedisStore redis)
{
    private readonly int _defaultMaxOutputTokens = options.Value.DefaultMaxOutputTokens;

    public async ValueTask<Admission> AdmitAsync(TaskRequest request, RoutePlan plan, CancellationToken cancellationToken)
    {
        var subjects = policies.LimitsFor(request.Caller);
        var lines = policies.BudgetsFor(request.Caller);
        if (subjects.Length == 0 && lines.Length == 0)
        {
            return Admission.Unlimited;
        }

        var input = request.Input;
        var maxOutput = input.MaxTokens ?? plan.MaxOutputTokens ?? _defaultMaxOutputTokens;
        // Tokens per minute count the input as OpenAI estimates it (a token per four bytes) plus the most the answer may use.
        var tokens = subjects.Length > 0 ? (input.Length + 3) / 4 + maxOutput : 0;
        try
        {
            return await AdmitAsync(request, plan, subjects, lines, tokens, maxOutput, cancellationToken);
        }
        catch (SharedCountersUnavailableException) when (redis.FailsOpen)
        {
            // Fail open, as configured: served as if no limit or budget applied, so nothing is held and nothing settled.
            // Whatever admission took before the failure was given back (or lapses, as after any failed settle).
            redis.ServingUncounted(subjects.Length > 0 ? "rate limits" : "budgets");
            return Admission.Unlimited;
        }
        catch (SharedCountersUnavailableException)
        {
            // Fail closed: a request the limits and budgets cannot count is not run.
            return Admission.Refused(GatewayError.CountersUnavailable(), null);
        }
    }

    private async ValueTask<Admission> AdmitAsync(TaskRequest request, RoutePlan plan, LimitSubject[] subjects, BudgetLine[] lines, long tokens, long maxOutput,
        CancellationToken cancellationToken)
    {
        if (subjects.Length > 0 && lines.Length > 0)
        {
            return await AdmitBothAsync(request, plan, subjects, lines, tokens, maxOutput, cancellationToken);
        }
        if (subjects.Length > 0)
        {
            var decision = await limiter.TryAcquireAsync(subjects, tokens, cancellationToken);
            return decision.Admitted
                ? Admission.Holding(decision.Report, limiter, subjects, tokens, decision.Hold, budgets, null)
                : Admission.Refused(RateLimited(decision, request.Model, tokens), decision.Report);
        }
        var reservation = await budgets.TryReserveAsync(lines, WorstCost(request, plan, maxOutput), request.ReceivedAt, cancellationToken);
        return reservation.Admitted
            ? Admission.Holding(null, limiter, subjects, tokens, null, budgets, reservation)
            : Admission.Refused(InsufficientQuota(reservation.RefusedBy!.Value), null);
    }

    /// <summary>
    /// A caller with both rate limits and budgets: the two are asked at once, not one after the other, so with shared
    /// counters admission costs one round trip to Redis instead of two (each costs 40–140 µs of CPU here, see
    /// docs/benchmarks.md). The rare refusal gives back what the other side took: the rate limits' request when the
    /// budgets refuse (as before), the budgets' reservation, settled at nothing, when the rate limits refuse.
    /// </summary>
    private async ValueTask<Admission> AdmitBothAsync(TaskRequest request, RoutePlan plan, LimitSubject[] subjects, BudgetLine[] lines, long tokens, long maxOutput,
        CancellationToken cancellationToken)
    {
        var rate = limiter.TryAcquireAsync(subjects, tokens, cancellationToken).AsTask();
        var budget = budgets.TryReserveAsync(lines, WorstCost(request, plan, maxOutput), request.ReceivedAt, cancellationToken).AsTask();
        try
        {
            await Task.WhenAll(rate, budget);
        }
        catch
        {
            // One side failed (or both): give back whatever the other took, then fail as a lone side would.
            if (rate.IsCompletedSuccessfully && rate.Result.Admitted)
            {
                await ReleaseUnexecutedAsync(subjects, tokens, rate.Result.Hold);
            }
            if (budget.IsCompletedSuccessfully && budget.Result.Admitted)
            {
                await ReleaseReservationAsync(budget.Result);
            }
            throw;
        }
        var decision = rate.Result;
        var reservation = budget.Result;
        if (!decision.Admitted)
        {
            if (reservation.Admitted)
            {
                await ReleaseReservationAsync(reservation);
            }
            return Admission.Refused(RateLimited(decision, request.Model, tokens), decision.Report);
        }
        if (!reservation.Admitted)
        {
            await ReleaseUnexecutedAsync(subjects, tokens, decision.Hold);
            return Admission.Refused(InsufficientQuota(reservation.RefusedBy!.Value), decision.Report with { RetryAfter = null });
        }
        return Admission.Holding(decision.Report, limiter, subjects, tokens, decision.Hold, budgets, reservation);
    }

    /// <summary>Gives back a reservation of a request that will not run; a failure leaves it to lapse with its counter.</summary>
    private async ValueTask ReleaseReservationAsync(BudgetReservation reservation)
    {
        try
        {
            await budgets.SettleAsync(reservation, 0);
        }
        catch (SharedCountersUnavailableException)
        {
        }
    }

    /// <summary>Gives back a request taken from the rate limits when the budgets failed; a second failure leaves it to lapse.</summary>
    private async ValueTask ReleaseUnexecutedAsync(LimitSubject[] subjects, long tokens, RateAllotmentHold? hold)
    {
        try
        {
            await limiter.ReleaseAsync(subjects, tokens, 0, executed: false, hold);
        }
        catch (SharedCountersUnavailableException)
        {
        }
    }

    /// <summary>
    /// The most the request can cost wherever it lands: every byte of the body taken as an input token (no tokenizer
    /// makes more tokens than bytes of text) and the whole output allowance, at the dearest candidate's prices.
    /// </summary>
    private static long WorstCost(TaskRequest request, RoutePlan plan, long maxOutput)
    {
        var usage = new Usage(PromptTokens: request.Input.Length, CompletionTokens: maxOutput, TotalTokens: request.Input.Length + maxOutput);
        long worst = 0;
        foreach (var candidate in plan.Candidates)
        {
            worst = Math.Max(worst, CostCalculator.PicoUsd(candidate.Prices, usage, request.Task.MeteringUnit));
        }
        return worst;
    }

    private static GatewayError RateLimited(in RateDecision decision, string model, long tokens)
    {
        var wait = decision.Report.RetryAfter is { } w ? $" Please try again in {OpenAiRateLimitHeaders.Duration(w)}." : "";
        return decision.Refusal switch
        {
            RateRefusal.Requests => new GatewayError(StatusCodes.Status429TooManyRequests, "requests", ErrorCodes.RateLimitExceeded,
                $"Rate limit reached for {model} on requests per min (RPM): Limit {decision.Limit}.{wait}"),
            RateRefusal.Tokens => new GatewayError(StatusCodes.Status429TooManyRequests, "tokens", ErrorCodes.RateLimitExceeded,
                $"Rate limit reached for {model} on tokens per min (TPM): Limit {decision.Limit}, Requested {tokens}.{wait}"),
            RateRefusal.TooLarge => new GatewayError(StatusCodes.Status429TooManyRequests, "tokens", ErrorCodes.RateLimitExceeded,
                $"Request too large for {model} on tokens per min (TPM): Limit {decision.Limit}, Requested {tokens}. Send less input or a smaller max_tokens."),
            _ => new GatewayError(StatusCodes.Status429TooManyRequests, "requests", ErrorCodes.RateLimitExceeded,
                $"Too many requests in flight: Limit {decision.Limit} concurrent requests.{wait}"),
        };
    }

    private static GatewayError InsufficientQuota(BudgetLine line) => new(
        StatusCodes.Status429TooManyRequests, ErrorCodes.InsufficientQuota, ErrorCodes.InsufficientQuota,
        $"You exceeded your current quota: the {Describe(line)} budget {line.Budget.Id} has no room for this request this month. "
        + "Raise the budget or wait for the next period.");

    private static string Describe(BudgetLine line) => line.Budget.Scope switch
    {
        BudgetScopes.Workspace => "workspace",
        BudgetScopes.Key => "key",
        BudgetScopes.App => "app",
        _ => "per-user app",
    };
}

/// <summary>Billing options (<c>Lattice:Billing</c>).</summary>
public sealed class BillingOptions
{
    public const string Section = "Lattice:Billing";

    /// <summary>
    /// Output tokens a budget and the tokens-per-minute limit count for a request that names no <c>max_tokens</c>,
    /// when its model sets no maximum output either.
    /// </summary>
    [System.ComponentModel.DataAnnotations.Range(1, 10_000_000)]
    public int DefaultMaxOutputTokens { get; set; } = 4096;
}
