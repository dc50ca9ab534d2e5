using System.ComponentModel.DataAnnotations;

namespace Lattice.Gateway.Billing.Stripe;

/// <summary>
/// The <c>Lattice:Stripe</c> configuration section. Usage goes to Stripe only when <see cref="ApiKey"/> is set; then
/// <see cref="MeterEventName"/> is required.
/// </summary>
public sealed class StripeOptions : IValidatableObject
{
    public const string Section = "Lattice:Stripe";

    /// <summary>The operator's secret key (<c>sk_live_…</c>, <c>sk_test_…</c>, or a restricted <c>rk_…</c> key). Never logged.</summary>
    public string? ApiKey { get; set; }

    /// <summary>The <c>event_name</c> of the Stripe meter the usage is recorded on.</summary>
    public string? MeterEventName { get; set; }

    /// <summary>Another base URL for Stripe's API (a stand-in in tests); Stripe's own when unset.</summary>
    public string? BaseUrl { get; set; }

    /// <summary>Ledger records read per round; the cursor moves once per round, after every event of it was taken.</summary>
    [Range(1, 10_000)]
    public int BatchSize { get; set; } = 100;

    /// <summary>Meter events in flight at once.</summary>
    [Range(1, 64)]
    public int Concurrency { get; set; } = 8;

    /// <summary>How long the exporter waits before looking again when it has caught up with the ledger.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The first retry's delay; each next one doubles, up to <see cref="RetryMaxDelay"/>.</summary>
    public TimeSpan RetryBaseDelay { get; set; } = TimeSpan.FromMilliseconds(500);

    public TimeSpan RetryMaxDelay { get; set; } = TimeSpan.FromMinutes(1);

    public bool Enabled => !string.IsNullOrEmpty(ApiKey);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!Enabled)
        {
            yield break;
        }
        if (string.IsNullOrWhiteSpace(MeterEventName) || MeterEventName.Length > 100)
        {
            yield return new ValidationResult("MeterEventName is required with ApiKey: the event_name of the Stripe meter (at most 100 characters).", [nameof(MeterEventName)]);
        }
        if (ApiKey!.Any(char.IsWhiteSpace))
        {
            yield return new ValidationResult("ApiKey must not contain whitespace.", [nameof(ApiKey)]);
        }
        if (BaseUrl is not null && (!Uri.TryCreate(BaseUrl, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https")))
        {
            yield return new ValidationResult("BaseUrl must be an absolute http(s) URL.", [nameof(BaseUrl)]);
        }
        if (PollInterval <= TimeSpan.Zero || RetryBaseDelay <= TimeSpan.Zero || RetryMaxDelay < RetryBaseDelay)
        {
            yield return new ValidationResult("PollInterval and RetryBaseDelay must be positive, and RetryMaxDelay at least RetryBaseDelay.", [nameof(PollInterval), nameof(RetryBaseDelay), nameof(RetryMaxDelay)]);
        }
    }
}
