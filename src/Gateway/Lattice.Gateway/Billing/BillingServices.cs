using Lattice.Gateway.Changes;
using Lattice.Gateway.Billing.Alerts;
using Lattice.Gateway.Billing.Idempotency;
using Lattice.Gateway.Billing.Invoices;
using Lattice.Gateway.Billing.Stripe;

namespace Lattice.Gateway.Billing;

/// <summary>Limits, budgets, idempotency, invoices and the Stripe export: one registration place.</summary>
public static class BillingServices
{
    public static IServiceCollection AddBilling(this IServiceCollection services)
    {
        services.AddOptions<BillingOptions>().BindConfiguration(BillingOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<BillingPolicies>();
        services.AddChangeHandler<BillingPolicies>();
        services.AddSingleton<IRateLimitCounters, LocalRateLimitCounters>();
        services.AddSingleton<IBudgetCounters, LocalBudgetCounters>();
        services.AddSingleton<AdmissionGate>();
        services.AddIdempotency();
        services.AddBudgetAlerts();
        services.AddInvoices();
        services.AddStripeExport();
        return services;
    }

    /// <summary>Middleware that wraps the API routes (idempotent replays).</summary>
    public static IApplicationBuilder UseBilling(this IApplicationBuilder app) => app.UseIdempotency();

    public static IEndpointRouteBuilder MapBilling(this IEndpointRouteBuilder routes) => routes.MapInvoices();
}
