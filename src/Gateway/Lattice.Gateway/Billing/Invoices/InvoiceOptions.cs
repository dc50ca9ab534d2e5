using System.ComponentModel.DataAnnotations;

namespace Lattice.Gateway.Billing.Invoices;

/// <summary>The <c>Lattice:Invoices</c> configuration section.</summary>
public sealed class InvoiceOptions : IValidatableObject
{
    public const string Section = "Lattice:Invoices";

    /// <summary>
    /// How long after a month ends its invoice stays a draft: a request in flight at midnight is recorded when it ends,
    /// so its record arrives late. After it the invoice is final and never changes.
    /// </summary>
    public TimeSpan GracePeriod { get; set; } = TimeSpan.FromHours(1);

    /// <summary>How often the background finaliser looks for invoices that are due (reading one finalises it too).</summary>
    public TimeSpan FinalizeInterval { get; set; } = TimeSpan.FromMinutes(5);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (GracePeriod < TimeSpan.Zero || GracePeriod > TimeSpan.FromDays(7))
        {
            yield return new ValidationResult("GracePeriod must be between 0 and 7 days.", [nameof(GracePeriod)]);
        }
        if (FinalizeInterval < TimeSpan.FromSeconds(1))
        {
            yield return new ValidationResult("FinalizeInterval must be at least one second.", [nameof(FinalizeInterval)]);
        }
    }
}
