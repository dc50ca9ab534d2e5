using System.Globalization;
using System.Text.Json;
using Lattice.Gateway.Admin;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Billing.Alerts;
using Lattice.Gateway.Metering;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Persistence;
using Lattice.Protocol;
using Microsoft.EntityFrameworkCore;
using Lattice.Gateway.ApiReference;

namespace Lattice.Gateway.Billing;

/// <summary>
/// The admin API for rate limits (on workspaces, keys and apps) and budgets. Workspace admins manage their own
/// workspace's; operators every workspace's. Another workspace's key, app or budget is not found.
/// </summary>
public static class BillingAdminEndpoints
{
    public static void Map(RouteGroupBuilder admin, RouteGroupBuilder workspace)
    {
        _ = admin;
        workspace.MapGet("/workspaces/{workspaceId}/limits", GetWorkspaceLimitsAsync).Describe("Admin: limits and budgets", "GetWorkspaceLimits", "A workspace's rate limits");
        workspace.MapPut("/workspaces/{workspaceId}/limits", SetWorkspaceLimitsAsync).Describe("Admin: limits and budgets", "SetWorkspaceLimits", "Set a workspace's rate limits");
        workspace.MapGet("/keys/{keyId}/limits", GetKeyLimitsAsync).Describe("Admin: limits and budgets", "GetKeyLimits", "A key's rate limits");
        workspace.MapPut("/keys/{keyId}/limits", SetKeyLimitsAsync).Describe("Admin: limits and budgets", "SetKeyLimits", "Set a key's rate limits");
        workspace.MapPatch("/keys/{keyId}", UpdateKeyAsync).Describe("Admin: limits and budgets", "UpdateKey", "Change a key's name or limits");
        workspace.MapGet("/apps/{clientId}/limits", GetAppLimitsAsync).Describe("Admin: limits and budgets", "GetAppLimits", "An OAuth app's rate limits");
        workspace.MapPut("/apps/{clientId}/limits", SetAppLimitsAsync).Describe("Admin: limits and budgets", "SetAppLimits", "Set an OAuth app's rate limits");

        workspace.MapPost("/workspaces/{workspaceId}/budgets", CreateBudgetAsync).Describe("Admin: limits and budgets", "CreateBudget", "Create a budget");
        workspace.MapGet("/workspaces/{workspaceId}/budgets", ListBudgetsAsync).Describe("Admin: limits and budgets", "ListBudgets", "List a workspace's budgets");
        workspace.MapGet("/budgets/{budgetId}", GetBudgetAsync).Describe("Admin: limits and budgets", "GetBudget", "Get a budget and what it has spent");
        workspace.MapPatch("/budgets/{budgetId}", UpdateBudgetAsync).Describe("Admin: limits and budgets", "UpdateBudget", "Change a budget");
        workspace.MapDelete("/budgets/{budgetId}", DeleteBudgetAsync).Describe("Admin: limits and budgets", "DeleteBudget", "Delete a budget");
    }

    // ---- limits ----

    private static async Task<IResult> GetWorkspaceLimitsAsync(HttpContext context, string workspaceId, LatticeDbContext db) =>
        AdminEndpoints.Manages(context, workspaceId) && await db.Workspaces.FindAsync(workspaceId) is { } ws
            ? LimitsResult(BudgetScopes.Workspace, ws.Id, ws.Limits)
            : AdminEndpoints.Error(AdminEndpoints.WorkspaceNotFound(workspaceId));

    private static async Task<IResult> SetWorkspaceLimitsAsync(HttpContext context, string workspaceId, JsonElement body, LatticeDbContext db, BillingPolicies policies)
    {
        if (!AdminEndpoints.Manages(context, workspaceId) || !await db.Workspaces.AnyAsync(w => w.Id == workspaceId))
        {
            return AdminEndpoints.Error(AdminEndpoints.WorkspaceNotFound(workspaceId));
        }
        if (!LimitsJson.TryRead(body, "limits", out var limits, out var error))
        {
            return AdminEndpoints.Error(error);
        }
        return await policies.SetWorkspaceLimitsAsync(workspaceId, LimitsJson.ToStored(limits)) is { } ws
            ? LimitsResult(BudgetScopes.Workspace, ws.Id, ws.Limits)
            : AdminEndpoints.Error(AdminEndpoints.WorkspaceNotFound(workspaceId));
    }

    private static async Task<IResult> GetKeyLimitsAsync(HttpContext context, string keyId, LatticeDbContext db) =>
        await FindKeyAsync(context, keyId, db) is { } key ? LimitsResult(BudgetScopes.Key, key.Id, key.Limits) : AdminEndpoints.Error(KeyNotFound(keyId));

    private static async Task<IResult> SetKeyLimitsAsync(HttpContext context, string keyId, JsonElement body, LatticeDbContext db, ApiKeyStore keys)
    {
        if (await FindKeyAsync(context, keyId, db) is null)
        {
            return AdminEndpoints.Error(KeyNotFound(keyId));
        }
        if (!LimitsJson.TryRead(body, "limits", out var limits, out var error))
        {
            return AdminEndpoints.Error(error);
        }
        var stored = LimitsJson.ToStored(limits);
        return await keys.UpdateAsync(keyId, k => k.Limits = stored) is { } key
            ? LimitsResult(BudgetScopes.Key, key.Id, key.Limits)
            : AdminEndpoints.Error(KeyNotFound(keyId));
    }

    /// <summary><c>PATCH /admin/v1/keys/{id}</c>: a new name and/or new limits (<c>null</c> or <c>{}</c> removes them).</summary>
    private static async Task<IResult> UpdateKeyAsync(HttpContext context, string keyId, JsonElement body, LatticeDbContext db, ApiKeyStore keys)
    {
        if (await FindKeyAsync(context, keyId, db) is null)
        {
            return AdminEndpoints.Error(KeyNotFound(keyId));
        }
        if (body.ValueKind != JsonValueKind.Object)
        {
            return AdminEndpoints.Error(GatewayError.InvalidRequest("The body must be an object with 'name' and/or 'limits'.", null, ErrorCodes.InvalidType));
        }
        string? newName = null, newLimits = null;
        var limitsGiven = false;
        foreach (var property in body.EnumerateObject())
        {
            switch (property.Name)
            {
                case "name":
                    if (property.Value.ValueKind != JsonValueKind.String || property.Value.GetString()!.Trim() is not { Length: > 0 and <= 200 } name)
                    {
                        return AdminEndpoints.Error(GatewayError.InvalidRequest("'name' must be 1 to 200 characters.", "name"));
                    }
                    newName = name;
                    break;
                case "limits":
                    if (!LimitsJson.TryRead(property.Value, "limits", out var limits, out var error))
                    {
                        return AdminEndpoints.Error(error);
                    }
                    newLimits = LimitsJson.ToStored(limits);
                    limitsGiven = true;
                    break;
                default:
                    return AdminEndpoints.Error(GatewayError.InvalidRequest($"Unknown parameter '{property.Name}'; a key's 'name' and 'limits' can change.", property.Name, ErrorCodes.UnknownParameter));
            }
        }
        var key = await keys.UpdateAsync(keyId, k =>
        {
            k.Name = newName ?? k.Name;
            if (limitsGiven)
            {
                k.Limits = newLimits;
            }
        });
        return key is null ? AdminEndpoints.Error(KeyNotFound(keyId)) : AdminEndpoints.Json(AdminEndpoints.ToDto(key), AdminJsonContext.Default.KeyDto);
    }

    private static async Task<IResult> GetAppLimitsAsync(HttpContext context, string clientId, LatticeDbContext db) =>
        await FindAppAsync(context, clientId, db) is { } app ? LimitsResult(BudgetScopes.App, app.ClientId, app.Limits) : AdminEndpoints.Error(AppNotFound(clientId));

    private static async Task<IResult> SetAppLimitsAsync(HttpContext context, string clientId, JsonElement body, LatticeDbContext db, BillingPolicies policies)
    {
        if (await FindAppAsync(context, clientId, db) is null)
        {
            return AdminEndpoints.Error(AppNotFound(clientId));
        }
        if (!LimitsJson.TryRead(body, "limits", out var limits, out var error))
        {
            return AdminEndpoints.Error(error);
        }
        return await policies.SetAppLimitsAsync(clientId, LimitsJson.ToStored(limits)) is { } app
            ? LimitsResult(BudgetScopes.App, app.ClientId, app.Limits)
            : AdminEndpoints.Error(AppNotFound(clientId));
    }

    private static IResult LimitsResult(string scope, string id, string? stored) =>
        AdminEndpoints.Json(new LimitsDto(scope, id, LimitsJson.FromStored(stored)), AdminJsonContext.Default.LimitsDto);

    // ---- budgets ----

    private static async Task<IResult> CreateBudgetAsync(HttpContext context, string workspaceId, JsonElement body, LatticeDbContext db,
        BillingPolicies policies, IBudgetCounters counters, BudgetAlertSecrets secrets, TimeProvider time)
    {
        if (!AdminEndpoints.Manages(context, workspaceId) || await db.Workspaces.FindAsync(workspaceId) is null)
        {
            return AdminEndpoints.Error(AdminEndpoints.WorkspaceNotFound(workspaceId));
        }
        if (body.ValueKind != JsonValueKind.Object)
        {
            return AdminEndpoints.Error(GatewayError.InvalidRequest("The body must be an object with 'scope', 'subject_id' and 'amount_usd'.", null, ErrorCodes.InvalidType));
        }
        string? scope = null, subject = null, alertUrl = null;
        long? amount = null;
        foreach (var property in body.EnumerateObject())
        {
            switch (property.Name)
            {
                case "scope":
                    scope = property.Value.ValueKind == JsonValueKind.String ? property.Value.GetString() : null;
                    if (scope is null || Array.IndexOf(BudgetScopes.All, scope) < 0)
                    {
                        return AdminEndpoints.Error(GatewayError.InvalidRequest($"'scope' must be one of: {string.Join(", ", BudgetScopes.All)}.", "scope"));
                    }
                    break;
                case "subject_id":
                    subject = property.Value.ValueKind == JsonValueKind.String ? property.Value.GetString() : property.Value.ValueKind == JsonValueKind.Null ? null : "";
                    if (subject == "")
                    {
                        return AdminEndpoints.Error(GatewayError.InvalidRequest("'subject_id' must be a key id or an app's client id.", "subject_id", ErrorCodes.InvalidType));
                    }
                    break;
                case "amount_usd":
                    if (!TryReadAmount(property.Value, out var pico, out var amountError))
                    {
                        return AdminEndpoints.Error(amountError);
                    }
                    amount = pico;
                    break;
                case "period":
                    if (property.Value.ValueKind != JsonValueKind.String || property.Value.GetString() != "month")
                    {
                        return AdminEndpoints.Error(GatewayError.InvalidRequest("'period' must be 'month' (a calendar month, UTC).", "period"));
                    }
                    break;
                case "alert_url":
                    if (!TryReadAlertUrl(property.Value, out alertUrl, out var urlError))
                    {
                        return AdminEndpoints.Error(urlError);
                    }
                    break;
                default:
                    return AdminEndpoints.Error(GatewayError.InvalidRequest($"Unknown parameter '{property.Name}'.", property.Name, ErrorCodes.UnknownParameter));
            }
        }
        scope ??= BudgetScopes.Workspace;
        if (amount is null)
        {
            return AdminEndpoints.Error(GatewayError.InvalidRequest("'amount_usd' is required.", "amount_usd", ErrorCodes.MissingRequiredParameter));
        }
        switch (scope)
        {
            case BudgetScopes.Workspace:
                if (subject is not null && subject != workspaceId)
                {
                    return AdminEndpoints.Error(GatewayError.InvalidRequest("A workspace budget's 'subject_id' is the workspace's id, or absent.", "subject_id"));
                }
                subject = workspaceId;
                break;
            case BudgetScopes.Key:
                if (subject is null || !await db.ApiKeys.AnyAsync(k => k.Id == subject && k.WorkspaceId == workspaceId))
                {
                    return AdminEndpoints.Error(subject is null
                        ? GatewayError.InvalidRequest("A key budget needs 'subject_id': the key's id.", "subject_id", ErrorCodes.MissingRequiredParameter)
                        : KeyNotFound(subject));
                }
                break;
            default:
                if (subject is null || !await db.OAuthApps.AnyAsync(a => a.ClientId == subject && a.WorkspaceId == workspaceId))
                {
                    return AdminEndpoints.Error(subject is null
                        ? GatewayError.InvalidRequest("An app budget needs 'subject_id': the app's client id.", "subject_id", ErrorCodes.MissingRequiredParameter)
                        : AppNotFound(subject));
                }
                break;
        }
        if (await db.Budgets.AnyAsync(b => b.WorkspaceId == workspaceId && b.Scope == scope && b.SubjectId == subject))
        {
            return AdminEndpoints.Error(new GatewayError(StatusCodes.Status409Conflict, ErrorTypes.InvalidRequest, ErrorCodes.Conflict,
                $"This {scope} already has a budget; change it with PATCH /admin/v1/budgets/{{id}}.", "subject_id"));
        }
        var now = time.GetUtcNow();
        var budget = new BudgetEntity
        {
            Id = ApiKeySecrets.NewId("bud_"),
            WorkspaceId = workspaceId,
            Scope = scope,
            SubjectId = subject!,
            AmountPicoUsd = amount.Value,
            CreatedAt = now,
            UpdatedAt = now,
        };
        var secret = SetAlertUrl(budget, alertUrl, secrets);
        await policies.AddBudgetAsync(budget);
        return AdminEndpoints.Json(await ToDtoAsync(budget, null, counters, time) with { AlertSecret = secret }, AdminJsonContext.Default.BudgetDto, StatusCodes.Status201Created);
    }

    private static async Task<IResult> ListBudgetsAsync(HttpContext context, string workspaceId, LatticeDbContext db, IBudgetCounters counters, TimeProvider time)
    {
        if (!AdminEndpoints.Manages(context, workspaceId) || await db.Workspaces.FindAsync(workspaceId) is null)
        {
            return AdminEndpoints.Error(AdminEndpoints.WorkspaceNotFound(workspaceId));
        }
        var rows = await db.Budgets.AsNoTracking().Where(b => b.WorkspaceId == workspaceId).ToListAsync();
        var data = new List<BudgetDto>(rows.Count);
        foreach (var row in rows.OrderBy(b => b.CreatedAt))
        {
            data.Add(await ToDtoAsync(row, null, counters, time));
        }
        return AdminEndpoints.Json(new ListDto<BudgetDto>(data), AdminJsonContext.Default.ListDtoBudgetDto);
    }

    /// <summary><c>GET /admin/v1/budgets/{id}</c>; for a per-user app budget, <c>?user_id=</c> shows that user's spend.</summary>
    private static async Task<IResult> GetBudgetAsync(HttpContext context, string budgetId, [Microsoft.AspNetCore.Mvc.FromQuery(Name = "user_id")] string? userId, LatticeDbContext db, IBudgetCounters counters, TimeProvider time)
    {
        if (await FindBudgetAsync(context, budgetId, db) is not { } budget)
        {
            return AdminEndpoints.Error(BudgetNotFound(budgetId));
        }
        return AdminEndpoints.Json(await ToDtoAsync(budget, userId, counters, time), AdminJsonContext.Default.BudgetDto);
    }

    private static async Task<IResult> UpdateBudgetAsync(HttpContext context, string budgetId, JsonElement body, LatticeDbContext db,
        BillingPolicies policies, IBudgetCounters counters, BudgetAlertSecrets secrets, TimeProvider time)
    {
        if (await FindBudgetAsync(context, budgetId, db) is null)
        {
            return AdminEndpoints.Error(BudgetNotFound(budgetId));
        }
        if (body.ValueKind != JsonValueKind.Object)
        {
            return AdminEndpoints.Error(GatewayError.InvalidRequest("The body must be an object with 'amount_usd' and/or 'alert_url'.", null, ErrorCodes.InvalidType));
        }
        long? amount = null;
        var alertGiven = false;
        string? newAlertUrl = null;
        foreach (var property in body.EnumerateObject())
        {
            switch (property.Name)
            {
                case "amount_usd":
                    if (!TryReadAmount(property.Value, out var pico, out var amountError))
                    {
                        return AdminEndpoints.Error(amountError);
                    }
                    amount = pico;
                    break;
                case "alert_url":
                    if (!TryReadAlertUrl(property.Value, out newAlertUrl, out var urlError))
                    {
                        return AdminEndpoints.Error(urlError);
                    }
                    alertGiven = true;
                    break;
                default:
                    return AdminEndpoints.Error(GatewayError.InvalidRequest($"Unknown parameter '{property.Name}'; a budget's 'amount_usd' and 'alert_url' can change.", property.Name, ErrorCodes.UnknownParameter));
            }
        }
        string? secret = null;
        var budget = await policies.UpdateBudgetAsync(budgetId, b =>
        {
            b.AmountPicoUsd = amount ?? b.AmountPicoUsd;
            if (alertGiven && newAlertUrl != b.AlertUrl)
            {
                secret = SetAlertUrl(b, newAlertUrl, secrets);
            }
        });
        return budget is null
            ? AdminEndpoints.Error(BudgetNotFound(budgetId))
            : AdminEndpoints.Json(await ToDtoAsync(budget, null, counters, time) with { AlertSecret = secret }, AdminJsonContext.Default.BudgetDto);
    }

    private static async Task<IResult> DeleteBudgetAsync(HttpContext context, string budgetId, LatticeDbContext db, BillingPolicies policies)
    {
        if (await FindBudgetAsync(context, budgetId, db) is null || !await policies.DeleteBudgetAsync(budgetId))
        {
            return AdminEndpoints.Error(BudgetNotFound(budgetId));
        }
        return AdminEndpoints.Json(new DeletedDto(budgetId, "budget", true), AdminJsonContext.Default.DeletedDto);
    }

    private static async Task<BudgetDto> ToDtoAsync(BudgetEntity b, string? userId, IBudgetCounters counters, TimeProvider time)
    {
        var policy = new BudgetPolicy(b.Id, b.WorkspaceId, b.Scope, b.SubjectId, b.AmountPicoUsd);
        // A per-user budget's spend is each user's own: shown for the user asked about.
        BudgetStatus? status = b.Scope != BudgetScopes.AppUser || userId is not null
            ? await counters.StatusAsync(policy, b.Scope == BudgetScopes.AppUser ? userId : null, time.GetUtcNow(), CancellationToken.None)
            : null;
        var period = LocalBudgetCounters.PeriodStart(time.GetUtcNow());
        return new BudgetDto(b.Id, b.WorkspaceId, b.Scope, b.SubjectId, CostCalculator.FormatUsd(b.AmountPicoUsd), b.Period,
            period.ToUnixTimeSeconds(), period.AddMonths(1).ToUnixTimeSeconds(),
            status is { } s ? CostCalculator.FormatUsd(s.SpentPicoUsd) : null,
            status is { } r ? CostCalculator.FormatUsd(r.ReservedPicoUsd) : null,
            b.Scope == BudgetScopes.AppUser ? userId : null,
            b.CreatedAt.ToUnixTimeSeconds(),
            b.AlertUrl);
    }

    /// <summary><c>alert_url</c>: an absolute http(s) URL, or null (no alerts).</summary>
    private static bool TryReadAlertUrl(JsonElement value, out string? url, out GatewayError error)
    {
        url = null;
        error = default;
        if (value.ValueKind == JsonValueKind.Null)
        {
            return true;
        }
        url = value.ValueKind == JsonValueKind.String ? value.GetString() : null;
        return BudgetAlertSecrets.TryValidateUrl(url, out error);
    }

    /// <summary>
    /// Points the budget's alerts at <paramref name="url"/> with a new signing secret, returned to be shown once
    /// (only its protected form is stored); null removes alerts.
    /// </summary>
    private static string? SetAlertUrl(BudgetEntity budget, string? url, BudgetAlertSecrets secrets)
    {
        budget.AlertUrl = url;
        if (url is null)
        {
            budget.AlertSecret = null;
            return null;
        }
        var secret = BudgetAlertSecrets.NewSecret();
        budget.AlertSecret = secrets.Protect(secret);
        return secret;
    }

    /// <summary>USD as a JSON number or decimal string, 0 to 1,000,000,000, to the pico-dollar.</summary>
    private static bool TryReadAmount(JsonElement value, out long picoUsd, out GatewayError error)
    {
        picoUsd = 0;
        error = GatewayError.InvalidRequest("'amount_usd' must be an amount of USD from 0 to 1000000000 with at most 12 decimals, as a number or a decimal string.", "amount_usd");
        decimal usd;
        if (value.ValueKind == JsonValueKind.Number)
        {
            if (!value.TryGetDecimal(out usd))
            {
                return false;
            }
        }
        else if (value.ValueKind != JsonValueKind.String
            || !decimal.TryParse(value.GetString(), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out usd))
        {
            return false;
        }
        if (usd < 0 || usd > 1_000_000_000m || decimal.Round(usd, 12) != usd)
        {
            return false;
        }
        picoUsd = (long)(usd * CostCalculator.PicoPerUsd);
        return true;
    }

    private static async Task<ApiKeyEntity?> FindKeyAsync(HttpContext context, string keyId, LatticeDbContext db) =>
        await db.ApiKeys.FindAsync(keyId) is { } key && AdminEndpoints.Manages(context, key.WorkspaceId) ? key : null;

    private static async Task<OAuthAppEntity?> FindAppAsync(HttpContext context, string clientId, LatticeDbContext db) =>
        await db.OAuthApps.FindAsync(clientId) is { } app && AdminEndpoints.Manages(context, app.WorkspaceId) ? app : null;

    private static async Task<BudgetEntity?> FindBudgetAsync(HttpContext context, string budgetId, LatticeDbContext db) =>
        await db.Budgets.FindAsync(budgetId) is { } budget && AdminEndpoints.Manages(context, budget.WorkspaceId) ? budget : null;

    private static GatewayError KeyNotFound(string keyId) => GatewayError.NotFound($"The key '{keyId}' does not exist.");

    private static GatewayError AppNotFound(string clientId) => GatewayError.NotFound($"The app '{clientId}' does not exist.");

    private static GatewayError BudgetNotFound(string budgetId) => GatewayError.NotFound($"The budget '{budgetId}' does not exist.");
}
