using System.Diagnostics;
using System.Diagnostics.Metrics;
using Lattice.Gateway.Dispatch;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Runtimes;

namespace Lattice.Gateway.Telemetry;

/// <summary>
/// The gateway's metrics (meter <see cref="MeterName"/>), all in one place: per request from the finished
/// <see cref="DispatchOutcome"/> (one call, whatever the surface), the streams open now, limiter rejections, and gauges read
/// at collection time from the stores that hold the state. Billing-grade usage is the ledger's; these are for monitoring.
/// Every recording checks its instrument is listened to first, so with telemetry off (no listener) a request pays one
/// field read.
/// </summary>
public sealed class GatewayMetrics
{
    public const string MeterName = "Lattice.Gateway";

    /// <summary>The model label of a request that named no model the gateway could route (its name is the client's, unbounded).</summary>
    public const string UnroutedModel = "unrouted";

    /// <summary>The model label tokens and cost are counted under once <see cref="MaxUsageSeries"/> models have theirs.</summary>
    public const string OverflowModel = "overflow";

    /// <summary>Surface, task and model combinations tokens and cost are counted by, at most (OpenTelemetry's default per metric).</summary>
    private const int MaxUsageSeries = 2000;

    private static readonly double[] LatencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

    // HTTP statuses as label values, made once: no string is built per request.
    private static readonly string[] StatusTexts = Enumerable.Range(0, 600).Select(s => s.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();

    private static readonly string[] FailureTexts = Enum.GetValues<DispatchFailure>().Select(Snake).ToArray();

    private readonly Counter<long> _requests;
    private readonly Histogram<double> _duration;
    private readonly Histogram<double> _firstByte;
    private readonly ObservableCounter<long> _tokens;
    private readonly ObservableCounter<double> _cost;
    /// <summary>
    /// Tokens and cost so far, per surface, task and model: added to per request (a lookup and three atomic adds) and
    /// read as observable counters when metrics are collected — cheaper on the request path than three
    /// <see cref="Counter{T}.Add(T, in TagList)"/> calls, each a lookup of its tags in the SDK's aggregator.
    /// </summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string Surface, string Task, string Model), UsageTotals> _usage = new();
    private readonly UpDownCounter<long> _streams;
    private readonly Counter<long> _rejections;
    private readonly double _secondsPerTick;

    public GatewayMetrics(IMeterFactory meters, TimeProvider time, RuntimeRegistry links, RuntimeStore runtimes, UsageLedger ledger)
    {
        var meter = meters.Create(MeterName);
        _secondsPerTick = 1.0 / time.TimestampFrequency;
        _requests = meter.CreateCounter<long>("lattice.requests", "{request}",
            "Requests dispatched, by surface, task, model, HTTP status and the stage that failed (outcome).");
        _duration = meter.CreateHistogram("lattice.request.duration", "s",
            "From receipt to the answer's end.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        _firstByte = meter.CreateHistogram("lattice.request.time_to_first_byte", "s",
            "From receipt to the answer's first bytes leaving for the client.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        _tokens = meter.CreateObservableCounter("lattice.tokens", ObserveTokens, "{token}", "Tokens metered, by type (input, output).");
        // In the name, not the unit: Prometheus exporters keep only units they know.
        _cost = meter.CreateObservableCounter("lattice.cost.usd", ObserveCost, null, "What requests cost at their offers' prices, in US dollars.");
        _streams = meter.CreateUpDownCounter<long>("lattice.streams.active", "{stream}", "Answers streaming to clients now.");
        _rejections = meter.CreateCounter<long>("lattice.limiter.rejections", "{request}",
            "Requests refused by a limiter: requests or tokens rate, budget, failed authentication, concurrent uploads, counters unavailable.");
        meter.CreateObservableGauge("lattice.runtime.links", () => RuntimeLinks(links, runtimes), "{runtime}",
            "Runtimes by status: connected to this node, not connected to it, revoked.");
        meter.CreateObservableGauge("lattice.ledger.queue_depth", () => ledger.Pending, "{record}",
            "Usage records waiting for their commit.");
        meter.CreateObservableCounter("lattice.ledger.committed", () => ledger.Committed, "{record}", "Usage records committed by this node.");
        meter.CreateObservableCounter("lattice.ledger.unjournaled", () => ledger.Unjournaled, "{record}",
            "Usage records committed without a journal slot (not crash-proof).");
    }

    /// <summary>Records a finished request: the one call per dispatch, made where its usage record is finished.</summary>
    public void Request(TaskRequest request, DispatchOutcome outcome, long costPicoUsd)
    {
        if (!_requests.Enabled && !_duration.Enabled && !_tokens.Enabled && !_cost.Enabled)
        {
            return;
        }
        // A model that routing did not find is a name the client made up: not a label value.
        var model = outcome.Failure == DispatchFailure.Route ? UnroutedModel : request.Model;
        var tags = new TagList
        {
            { "surface", request.Surface },
            { "task", request.Task.Name },
            { "model", model },
            { "status", Status(outcome) },
            { "outcome", FailureTexts[(int)outcome.Failure] },
        };
        _requests.Add(1, tags);
        _duration.Record(outcome.DurationTicks * _secondsPerTick, tags);
        if (outcome.TimeToFirstByteTicks is { } firstByte)
        {
            _firstByte.Record(firstByte * _secondsPerTick, tags);
        }
        var usage = outcome.Usage;
        if ((usage.PromptTokens > 0 || usage.CompletionTokens > 0 || costPicoUsd > 0) && (_tokens.Enabled || _cost.Enabled))
        {
            // As many series as the SDK keeps of a counter by default; past them, new models share one (as its overflow does).
            var key = (request.Surface, request.Task.Name, model);
            if (!_usage.TryGetValue(key, out var totals))
            {
                totals = _usage.GetOrAdd(_usage.Count < MaxUsageSeries ? key : (request.Surface, request.Task.Name, OverflowModel), static _ => new UsageTotals());
            }
            if (usage.PromptTokens > 0)
            {
                Interlocked.Add(ref totals.Input, usage.PromptTokens);
            }
            if (usage.CompletionTokens > 0)
            {
                Interlocked.Add(ref totals.Output, usage.CompletionTokens);
            }
            if (costPicoUsd > 0)
            {
                Interlocked.Add(ref totals.CostPicoUsd, costPicoUsd);
            }
        }
    }

    /// <summary>Tokens so far, one series per surface, task, model and type that has any.</summary>
    private IEnumerable<Measurement<long>> ObserveTokens()
    {
        foreach (var ((surface, task, model), totals) in _usage)
        {
            if (Interlocked.Read(ref totals.Input) is > 0 and var input)
            {
                yield return new(input, Tags(surface, task, model, "input"));
            }
            if (Interlocked.Read(ref totals.Output) is > 0 and var output)
            {
                yield return new(output, Tags(surface, task, model, "output"));
            }
        }
    }

    /// <summary>Cost so far in US dollars, one series per surface, task and model that has any.</summary>
    private IEnumerable<Measurement<double>> ObserveCost()
    {
        foreach (var ((surface, task, model), totals) in _usage)
        {
            if (Interlocked.Read(ref totals.CostPicoUsd) is > 0 and var pico)
            {
                yield return new(pico / (double)Metering.CostCalculator.PicoPerUsd, Tags(surface, task, model, null));
            }
        }
    }

    private static TagList Tags(string surface, string task, string model, string? type)
    {
        var tags = new TagList { { "surface", surface }, { "task", task }, { "model", model } };
        if (type is not null)
        {
            tags.Add("type", type);
        }
        return tags;
    }

    private sealed class UsageTotals
    {
        public long Input;
        public long Output;
        public long CostPicoUsd;
    }

    /// <summary>A stream's first bytes are on their way; <see cref="StreamEnded"/> follows with the same request.</summary>
    public void StreamStarted(TaskRequest request)
    {
        if (_streams.Enabled)
        {
            _streams.Add(1, new TagList { { "surface", request.Surface }, { "task", request.Task.Name } });
        }
    }

    public void StreamEnded(TaskRequest request)
    {
        if (_streams.Enabled)
        {
            _streams.Add(-1, new TagList { { "surface", request.Surface }, { "task", request.Task.Name } });
        }
    }

    /// <summary>A limiter refused a request; <paramref name="limiter"/> is one of <see cref="Limiters"/>.</summary>
    public void Rejected(string limiter)
    {
        if (_rejections.Enabled)
        {
            _rejections.Add(1, new KeyValuePair<string, object?>("limiter", limiter));
        }
    }

    /// <summary>The <c>limiter</c> label's values.</summary>
    public static class Limiters
    {
        public const string Requests = "requests";
        public const string Tokens = "tokens";
        public const string Budget = "budget";
        public const string FailedAuth = "failed_auth";
        public const string Uploads = "uploads";
        public const string CountersUnavailable = "counters_unavailable";
    }

    /// <summary>Which limiter an admission refusal came from, by its error (a closed set of constants).</summary>
    public static string LimiterOf(OpenAi.GatewayError error) => error.Code switch
    {
        Protocol.ErrorCodes.InsufficientQuota => Limiters.Budget,
        Protocol.ErrorCodes.RateLimitExceeded => error.Type == "tokens" ? Limiters.Tokens : Limiters.Requests,
        _ => Limiters.CountersUnavailable,
    };

    /// <summary>The HTTP status the client got, or <c>cancelled</c> when it left before one was chosen.</summary>
    private static string Status(DispatchOutcome outcome) =>
        outcome.HttpStatus is > 0 and < 600 ? StatusTexts[outcome.HttpStatus] : "cancelled";

    private static IEnumerable<Measurement<int>> RuntimeLinks(RuntimeRegistry links, RuntimeStore runtimes)
    {
        int active = 0, revoked = 0;
        foreach (var record in runtimes.All)
        {
            if (record.Revoked)
            {
                revoked++;
            }
            else
            {
                active++;
            }
        }
        var connected = links.Count;
        return
        [
            new(connected, new KeyValuePair<string, object?>("status", "connected")),
            new(Math.Max(0, active - connected), new KeyValuePair<string, object?>("status", "disconnected")),
            new(revoked, new KeyValuePair<string, object?>("status", "revoked")),
        ];
    }

    private static string Snake(DispatchFailure failure) => failure switch
    {
        DispatchFailure.None => "served",
        DispatchFailure.MidStream => "mid_stream",
        DispatchFailure.ClientCancelled => "client_cancelled",
        _ => failure.ToString().ToLowerInvariant(),
    };
}
