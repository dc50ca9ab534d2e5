using Lattice.Gateway.Auth;
using Lattice.Gateway.Billing;
using Lattice.Gateway.Billing.Idempotency;
using Lattice.Gateway.Identity;
using Lattice.Gateway.Persistence;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Hosting;

/// <summary>
/// The counters every node must agree on, in the Redis they share (<see cref="GatewayOptions.Redis"/>): rate limits,
/// budgets, idempotency keys, failed authentication and device authorization requests. Each takes the place of its
/// in-process counterpart behind the same interface, with the same rules. See docs/scale-out.md.
/// </summary>
public static class SharedCounters
{
    public static IServiceCollection AddSharedCounters(this IServiceCollection services)
    {
        services.AddSingleton<RedisStore>();
        services.AddHostedService(sp => sp.GetRequiredService<RedisStore>());
        services.AddSingleton<IRateLimitCounters, RedisRateLimitCounters>();
        services.AddSingleton<IBudgetCounters, RedisBudgetCounters>();
        services.AddSingleton<IIdempotencyStore, RedisIdempotencyStore>();
        services.AddSingleton<IFailedAuthLimiter, RedisFailedAuthLimiter>();
        services.AddSingleton(sp => new DeviceAuthorizationLimiter(sp.GetRequiredService<IOptions<GatewayOptions>>(),
            new RedisSourceWindow(sp.GetRequiredService<RedisStore>(), sp.GetRequiredService<TimeProvider>(), "device:src")));
        return services;
    }
}
