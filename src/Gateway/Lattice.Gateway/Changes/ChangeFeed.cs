using System.Collections.Concurrent;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Changes;

/// <summary>
/// The change feed: stores record a change row beside each write and commit both in one transaction
/// (<see cref="Record"/> + <see cref="SaveAsync"/>, or <see cref="WriteAsync{T}"/>); the writing node applies the change
/// at once, before its response, and every other node reads it from the <c>changes</c> table
/// (<see cref="ChangeFeedPoller"/>) and applies it through the store that owns its kind (<see cref="IChangeHandler"/>).
/// </summary>
public sealed partial class ChangeFeed(IServiceProvider services, IServiceScopeFactory scopes, IChangeSignal signal, TimeProvider time,
    ILogger<ChangeFeed> logger)
{
    /// <summary>How long change rows are kept. A node that fell further behind (its database reads failed for that long) reloads everything.</summary>
    public static readonly TimeSpan Retention = TimeSpan.FromHours(1);

    /// <summary>How long the cursor waits below a missing id for its row to commit (see <see cref="CatchUpAsync"/>).</summary>
    public static readonly TimeSpan GapGrace = TimeSpan.FromSeconds(5);

    private const int Batch = 1_000;

    // Per instance, not static: a compiled query binds to the first model it runs on, and a process may hold nodes on
    // SQLite and on PostgreSQL (the tests do).
    private readonly Func<LatticeDbContext, long, IAsyncEnumerable<ChangeEntity>> _newerThan = EF.CompileAsyncQuery(
        (LatticeDbContext db, long last) => db.Changes.AsNoTracking().Where(c => c.Id > last).OrderBy(c => c.Id).Take(Batch));

    private Dictionary<string, IChangeHandler>? _handlers;
    private long _cursor;
    // Changes this node wrote and applied at once: the poller passes over them rather than applying them twice.
    private readonly ConcurrentDictionary<long, byte> _appliedHere = new();
    // The poller's alone (under _catchUpGate): ids past the cursor already applied, and missing ids below them with
    // when each was first noticed missing.
    private readonly SemaphoreSlim _catchUpGate = new(1, 1);
    private readonly HashSet<long> _readAhead = [];
    private readonly Dictionary<long, DateTimeOffset> _gaps = [];

    /// <summary>The id of the last change row this node has read from the table.</summary>
    public long Cursor => Interlocked.Read(ref _cursor);

    /// <summary>Adds a change row to <paramref name="db"/>'s pending writes: it commits (or not) with them.</summary>
    public ChangeEntity Record(LatticeDbContext db, string kind, string entityId, string? workspaceId = null)
    {
        var change = new ChangeEntity { Kind = kind, EntityId = entityId, WorkspaceId = workspaceId, At = time.GetUtcNow() };
        db.Changes.Add(change);
        return change;
    }

    /// <summary>
    /// Commits <paramref name="db"/>'s writes with the change rows recorded among them, in one transaction; then applies
    /// those changes on this node (so the writer's next request sees them) and signals the other nodes.
    /// </summary>
    public async Task SaveAsync(LatticeDbContext db, CancellationToken cancellationToken = default)
    {
        List<ChangeEntity>? changes = null;
        foreach (var entry in db.ChangeTracker.Entries<ChangeEntity>())
        {
            if (entry.State == EntityState.Added)
            {
                (changes ??= []).Add(entry.Entity);
            }
        }
        await db.SaveChangesAsync(cancellationToken);
        if (changes is null)
        {
            return;
        }
        try
        {
            await ApplyAsync(changes, CancellationToken.None);
            foreach (var change in changes)
            {
                if (change.Id > Cursor)
                {
                    _appliedHere.TryAdd(change.Id, 0);
                }
            }
        }
        catch (Exception e)
        {
            // Committed: the write stands, and this node's poller applies it within an interval instead.
            LogApplyFailed(logger, e.Message);
        }
        await signal.PublishAsync(CancellationToken.None);
    }

    /// <summary>Runs <paramref name="write"/> on a fresh context, then <see cref="SaveAsync"/>: one transaction, applied here, published.</summary>
    public async Task<T> WriteAsync<T>(Func<LatticeDbContext, Task<T>> write, CancellationToken cancellationToken = default)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
        var result = await write(db);
        await SaveAsync(db, cancellationToken);
        return result;
    }

    /// <summary>Hands each change to the store that owns its kind, in one batch per store.</summary>
    public async Task ApplyAsync(IReadOnlyList<ChangeEntity> changes, CancellationToken cancellationToken)
    {
        var handlers = Handlers();
        foreach (var group in changes.GroupBy(c => handlers.GetValueOrDefault(c.Kind)))
        {
            if (group.Key is not { } handler)
            {
                // A kind a newer version writes: nothing here holds it.
                continue;
            }
            await handler.ApplyAsync(group.ToList(), cancellationToken);
        }
    }

    /// <summary>
    /// Where this node starts reading: the newest change now. Called before the snapshots are loaded, so a change
    /// committed while they load is applied again afterwards rather than missed.
    /// </summary>
    public async Task StartAsync(LatticeDbContext db, CancellationToken cancellationToken)
    {
        var newest = await db.Changes.MaxAsync(c => (long?)c.Id, cancellationToken) ?? 0;
        Interlocked.Exchange(ref _cursor, newest);
    }

    /// <summary>Rebuilds every store's snapshot.</summary>
    public async Task ReloadAllAsync(CancellationToken cancellationToken)
    {
        foreach (var handler in Handlers().Values.Distinct())
        {
            await handler.ReloadAsync(cancellationToken);
        }
    }

    /// <summary>
    /// Reads and applies every change after <see cref="Cursor"/>; returns how many were read. One caller at a time
    /// (the poller; tests with the poller stopped).
    /// </summary>
    /// <remarks>
    /// Ids are handed out when a row is inserted but become visible when its transaction commits, which on a database
    /// with concurrent writers (PostgreSQL) is not always in id order: a missing id below one already read may be a
    /// transaction still committing, or one that rolled back. The cursor therefore stops below such a gap for up to
    /// <see cref="GapGrace"/> — rows past it are applied meanwhile, once each — and moves on when the row appears or
    /// the grace ends. (SQLite has one writer at a time and leaves no gaps.)
    /// </remarks>
    public async Task<int> CatchUpAsync(LatticeDbContext db, CancellationToken cancellationToken)
    {
        await _catchUpGate.WaitAsync(cancellationToken);
        try
        {
            var total = 0;
            while (true)
            {
                var last = Cursor;
                var read = new List<ChangeEntity>();
                await foreach (var row in _newerThan(db, last).WithCancellation(cancellationToken))
                {
                    read.Add(row);
                }
                if (read.Count == 0)
                {
                    return total;
                }
                total += read.Count;
                if (read[0].Id > last + 1 && _readAhead.Count == 0 && _gaps.Count == 0
                    && await db.Changes.MinAsync(c => c.Id, cancellationToken) > last + 1)
                {
                    // Rows this node never read were pruned (it could not reach the database for longer than the
                    // retention): what they said is lost, so everything is read again.
                    LogFellBehind(logger, last);
                    await ReloadAllAsync(cancellationToken);
                    Interlocked.Exchange(ref _cursor, read[^1].Id);
                }
                else
                {
                    var fresh = new List<ChangeEntity>(read.Count);
                    foreach (var row in read)
                    {
                        if (_readAhead.Add(row.Id) && !_appliedHere.TryRemove(row.Id, out _))
                        {
                            fresh.Add(row);
                        }
                    }
                    if (fresh.Count > 0)
                    {
                        await ApplyAsync(fresh, cancellationToken);
                    }
                    Interlocked.Exchange(ref _cursor, Advance(last, read[^1].Id));
                }
                if (read.Count < Batch || Cursor == last)
                {
                    // Done, or held at a gap with a full batch past it: the next poll reads on.
                    return total;
                }
            }
        }
        finally
        {
            _catchUpGate.Release();
        }
    }

    /// <summary>Moves the cursor up from <paramref name="cursor"/> over ids read and gaps whose grace has ended.</summary>
    private long Advance(long cursor, long newest)
    {
        var now = time.GetUtcNow();
        while (cursor < newest)
        {
            var next = cursor + 1;
            if (_readAhead.Remove(next))
            {
                _gaps.Remove(next);
                cursor = next;
                continue;
            }
            if (!_gaps.TryGetValue(next, out var noticed))
            {
                _gaps[next] = noticed = now;
            }
            if (now - noticed < GapGrace)
            {
                break;
            }
            // Rolled back, most likely (or committing for longer than any store's write takes): passed over.
            _gaps.Remove(next);
            cursor = next;
        }
        return cursor;
    }

    /// <summary>Deletes change rows older than <see cref="Retention"/>; returns how many went.</summary>
    public async Task<int> PruneAsync(LatticeDbContext db, CancellationToken cancellationToken)
    {
        var cursor = Cursor;
        foreach (var id in _appliedHere.Keys)
        {
            // Left behind when the poller read a change before its writer noted it had applied it.
            if (id <= cursor)
            {
                _appliedHere.TryRemove(id, out _);
            }
        }
        var cutoff = time.GetUtcNow() - Retention;
        return await db.Changes.Where(c => c.At < cutoff).ExecuteDeleteAsync(cancellationToken);
    }

    private Dictionary<string, IChangeHandler> Handlers()
    {
        // Resolved on first use: the stores depend on the feed to publish, so the feed cannot take them in its constructor.
        if (_handlers is { } handlers)
        {
            return handlers;
        }
        handlers = new Dictionary<string, IChangeHandler>(StringComparer.Ordinal);
        foreach (var handler in services.GetServices<IChangeHandler>())
        {
            foreach (var kind in handler.Kinds)
            {
                handlers.Add(kind, handler);
            }
        }
        return _handlers = handlers;
    }

    [LoggerMessage(EventId = 9603, Level = LogLevel.Warning, Message = "Applying this node's own committed changes failed; the poller applies them: {Error}")]
    private static partial void LogApplyFailed(ILogger logger, string error);

    [LoggerMessage(EventId = 9601, Level = LogLevel.Warning, Message = "Change rows after {Cursor} were pruned before this node read them; reloading every store")]
    private static partial void LogFellBehind(ILogger logger, long cursor);
}
