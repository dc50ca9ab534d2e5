using Lattice.Gateway.Billing.Stripe;

namespace Lattice.Gateway.Billing.Invoices;

/// <summary>Monthly invoices built from the ledger: the book, its background finaliser, and the routes.</summary>
public static class InvoiceServices
{
    public static IServiceCollection AddInvoices(this IServiceCollection services)
    {
        services.AddOptions<InvoiceOptions>().BindConfiguration(InvoiceOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddScoped<InvoiceBook>();
        services.AddHostedService<InvoiceFinalizer>();
        return services;
    }

    /// <summary>The invoice routes, and the operator's billing settings of a workspace (its Stripe customer).</summary>
    public static IEndpointRouteBuilder MapInvoices(this IEndpointRouteBuilder routes)
    {
        routes.MapInvoiceRoutes();
        routes.MapWorkspaceBilling();
        return routes;
    }
}
