using System.ComponentModel.DataAnnotations;

namespace Lattice.Gateway.Runtimes;

/// <summary>The <c>Lattice:Runtimes</c> configuration section.</summary>
public sealed class RuntimeOptions
{
    public const string Section = "Lattice:Runtimes";

    /// <summary>
    /// Personal runtimes one workspace may have (unpaired and paired, not revoked): creating or pairing one more is
    /// refused with 409 <c>runtime_limit_reached</c>. Every link costs the gateway memory (see
    /// <see cref="RuntimeLinkLimits"/>), so a developer key cannot open links without end. Hosted runtimes (the
    /// operator's) are not counted.
    /// </summary>
    [Range(1, 1_000_000)]
    public int MaxPerWorkspace { get; set; } = 100;
}
