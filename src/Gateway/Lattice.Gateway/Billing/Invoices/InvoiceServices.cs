namespace Lattice.Gateway.Billing.Invoices;

public static class InvoiceServices
{
    // PLACEHOLDER (replaced by the invoices work).
    public static IServiceCollection AddInvoices(this IServiceCollection services) => services;

    // PLACEHOLDER (replaced by the invoices work).
    public static IEndpointRouteBuilder MapInvoices(this IEndpointRouteBuilder routes) => routes;
}
