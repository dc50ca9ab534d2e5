namespace Lattice.Gateway.Billing.Alerts;

public static class BudgetAlertServices
{
    // PLACEHOLDER (replaced by the alerts work): alerts are dropped.
    public static IServiceCollection AddBudgetAlerts(this IServiceCollection services)
    {
        services.AddSingleton<IBudgetAlertSink, DroppingSink>();
        return services;
    }

    private sealed class DroppingSink : IBudgetAlertSink
    {
        public void Raise(BudgetAlert alert)
        {
        }
    }
}
