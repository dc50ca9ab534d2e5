namespace Lattice.Gateway.Billing.Alerts;

/// <summary>A budget crossed a threshold (50, 80 or 100 % of its amount) in a period.</summary>
/// <param name="UserId">For <see cref="BudgetScopes.AppUser"/> budgets: the user whose own spend crossed; null otherwise.</param>
public sealed record BudgetAlert(
    string BudgetId,
    string WorkspaceId,
    string Scope,
    string SubjectId,
    string? UserId,
    DateTimeOffset PeriodStart,
    DateTimeOffset PeriodEnd,
    int Threshold,
    long AmountPicoUsd,
    long SpentPicoUsd,
    DateTimeOffset RaisedAt);

/// <summary>Takes budget alerts from the request path. Must not block: it hands the alert off and returns.</summary>
public interface IBudgetAlertSink
{
    void Raise(BudgetAlert alert);
}
