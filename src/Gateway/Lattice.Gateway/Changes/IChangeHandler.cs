namespace Lattice.Gateway.Changes;

/// <summary>
/// A store with an in-memory snapshot that the change feed keeps current: it publishes its writes as changes of its
/// kinds, and applies changes of those kinds — its own and other nodes' — by reading the database again.
/// </summary>
public interface IChangeHandler
{
    /// <summary>The <see cref="ChangeKinds"/> this store owns.</summary>
    IReadOnlyCollection<string> Kinds { get; }

    /// <summary>
    /// Brings the snapshot up to date with <paramref name="changes"/> (only of <see cref="Kinds"/>, oldest first, possibly
    /// repeated): idempotent, since it re-reads what they name rather than replaying them.
    /// </summary>
    Task ApplyAsync(IReadOnlyList<ChangeEntity> changes, CancellationToken cancellationToken);

    /// <summary>Rebuilds the whole snapshot from the database (at start-up, or after changes were pruned unread).</summary>
    Task ReloadAsync(CancellationToken cancellationToken);
}
