namespace Lattice.Gateway.Billing.Idempotency;

public static class IdempotencyServices
{
    // PLACEHOLDER (replaced by the idempotency work).
    public static IServiceCollection AddIdempotency(this IServiceCollection services) => services;

    // PLACEHOLDER (replaced by the idempotency work).
    public static IApplicationBuilder UseIdempotency(this IApplicationBuilder app) => app;
}
