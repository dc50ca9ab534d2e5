using System.Buffers;
using Lattice.Gateway.Billing;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Metering;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Routing;
using Lattice.Gateway.Telemetry;
using Lattice.Protocol;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Dispatch;

/// <summary>
/// The one dispatch every surface calls: route to ordered candidates, try them in turn while nothing has reached the
/// client (the one failover loop), copy the answer's bytes to the surface's sink (the one relay loop), and meter the
/// outcome. It writes no error: the surface renders one from the returned <see cref="DispatchOutcome"/>. Metrics are
/// recorded here too, once per request beside its usage record, and each stage is a span (<see cref="GatewayTracing"/>).
/// </summary>
public sealed partial class Dispatcher(
    CatalogStore catalog,
    Router router,
    AdmissionGate admission,
    UsageMeter meter,
    GatewayMetrics metrics,
    TimeProvider time,
    ILogger<Dispatcher> logger)
{
    public async Task<DispatchOutcome> DispatchAsync(TaskRequest request, IResponseSink sink, CancellationToken aborted)
    {
        using var span = GatewayTracing.Start("lattice.request");
        if (span is not null)
        {
            span.SetTag("lattice.request_id", request.RequestId);
            span.SetTag("lattice.surface", request.Surface);
            span.SetTag("lattice.task", request.Task.Name);
            span.SetTag("lattice.model", request.Model);
            span.SetTag("lattice.stream", request.Stream);
        }
        var entry = meter.Begin(request);
        Admission? admitted = null;
        DispatchOutcome outcome;
        try
        {
            RoutePlan plan;
            using (var route = GatewayTracing.Start("lattice.route"))
            {
                plan = await router.PlanAsync(catalog.Current, request.Caller, request.Model, request.Task.Name);
                route?.SetTag("lattice.candidates", plan.Found ? plan.Candidates.Count : 0);
            }
            if (!plan.Found)
            {
                outcome = Finish(request, DispatchFailure.Route, plan.Error, null, plan.Error.Status);
            }
            else
            {
                // Limits and budgets, before any target is called.
                Admission decision;
                using (var admitting = GatewayTracing.Start("lattice.admission"))
                {
                    decision = await admission.AdmitAsync(request, plan, aborted);
                    admitting?.SetTag("lattice.admitted", decision.Admitted);
                }
                sink.Admission(decision.Report, decision.Admitted);
                if (decision.Error is { } refused)
                {
                    metrics.Rejected(GatewayMetrics.LimiterOf(refused));
                    outcome = Finish(request, DispatchFailure.Refused, refused, null, refused.Status);
                }
                else
                {
                    admitted = decision;
                    outcome = await RunAsync(request, plan, sink, aborted);
                }
            }
        }
        catch (Exception) when (aborted.IsCancellationRequested)
        {
            outcome = Finish(request, DispatchFailure.ClientCancelled, default, null, 0);
        }
        catch (Exception)
        {
            // A bug: still recorded once, as what the client will see (the exception handler's 500).
            outcome = Finish(request, DispatchFailure.Unavailable,
                new GatewayError(StatusCodes.Status500InternalServerError, ErrorTypes.Server, "internal_error", "The gateway failed to handle the request."), null, 500);
            var charged = meter.Finish(entry, request, outcome);
            metrics.Request(request, outcome, charged);
            await SettleAsync(admitted, charged, 0);
            throw;
        }
        var cost = meter.Finish(entry, request, outcome);
        metrics.Request(request, outcome, cost);
        if (span is not null)
        {
            span.SetTag("http.response.status_code", outcome.HttpStatus);
            span.SetTag("lattice.outcome", outcome.Failure.ToString());
            if (!outcome.Succeeded)
            {
                span.SetStatus(System.Diagnostics.ActivityStatusCode.Error, outcome.Error.Code);
            }
        }
        await SettleAsync(admitted, cost, outcome.Usage.TotalTokens);
        return outcome;
    }

    /// <summary>
    /// Gives back what admission took. The answer has been sent: shared counters that cannot be reached now must not
    /// turn it into an error (the reservation then lapses with its counter, see docs/scale-out.md).
    /// </summary>
    private async ValueTask SettleAsync(Admission? admitted, long cost, long tokens)
    {
        if (admitted is null)
        {
            return;
        }
        try
        {
            await admitted.SettleAsync(cost, tokens);
        }
        catch (SharedCountersUnavailableException e)
        {
            LogSettleFailed(logger, e.InnerException?.Message ?? e.Message);
        }
    }

    private async Task<DispatchOutcome> RunAsync(TaskRequest request, RoutePlan plan, IResponseSink sink, CancellationToken aborted)
    {
        // The failover loop: the next candidate only while nothing has reached the client.
        var failure = DispatchFailure.Unavailable;
        GatewayError error = default;
        byte[]? envelope = null;
        Candidate? last = null;
        foreach (var candidate in plan.Candidates)
        {
            last = candidate;
            var opening = await OpenAsync(request, candidate, aborted);
            if (opening.Response is { } response)
            {
                await using (response)
                {
                    // A sealed answer is records of ciphertext whatever the runtime made of it: never read as events.
                    var sse = !request.Sealed && response.ContentType.StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase);
                    using var relay = GatewayTracing.Start("lattice.relay");
                    if (sse)
                    {
                        metrics.StreamStarted(request);
                    }
                    try
                    {
                        var relayed = await RelayAsync(request, candidate, response, sse, sink, aborted);
                        if (relay is not null)
                        {
                            relay.SetTag("http.response.status_code", relayed.HttpStatus);
                            relay.SetTag("lattice.sse", sse);
                            relay.SetTag("lattice.bytes", relayed.BytesRelayed);
                            relay.SetTag("lattice.outcome", relayed.Failure.ToString());
                        }
                        return relayed;
                    }
                    finally
                    {
                        if (sse)
                        {
                            metrics.StreamEnded(request);
                        }
                    }
                }
            }
            if (aborted.IsCancellationRequested)
            {
                return Finish(request, DispatchFailure.ClientCancelled, default, candidate, 0);
            }
            failure = opening.Failure;
            error = opening.Error;
            envelope = opening.Envelope ?? envelope;
            LogCandidateFailed(logger, candidate.Id, opening.Error.Code ?? "", opening.Retryable);
            if (!opening.Retryable)
            {
                break;
            }
        }
        if (envelope is not null)
        {
            // Every upstream failed and one explained itself in OpenAI's envelope: the client gets that explanation.
            return Finish(request, failure, error with { Status = StatusCodes.Status502BadGateway }, last, StatusCodes.Status502BadGateway) with { UpstreamEnvelope = envelope };
        }
        return Finish(request, failure, error, last, error.Status);
    }

    /// <summary>Sends the request to one candidate and waits for its answer to start: a span per candidate tried.</summary>
    private static async ValueTask<TargetOpening> OpenAsync(TaskRequest request, Candidate candidate, CancellationToken aborted)
    {
        using var span = GatewayTracing.Start("lattice.dispatch", System.Diagnostics.ActivityKind.Client);
        if (span is not null)
        {
            span.SetTag("lattice.candidate", candidate.Id);
            span.SetTag("lattice.served_by", candidate.ServedBy);
            span.SetTag("lattice.capacity", candidate.Capacity);
        }
        var opening = await candidate.Target.OpenAsync(request, candidate, aborted);
        if (span is not null)
        {
            span.SetTag("lattice.started", opening.Response is not null);
            if (opening.Response is null)
            {
                span.SetTag("lattice.failure", opening.Failure.ToString());
                span.SetTag("lattice.retryable", opening.Retryable);
                span.SetStatus(System.Diagnostics.ActivityStatusCode.Error, opening.Error.Code);
            }
        }
        return opening;
    }

    /// <summary>
    /// The one relay loop: copies the answer to the sink as it arrives — flushing whenever the target has nothing
    /// more waiting, so frames that arrived together leave together — and reads its usage on the way.
    /// </summary>
    private async Task<DispatchOutcome> RelayAsync(TaskRequest request, Candidate candidate, TargetResponse response, bool sse, IResponseSink sink, CancellationToken aborted)
    {
        // An answer in the surface's own API is read by that API's rules: where its usage is, how its stream ends.
        var native = response.Native ? NativeReader(request.Surface) : null;
        // A sealed answer passes as the runtime sealed it: no model rewritten, no usage read or removed, nothing kept.
        var opaque = request.Sealed;
        var json = !sse && !opaque && response.ContentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase);
        // The answer names the model the client asked for, never the upstream's or engine's name: the value of each
        // `model` member is replaced in every event of a stream and in a JSON answer as its bytes pass. That changes
        // the length, so only other answers (text, subtitles) keep the target's Content-Length.
        // A chat answer that the surface's sink translates gets the model from the sink itself: nothing to rewrite.
        var translated = request.Native is not null && !response.Native;
        var model = (sse || json) && !translated ? ModelFieldRewriter.Quote(request.Model) : null;
        var meterBody = meter.Enabled && request.Task.MeteringUnit != MeteringUnits.Requests;
        // The rewriter's pass over a whole answer also notes where a top-level `usage` is, so reading it walks that
        // value alone rather than the whole answer a second time.
        var rewriter = json && model is not null
            ? new ModelFieldRewriter(model, meterBody && request.Task.UsagePath == UsageMember ? UsageMemberUtf8 : null)
            : null;
        sink.Start(response.Status, response.ContentType, model is null ? response.ContentLength : null, sse, response.Native);
        // A sealed stream leaves chunk by chunk, as the runtime sealed them.
        var flushEach = sse || (opaque && request.Stream);
        // A stream keeps what it relayed (up to 1 MiB) only so that a cancelled one can be counted.
        using var filter = sse
            ? new SseUsageFilter(response.UsageInjected, meterBody ? KeepStreamBytes : 0, native is null ? request.Task.UsagePath : null, request.Task.MeteringUnit, native, model)
            : null;
        using var copy = !sse && !opaque && meterBody ? new PooledCopy() : null;
        var writer = sink.Writer;

        long relayed = 0;
        // Bytes written to the sink since its last flush.
        long held = 0;
        long? firstByte = null;
        GatewayError? broken = null;
        var cancelled = false;
        try
        {
            while (true)
            {
                var read = await response.ReadAsync();
                if (read.Completed)
                {
                    broken = read.Error;
                    break;
                }
                var data = read.Data.Span;
                relayed += data.Length;
                if (filter is not null)
                {
                    filter.Push(data, writer);
                }
                else
                {
                    if (rewriter is not null)
                    {
                        rewriter.Write(data, writer);
                    }
                    else
                    {
                        writer.Write(data);
                    }
                    copy?.Append(data);
                }
                held += data.Length;
                // A stream leaves as it arrives. A whole answer (JSON, text) is no use to a client in pieces: it is held
                // (up to HoldWholeAnswerBytes) and leaves with the end of the response, in one write with its last
                // chunk, rather than a send of its own and another for the end.
                if (!read.MoreReady && (flushEach || held > HoldWholeAnswerBytes))
                {
                    held = 0;
                    firstByte ??= time.GetTimestamp();
                    if (!await sink.FlushAsync(aborted))
                    {
                        cancelled = true;
                        break;
                    }
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            cancelled = aborted.IsCancellationRequested;
            broken ??= GatewayError.UpstreamFailed("The answer failed in the middle.");
        }
        if (held > 0)
        {
            // Whatever the target sent before it finished leaves with the end of the response.
            firstByte ??= time.GetTimestamp();
        }
        cancelled |= aborted.IsCancellationRequested;

        if (!cancelled && broken is null && filter is not null && !(native?.Ended ?? filter.SawDone))
        {
            // The last event may lack its blank line; it is still the end of the stream.
            native?.Observe(filter.Pending);
            if (native?.Ended ?? filter.Pending.TrimEnd("\r\n"u8).SequenceEqual("data: [DONE]"u8))
            {
                filter.Flush(writer);
                await sink.FlushAsync(aborted);
            }
            else
            {
                broken = GatewayError.UpstreamFailed("The stream ended before it was complete.");
            }
        }

        var ok = response.Status is >= 200 and < 300;
        Usage usage;
        // A sealed answer's reported usage holds only once its signature is checked (off the client's path).
        Func<bool>? usageCheck = null;
        if (cancelled)
        {
            // What was generated up to the cancel: the target's own count when it can give one, else ours.
            if (await response.CancelAsync() is { } told)
            {
                usage = told;
                usageCheck = response.ReportedUsageCheck;
            }
            else
            {
                usage = native?.StreamUsage ?? Estimate(request, Answer(filter, copy), sse);
            }
        }
        else if (!ok || !meterBody)
        {
            usage = Usage.None;
        }
        else if (opaque)
        {
            // Only the runtime can count what it answered: its signed report, else nothing known (marked estimated).
            usage = response.ReportedUsage ?? new Usage(Estimated: true);
            usageCheck = response.ReportedUsage is null ? null : response.ReportedUsageCheck;
        }
        else if (response.ReportedUsage is { } reported)
        {
            usage = reported;
        }
        else if (native is not null && (sse ? native.StreamUsage : copy is not null && native.TryReadUsage(copy.Span, out var whole) ? whole : null) is { } nativeUsage)
        {
            usage = nativeUsage;
        }
        else if (filter?.Usage is { } streamed)
        {
            usage = streamed;
        }
        else if (copy is not null && (rewriter?.WatchedValueOffset is >= 0 and var at
            ? UsageReader.TryReadAt(copy.Span, (int)at, request.Task.MeteringUnit, out var answered)
            : UsageReader.TryRead(copy.Span, request.Task.UsagePath, request.Task.MeteringUnit, out answered)))
        {
            usage = answered;
        }
        else
        {
            usage = Estimate(request, Answer(filter, copy), sse);
        }

        var failure = cancelled ? DispatchFailure.ClientCancelled : broken is null ? DispatchFailure.None : DispatchFailure.MidStream;
        return new DispatchOutcome
        {
            Failure = failure,
            Error = broken ?? default,
            ServedBy = candidate,
            HttpStatus = response.Status,
            AnswerErrorCode = !ok && copy is not null ? ErrorCodeOf(copy.Span) : null,
            ResponseStarted = firstByte is not null,
            Sse = sse,
            Usage = usage,
            UsageCheck = usageCheck,
            TimeToFirstByteTicks = firstByte is { } t ? t - request.StartTimestamp : null,
            DurationTicks = time.GetTimestamp() - request.StartTimestamp,
            BytesRelayed = relayed,
        };
    }

    /// <summary>The reader for an answer in a surface's own API (<see cref="TargetResponse.Native"/>): one line per surface.</summary>
    private static INativeAnswerReader? NativeReader(string surface) => surface switch
    {
        Surfaces.Anthropic => new Anthropic.MessagesAnswerReader(),
        Surfaces.Responses => new Responses.ResponsesStream(),
        _ => null,
    };

    /// <summary>What the relay kept of the answer: a stream's events, or a JSON body.</summary>
    private static ReadOnlySpan<byte> Answer(SseUsageFilter? filter, PooledCopy? copy) =>
        filter is not null ? filter.Written : copy is not null ? copy.Span : default;

    private Usage Estimate(TaskRequest request, ReadOnlySpan<byte> answer, bool sse)
    {
        if (request.Sealed)
        {
            // Ciphertext: nothing to count from.
            return new Usage(Estimated: true);
        }
        var body = request.Input.Body.AsSpan(0, request.Input.Length);
        return request.Task.Name switch
        {
            BuiltInTaskClasses.ChatCompletions => meter.Estimator.EstimateChat(body, answer, sse, request.Model),
            BuiltInTaskClasses.Embeddings => meter.Estimator.EstimateEmbeddings(body, request.Model),
            _ => new Usage(Estimated: true),
        };
    }

    /// <summary>The <c>error.code</c> (else <c>error.type</c>) of an OpenAI error envelope; null for anything else.</summary>
    private static string? ErrorCodeOf(ReadOnlySpan<byte> body)
    {
        try
        {
            var reader = new System.Text.Json.Utf8JsonReader(body);
            using var doc = System.Text.Json.JsonDocument.ParseValue(ref reader);
            if (doc.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object
                && doc.RootElement.TryGetProperty("error", out var e) && e.ValueKind == System.Text.Json.JsonValueKind.Object)
            {
                foreach (var name in (ReadOnlySpan<string>)["code", "type"])
                {
                    if (e.TryGetProperty(name, out var v) && v.ValueKind == System.Text.Json.JsonValueKind.String && v.GetString() is { Length: > 0 and <= 64 } s)
                    {
                        return s;
                    }
                }
            }
        }
        catch (System.Text.Json.JsonException)
        {
        }
        return null;
    }

    private DispatchOutcome Finish(TaskRequest request, DispatchFailure failure, GatewayError error, Candidate? candidate, int status) => new()
    {
        Failure = failure,
        Error = error,
        ServedBy = candidate,
        HttpStatus = status,
        DurationTicks = time.GetTimestamp() - request.StartTimestamp,
    };

    private const int KeepStreamBytes = 1 << 20;

    /// <summary>The usage path of the built-in task classes (and most others): a top-level member the rewriter can note.</summary>
    private const string UsageMember = "usage";
    private static readonly byte[] UsageMemberUtf8 = "usage"u8.ToArray();

    /// <summary>How much of a whole (non-stream) answer the relay holds before it sends what it has.</summary>
    private const int HoldWholeAnswerBytes = 64 * 1024;

    [LoggerMessage(EventId = 3002, Level = LogLevel.Warning, Message = "Settling a request's limits and budgets failed: {Error}")]
    private static partial void LogSettleFailed(ILogger logger, string error);

    [LoggerMessage(EventId = 3001, Level = LogLevel.Debug, Message = "Candidate {CandidateId} failed ({Code}); retryable: {Retryable}")]
    private static partial void LogCandidateFailed(ILogger logger, string candidateId, string code, bool retryable);

    /// <summary>A copy of a JSON answer in pooled memory, so its usage can be read once it is complete.</summary>
    private sealed class PooledCopy : IDisposable
    {
        // Answers larger than this are not kept; their usage is then estimated.
        private const int MaxBytes = 32 * 1024 * 1024;
        private byte[] _buffer = ArrayPool<byte>.Shared.Rent(4096);
        private int _length;
        private bool _overflowed;

        public ReadOnlySpan<byte> Span => _overflowed ? default : _buffer.AsSpan(0, _length);

        public void Append(ReadOnlySpan<byte> data)
        {
            if (_overflowed)
            {
                return;
            }
            if (_length + data.Length > _buffer.Length)
            {
                if (_length + data.Length > MaxBytes)
                {
                    _overflowed = true;
                    return;
                }
                var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(_buffer.Length * 2, _length + data.Length));
                _buffer.AsSpan(0, _length).CopyTo(bigger);
                ArrayPool<byte>.Shared.Return(_buffer);
                _buffer = bigger;
            }
            data.CopyTo(_buffer.AsSpan(_length));
            _length += data.Length;
        }

        public void Dispose() => ArrayPool<byte>.Shared.Return(_buffer);
    }
}
