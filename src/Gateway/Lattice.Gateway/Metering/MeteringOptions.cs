using System.ComponentModel.DataAnnotations;

namespace Lattice.Gateway.Metering;

/// <summary>The <c>Lattice:Metering</c> configuration section: the usage journal's size and the group commit's batching.</summary>
public sealed class MeteringOptions : IValidatableObject
{
    public const string Section = "Lattice:Metering";

    /// <summary>
    /// Whether requests are metered at all. Off only to measure what metering costs (the benchmark's A/B): no record
    /// is written, no usage is asked for or read.
    /// </summary>
    public bool Enabled { get; set; } = true;

    /// <summary>
    /// Slots in <c>&lt;DataDirectory&gt;/usage-journal.bin</c>: how many requests can be in flight or awaiting their commit
    /// with a crash-proof record. Beyond it records are still committed, only not journaled (counted).
    /// </summary>
    [Range(16, 1 << 20)]
    public int JournalSlots { get; set; } = 8192;

    /// <summary>
    /// Bytes per slot; a slot holds the provisional and the final record as JSON (about 500 bytes each), so a record
    /// that does not fit is rare and falls back to un-journaled.
    /// </summary>
    [Range(512, 64 * 1024)]
    public int JournalSlotBytes { get; set; } = 2048;

    /// <summary>Most records written in one transaction.</summary>
    [Range(1, 100_000)]
    public int MaxBatch { get; set; } = 512;

    /// <summary>
    /// How long the first record of a batch waits for others to share its transaction. Zero commits at once (batches
    /// then form only from what arrives while the previous commit runs). Kept well under the 100 ms durability promise.
    /// </summary>
    public TimeSpan MaxBatchDelay { get; set; } = TimeSpan.FromMilliseconds(10);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (JournalSlotBytes % 8 != 0)
        {
            yield return new ValidationResult("JournalSlotBytes must be a multiple of 8.", [nameof(JournalSlotBytes)]);
        }
        if (MaxBatchDelay < TimeSpan.Zero || MaxBatchDelay > TimeSpan.FromMilliseconds(50))
        {
            yield return new ValidationResult("MaxBatchDelay must be between 0 and 50 ms (records are durable within 100 ms of a response's end).", [nameof(MaxBatchDelay)]);
        }
    }
}
