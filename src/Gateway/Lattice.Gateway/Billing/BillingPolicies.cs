using System.Collections.Frozen;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Persistence;
using Microsoft.EntityFrameworkCore;

namespace Lattice.Gateway.Billing;

/// <summary>A budget as admission sees it.</summary>
public sealed record BudgetPolicy(string Id, string WorkspaceId, string Scope, string SubjectId, long AmountPicoUsd);

/// <summary>One budget a request is charged against; for <see cref="BudgetScopes.AppUser"/> budgets, the user's own share.</summary>
public readonly record struct BudgetLine(BudgetPolicy Budget, string? UserId);

/// <summary>
/// The limits and budgets in force, as a snapshot read without locks on the request path: loaded at start-up and
/// rebuilt after every write to them (the admin API calls <see cref="ReloadAsync"/>).
/// </summary>
public sealed class BillingPolicies(IServiceScopeFactory scopes)
{
    private volatile Snapshot _current = Snapshot.Empty;
    private readonly SemaphoreSlim _reloadGate = new(1, 1);

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
        Limits? own = null;
        string? ownKey = null;
        if (caller.Kind == CredentialKind.ApiKey)
        {
            if (s.KeyLimits.TryGetValue(caller.CredentialId, out own))
            {
                ownKey = "k:" + caller.CredentialId;
            }
        }
        else if (caller.ClientId is { } app && s.AppLimits.TryGetValue(app, out own))
        {
            ownKey = "a:" + app + ":" + caller.UserId;
        }
        var hasWorkspace = s.WorkspaceLimits.TryGetValue(caller.WorkspaceId, out var workspace);
        return (ownKey, hasWorkspace) switch
        {
            (null, false) => [],
            (null, true) => [new LimitSubject("w:" + caller.WorkspaceId, workspace!)],
            (_, false) => [new LimitSubject(ownKey, own!)],
            _ => [new LimitSubject(ownKey, own!), new LimitSubject("w:" + caller.WorkspaceId, workspace!)],
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
        var lines = new List<BudgetLine>(2);
        if (s.Budgets.TryGetValue((BudgetScopes.Workspace, caller.WorkspaceId), out var ws))
        {
            lines.Add(new BudgetLine(ws, null));
        }
        if (caller.Kind == CredentialKind.ApiKey)
        {
            if (s.Budgets.TryGetValue((BudgetScopes.Key, caller.CredentialId), out var key))
            {
                lines.Add(new BudgetLine(key, null));
            }
        }
        else if (caller.ClientId is { } app)
        {
            if (s.Budgets.TryGetValue((BudgetScopes.App, app), out var whole))
            {
                lines.Add(new BudgetLine(whole, null));
            }
            if (s.Budgets.TryGetValue((BudgetScopes.AppUser, app), out var each) && caller.UserId is { } user)
            {
                lines.Add(new BudgetLine(each, user));
            }
        }
        return lines.Count == 0 ? [] : [.. lines];
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
                Read(keys.Select(k => (k.Id, k.Limits))),
                Read(apps.Select(a => (a.ClientId, a.Limits))),
                Read(workspaces.Select(w => (w.Id, w.Limits))),
                budgets.ToFrozenDictionary(b => (b.Scope, b.SubjectId), b => new BudgetPolicy(b.Id, b.WorkspaceId, b.Scope, b.SubjectId, b.AmountPicoUsd)));
        }
        finally
        {
            _reloadGate.Release();
        }
    }

    private static FrozenDictionary<string, Limits> Read(IEnumerable<(string Id, string? Json)> rows)
    {
        var map = new Dictionary<string, Limits>(StringComparer.Ordinal);
        foreach (var (id, json) in rows)
        {
            if (LimitsJson.FromStored(json) is { } limits)
            {
                map[id] = limits;
            }
        }
        return map.ToFrozenDictionary(StringComparer.Ordinal);
    }

    private sealed class Snapshot(
        FrozenDictionary<string, Limits> keyLimits,
        FrozenDictionary<string, Limits> appLimits,
        FrozenDictionary<string, Limits> workspaceLimits,
        FrozenDictionary<(string Scope, string SubjectId), BudgetPolicy> budgets)
    {
        public static readonly Snapshot Empty = new(FrozenDictionary<string, Limits>.Empty, FrozenDictionary<string, Limits>.Empty,
            FrozenDictionary<string, Limits>.Empty, FrozenDictionary<(string, string), BudgetPolicy>.Empty);

        public FrozenDictionary<string, Limits> KeyLimits { get; } = keyLimits;
        public FrozenDictionary<string, Limits> AppLimits { get; } = appLimits;
        public FrozenDictionary<string, Limits> WorkspaceLimits { get; } = workspaceLimits;
        public FrozenDictionary<(string Scope, string SubjectId), BudgetPolicy> Budgets { get; } = budgets;
        public FrozenDictionary<string, BudgetPolicy> BudgetsById { get; } = budgets.Values.ToFrozenDictionary(b => b.Id, StringComparer.Ordinal);
        public bool IsEmpty { get; } = keyLimits.Count == 0 && appLimits.Count == 0 && workspaceLimits.Count == 0;
    }
}
