using System.ComponentModel.DataAnnotations;

namespace Lattice.Gateway.Billing.Idempotency;

/// <summary>The <c>Lattice:Idempotency</c> configuration section.</summary>
public sealed class IdempotencyOptions : IValidatableObject
{
    public const string Section = "Lattice:Idempotency";

    /// <summary>How long a key and its answer are kept (Stripe keeps them 24 hours).</summary>
    public TimeSpan Retention { get; set; } = TimeSpan.FromHours(24);

    /// <summary>The largest answer kept for replay; a larger one leaves the key <c>unreplayable</c>.</summary>
    [Range(1024, 64 * 1024 * 1024)]
    public int MaxStoredBodyBytes { get; set; } = 1024 * 1024;

    /// <summary>Added to the longest request timeout to make a claim's lease: what a node that died mid-request blocks its key for.</summary>
    public TimeSpan LeaseMargin { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>How often expired keys are deleted.</summary>
    public TimeSpan PruneInterval { get; set; } = TimeSpan.FromHours(1);

    /// <summary>Most keys deleted in one statement, so pruning never holds the database for long.</summary>
    [Range(1, 100_000)]
    public int PruneBatch { get; set; } = 1000;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (Retention <= TimeSpan.Zero)
        {
            yield return new ValidationResult("Retention must be positive.", [nameof(Retention)]);
        }
        if (LeaseMargin < TimeSpan.Zero)
        {
            yield return new ValidationResult("LeaseMargin must not be negative.", [nameof(LeaseMargin)]);
        }
        if (PruneInterval <= TimeSpan.Zero)
        {
            yield return new ValidationResult("PruneInterval must be positive.", [nameof(PruneInterval)]);
        }
    }
}
