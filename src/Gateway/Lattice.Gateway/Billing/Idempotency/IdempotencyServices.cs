namespace Lattice.Gateway.Billing.Idempotency;

public static class IdempotencyServices
{
    public static IServiceCollection AddIdempotency(this IServiceCollection services)
    {
        services.AddOptions<IdempotencyOptions>().BindConfiguration(IdempotencyOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        // With Lattice:Redis set, Hosting/SharedCounters puts the Redis store in this one's place.
        services.AddSingleton<IIdempotencyStore, SqlIdempotencyStore>();
        services.AddHostedService<IdempotencyPruner>();
        return services;
    }

    public static IApplicationBuilder UseIdempotency(this IApplicationBuilder app) => app.UseMiddleware<IdempotencyMiddleware>();
}
