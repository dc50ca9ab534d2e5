using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Lattice.Gateway.Billing.Idempotency;

public static class IdempotencyServices
{
    public static IServiceCollection AddIdempotency(this IServiceCollection services)
    {
        services.AddOptions<IdempotencyOptions>().BindConfiguration(IdempotencyOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        // Another store (a shared cache across nodes) is registered before this one to take its place.
        services.TryAddSingleton<IIdempotencyStore, SqlIdempotencyStore>();
        services.AddHostedService<IdempotencyPruner>();
        return services;
    }

    public static IApplicationBuilder UseIdempotency(this IApplicationBuilder app) => app.UseMiddleware<IdempotencyMiddleware>();
}
