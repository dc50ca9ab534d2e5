using System.ComponentModel.DataAnnotations;

namespace Lattice.Gateway.Responses;

/// <summary>The <c>Lattice:Responses</c> configuration section: how long kept responses (<c>store: true</c>) live.</summary>
public sealed class ResponsesOptions
{
    public const string Section = "Lattice:Responses";

    /// <summary>Days a kept response (and the conversation it ends) stays retrievable and continuable.</summary>
    [Range(1, 3650)]
    public int RetentionDays { get; set; } = 30;

    /// <summary>How often expired responses are deleted.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "7.00:00:00")]
    public TimeSpan PruneInterval { get; set; } = TimeSpan.FromHours(1);

    /// <summary>Most responses deleted in one statement, so pruning never holds the database for long.</summary>
    [Range(1, 100_000)]
    public int PruneBatch { get; set; } = 1000;
}
