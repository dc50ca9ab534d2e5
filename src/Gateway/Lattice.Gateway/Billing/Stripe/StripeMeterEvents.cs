using System.Globalization;
using System.Net.Http.Headers;
using Microsoft.Extensions.Options;
using Sdk = global::Stripe;

namespace Lattice.Gateway.Billing.Stripe;

/// <summary>How Stripe took one meter event: a closed set, decided in <see cref="StripeMeterEvents.Classify"/>.</summary>
public enum MeterEventOutcome
{
    /// <summary>200: Stripe has it.</summary>
    Accepted,

    /// <summary>
    /// A 4xx about the event itself (e.g. a timestamp older than Stripe's 35 days): sending it again cannot help, so it is
    /// logged and passed.
    /// </summary>
    Rejected,

    /// <summary>429, 409, 5xx, 401/403 (a key problem the operator fixes), or no answer at all: send it again later.</summary>
    Retry,
}

/// <param name="RetryAfter">Stripe's <c>Retry-After</c>, when it sent one: the least the next attempt waits.</param>
/// <param name="Error">Stripe's error type and code, for the log; never the key.</param>
public readonly record struct MeterEventResult(MeterEventOutcome Outcome, TimeSpan? RetryAfter = null, string? Error = null);

/// <summary>
/// Sends one ledger record to Stripe as a billing meter event (<c>POST /v1/billing/meter_events</c>) through the
/// official Stripe.net SDK. The event's <c>identifier</c> is the request id, so Stripe discards a second copy; its
/// value is the record's cost in pico-USD (an integer, exact). The SDK's own retries are off: the exporter retries
/// on its clock, and each attempt carries a fresh idempotency key, because Stripe replays a key's first answer — a
/// 500 included.
/// </summary>
public sealed class StripeMeterEvents
{
    public const string HttpClientName = "stripe";

    private readonly Sdk.Billing.MeterEventService _service;
    private readonly string _eventName;

    public StripeMeterEvents(IOptions<StripeOptions> options, IHttpClientFactory httpClients)
    {
        var settings = options.Value;
        _eventName = settings.MeterEventName ?? "";
        var http = new Sdk.SystemNetHttpClient(httpClients.CreateClient(HttpClientName), maxNetworkRetries: 0,
            appInfo: new Sdk.AppInfo { Name = "Lattice" }, enableTelemetry: false);
        var client = new Sdk.StripeClient(new Sdk.StripeClientOptions
        {
            ApiKey = settings.ApiKey,
            HttpClient = http,
            ApiBase = settings.BaseUrl?.TrimEnd('/'),
        });
        _service = new Sdk.Billing.MeterEventService(client);
    }

    public async Task<MeterEventResult> SendAsync(ExportRecord record, CancellationToken cancellationToken)
    {
        var create = new Sdk.Billing.MeterEventCreateOptions
        {
            EventName = _eventName,
            Identifier = record.RequestId,
            Timestamp = DateTimeOffset.FromUnixTimeMilliseconds(record.CreatedAt).UtcDateTime,
            Payload = new Dictionary<string, string>
            {
                ["stripe_customer_id"] = record.StripeCustomerId!,
                ["value"] = record.CostPicoUsd.ToString(CultureInfo.InvariantCulture),
            },
        };
        try
        {
            await _service.CreateAsync(create, null, cancellationToken);
            return new MeterEventResult(MeterEventOutcome.Accepted);
        }
        catch (Sdk.StripeException ex)
        {
            var headers = ex.StripeResponse?.Headers;
            var error = ex.StripeError is { } e ? $"{(int)ex.HttpStatusCode} {e.Type} {e.Code}".TrimEnd() : $"{(int)ex.HttpStatusCode}";
            return new MeterEventResult(Classify((int)ex.HttpStatusCode, ShouldRetry(headers)), RetryAfter(headers), error);
        }
        catch (HttpRequestException ex)
        {
            return new MeterEventResult(MeterEventOutcome.Retry, null, ex.HttpRequestError.ToString());
        }
        catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return new MeterEventResult(MeterEventOutcome.Retry, null, "timeout");
        }
    }

    /// <summary>
    /// What an answer means. <c>Stripe-Should-Retry</c> decides a 4xx when Stripe sends it; a 5xx is always retried
    /// (the next attempt has a new idempotency key, so it is not a replay of the failure).
    /// </summary>
    public static MeterEventOutcome Classify(int status, bool? shouldRetry) => status switch
    {
        >= 200 and < 300 => MeterEventOutcome.Accepted,
        >= 500 or 0 => MeterEventOutcome.Retry,
        _ when shouldRetry is { } told => told ? MeterEventOutcome.Retry : MeterEventOutcome.Rejected,
        401 or 403 or 409 or 429 => MeterEventOutcome.Retry,
        _ => MeterEventOutcome.Rejected,
    };

    private static bool? ShouldRetry(HttpResponseHeaders? headers) =>
        headers is not null && headers.TryGetValues("Stripe-Should-Retry", out var values)
            ? values.FirstOrDefault() switch { "true" => true, "false" => false, _ => null }
            : null;

    /// <summary>The seconds form of <c>Retry-After</c> (the date form would need the wall clock; Stripe sends neither as a rule).</summary>
    private static TimeSpan? RetryAfter(HttpResponseHeaders? headers) => headers?.RetryAfter?.Delta;
}
