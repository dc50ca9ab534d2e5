namespace Lattice.Gateway.Billing.Stripe;

public static class StripeServices
{
    // PLACEHOLDER (replaced by the Stripe work).
    public static IServiceCollection AddStripeExport(this IServiceCollection services) => services;
}
