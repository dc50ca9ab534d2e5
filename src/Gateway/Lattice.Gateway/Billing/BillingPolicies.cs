using System.Collections.Frozen;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Changes;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Billing;

/// <summary>A budget as admission sees it.</summary>
public sealed record BudgetPolicy(string Id, string WorkspaceId, string Scope, string SubjectId, long AmountPicoUsd);

/// <summary>One budget a request is charged against; for <see cref="BudgetScopes.AppUser"/> budgets, the user's own share.</summary>
public readonly record struct BudgetLine(BudgetPolicy Budget, string? UserId);

/// <summary>
/// The limits and budgets in force: their writes (a key's limits are written with the key, by
/// <see cref="ApiKeyStore"/>), and a snapshot read without locks on the request path, loaded at start-up and rebuilt
/// whenever a change to them is applied — this node's at once, other nodes' from the change feed.
/// </summary>
/// <remarks>A batch of changes is applied by one rebuild (four small reads: only rows that carry limits, and budgets).</remarks>
public sealed class BillingPolicies(IServiceScopeFactory scopes, ChangeFeed feed, TimeProvider time) : IChangeHandler
{
    private volatile Snapshot _current = Snapshot.Empty;
    private readonly SemaphoreSlim _reloadGate = new(1, 1);

    public IReadOnlyCollection<string> Kinds { get; } = [ChangeKinds.Limits, ChangeKinds.Budget];

    public Task ApplyAsync(IReadOnlyList<ChangeEntity> changes, CancellationToken cancellationToken) => ReloadAsync(cancellationToken);

    /// <summary>The entity id of a change to a key's limits.</summary>
    public static string KeySubject(string keyId) => "key:" + keyId;

    // ---- writes ----

    /// <summary>Sets a workspace's limits (stored form; null for none); the workspace, or null when there is none.</summary>
    public Task<WorkspaceEntity?> SetWorkspaceLimitsAsync(string workspaceId, string? limits, CancellationToken cancellationToken = default) => feed.WriteAsync(async db =>
    {
        if (await db.Workspaces.FindAsync([workspaceId], cancellationToken) is not { } ws)
        {
            return null;
        }
        ws.Limits = limits;
        feed.Record(db, ChangeKinds.Limits, "workspace:" + ws.Id, ws.Id);
        return ws;
    }, cancellationToken);

    /// <summary>Sets an app's limits, held for each of its users (stored form; null for none); the app, or null when there is none.</summary>
    public Task<OAuthAppEntity?> SetAppLimitsAsync(string clientId, string? limits, CancellationToken cancellationToken = default) => feed.WriteAsync(async db =>
    {
        if (await db.OAuthApps.FindAsync([clientId], cancellationToken) is not { } app)
        {
            return null;
        }
        app.Limits = limits;
        feed.Record(db, ChangeKinds.Limits, "app:" + app.ClientId, app.WorkspaceId);
        return app;
    }, cancellationToken);

    /// <summary>Stores a new budget and publishes it.</summary>
    public Task AddBudgetAsync(BudgetEntity budget, CancellationToken cancellationToken = default) => feed.WriteAsync(db =>
    {
        db.Budgets.Add(budget);
        feed.Record(db, ChangeKinds.Budget, budget.Id, budget.WorkspaceId);
        return Task.FromResult(budget);
    }, cancellationToken);

    /// <summary>Changes a budget; the budget as it now stands, or null when there is none.</summary>
    public Task<BudgetEntity?> UpdateBudgetAsync(string budgetId, Action<BudgetEntity> change, CancellationToken cancellationToken = default) => feed.WriteAsync(async db =>
    {
        if (await db.Budgets.FindAsync([budgetId], cancellationToken) is not { } budget)
        {
            return null;
        }
        change(budget);
        budget.UpdatedAt = time.GetUtcNow();
        feed.Record(db, ChangeKinds.Budget, budget.Id, budget.WorkspaceId);
        return budget;
    }, cancellationToken);

    /// <summary>Deletes a budget; false when there is none.</summary>
    public Task<bool> DeleteBudgetAsync(string budgetId, CancellationToken cancellationToken = default) => feed.WriteAsync(async db =>
    {
        if (await db.Budgets.FindAsync([budgetId], cancellationToken) is not { } budget)
        {
            return false;
        }
        db.Budgets.Remove(budget);
        feed.Record(db, ChangeKinds.Budget, budget.Id, budget.WorkspaceId);
        return true;
    }, cancellationToken);

    // ---- the snapshot ----

    /// <summary>
    /// The limits that apply to <paramref name="caller"/>, tightest scope first: its key (or its app, for this user),
    /// then its workspace. Empty when none do.
    /// </summary>
    public LimitSubject[] LimitsFor(Caller caller)
    {
        var s = _current;
        if (s.IsEmpty)
        {
            return [];
        }
        LimitSubject? own = null;
        if (caller.Kind == CredentialKind.ApiKey)
        {
            if (s.KeyLimits.TryGetValue(caller.CredentialId, out var key))
            {
                own = key;
            }
        }
        else if (caller.ClientId is { } app && s.AppLimits.TryGetValue(app, out var each))
        {
            // An app's limits hold for each of its users: the user's own counters.
            own = new LimitSubject(each.Key + ":" + caller.UserId, each.Limits);
        }
        var hasWorkspace = s.WorkspaceLimits.TryGetValue(caller.WorkspaceId, out var workspace);
        return (own, hasWorkspace) switch
        {
            (null, false) => [],
            (null, true) => [workspace],
            ({ } o, false) => [o],
            ({ } o, true) => [o, workspace],
        };
    }

    /// <summary>The budgets <paramref name="caller"/>'s requests are charged against. Empty when none are.</summary>
    public BudgetLine[] BudgetsFor(Caller caller)
    {
        var s = _current;
        if (s.Budgets.Count == 0)
        {
            return [];
        }
        s.Budgets.TryGetValue((BudgetScopes.Workspace, caller.WorkspaceId), out var ws);
        BudgetPolicy? key = null, whole = null, each = null;
        if (caller.Kind == CredentialKind.ApiKey)
        {
            s.Budgets.TryGetValue((BudgetScopes.Key, caller.CredentialId), out key);
        }
        else if (caller.ClientId is { } app)
        {
            s.Budgets.TryGetValue((BudgetScopes.App, app), out whole);
            if (caller.UserId is not null)
            {
                s.Budgets.TryGetValue((BudgetScopes.AppUser, app), out each);
            }
        }
        var count = (ws is null ? 0 : 1) + (key is null ? 0 : 1) + (whole is null ? 0 : 1) + (each is null ? 0 : 1);
        if (count == 0)
        {
            return [];
        }
        var lines = new BudgetLine[count];
        var i = 0;
        foreach (var budget in (ReadOnlySpan<BudgetPolicy?>)[ws, key, whole])
        {
            if (budget is not null)
            {
                lines[i++] = new BudgetLine(budget, null);
            }
        }
        if (each is not null)
        {
            lines[i] = new BudgetLine(each, caller.UserId);
        }
        return lines;
    }

    /// <summary>A budget by id, as currently in force.</summary>
    public BudgetPolicy? FindBudget(string id) => _current.BudgetsById.GetValueOrDefault(id);

    public async Task ReloadAsync(CancellationToken cancellationToken = default)
    {
        await _reloadGate.WaitAsync(cancellationToken);
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
            var keys = await db.ApiKeys.AsNoTracking().Where(k => k.Limits != null && k.RevokedAt == null)
                .Select(k => new { k.Id, k.Limits }).ToListAsync(cancellationToken);
            var apps = await db.OAuthApps.AsNoTracking().Where(a => a.Limits != null)
                .Select(a => new { a.ClientId, a.Limits }).ToListAsync(cancellationToken);
            var workspaces = await db.Workspaces.AsNoTracking().Where(w => w.Limits != null)
                .Select(w => new { w.Id, w.Limits }).ToListAsync(cancellationToken);
            var budgets = await db.Budgets.AsNoTracking().ToListAsync(cancellationToken);
            _current = new Snapshot(
                Read("k:", keys.Select(k => (k.Id, k.Limits))),
                Read("a:", apps.Select(a => (a.ClientId, a.Limits))),
                Read("w:", workspaces.Select(w => (w.Id, w.Limits))),
                budgets.ToFrozenDictionary(b => (b.Scope, b.SubjectId), b => new BudgetPolicy(b.Id, b.WorkspaceId, b.Scope, b.SubjectId, b.AmountPicoUsd)));
        }
        finally
        {
            _reloadGate.Release();
        }
    }

    /// <summary>Each row's limits as the subject its counters are kept under (<paramref name="prefix"/> + id), made once per snapshot.</summary>
    private static FrozenDictionary<string, LimitSubject> Read(string prefix, IEnumerable<(string Id, string? Json)> rows)
    {
        var map = new Dictionary<string, LimitSubject>(StringComparer.Ordinal);
        foreach (var (id, json) in rows)
        {
            if (LimitsJson.FromStored(json) is { } limits)
            {
                map[id] = new LimitSubject(prefix + id, limits);
            }
        }
        return map.ToFrozenDictionary(StringComparer.Ordinal);
    }

    private sealed class Snapshot(
        FrozenDictionary<string, LimitSubject> keyLimits,
        FrozenDictionary<string, LimitSubject> appLimits,
        FrozenDictionary<string, LimitSubject> workspaceLimits,
        FrozenDictionary<(string Scope, string SubjectId), BudgetPolicy> budgets)
    {
        public static readonly Snapshot Empty = new(FrozenDictionary<string, LimitSubject>.Empty, FrozenDictionary<string, LimitSubject>.Empty,
            FrozenDictionary<string, LimitSubject>.Empty, FrozenDictionary<(string, string), BudgetPolicy>.Empty);

        public FrozenDictionary<string, LimitSubject> KeyLimits { get; } = keyLimits;
        public FrozenDictionary<string, LimitSubject> AppLimits { get; } = appLimits;
        public FrozenDictionary<string, LimitSubject> WorkspaceLimits { get; } = workspaceLimits;
        public FrozenDictionary<(string Scope, string SubjectId), BudgetPolicy> Budgets { get; } = budgets;
        public FrozenDictionary<string, BudgetPolicy> BudgetsById { get; } = budgets.Values.ToFrozenDictionary(b => b.Id, StringComparer.Ordinal);
        public bool IsEmpty { get; } = keyLimits.Count == 0 && appLimits.Count == 0 && workspaceLimits.Count == 0;
    }
}
