using Lattice.Gateway.Auth;
using Lattice.Gateway.Billing;
using Lattice.Gateway.Billing.Idempotency;
using Lattice.Gateway.Identity;
using Lattice.Gateway.Persistence;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Hosting;

/// <summary>
/// The counters every node must agree on, in the Redis they share when <see cref="GatewayOptions.Redis"/> is set: rate
/// limits, budgets, idempotency keys, failed authentication and device authorization requests. Each takes the place of
/// its in-process counterpart behind the same interface, with the same rules; unset, the in-process ones stay. The
/// choice is made from the validated options when a counter is first needed. See docs/scale-out.md.
/// </summary>
public static class SharedCounters
{
    /// <summary>Registered after every feature: replaces each feature's own registration of its counters.</summary>
    public static IServiceCollection AddSharedCounters(this IServiceCollection services)
    {
        services.AddSingleton<RedisStore>();
        services.AddHostedService(sp => sp.GetRequiredService<RedisStore>());
        services.Replace(ServiceDescriptor.Singleton<IRateLimitCounters>(sp => Redis(sp)
            ? ActivatorUtilities.CreateInstance<RedisRateLimitCounters>(sp)
            : ActivatorUtilities.CreateInstance<LocalRateLimitCounters>(sp)));
        services.Replace(ServiceDescriptor.Singleton<IBudgetCounters>(sp => Redis(sp)
            ? ActivatorUtilities.CreateInstance<RedisBudgetCounters>(sp)
            : ActivatorUtilities.CreateInstance<LocalBudgetCounters>(sp)));
        services.Replace(ServiceDescriptor.Singleton<IIdempotencyStore>(sp => Redis(sp)
            ? ActivatorUtilities.CreateInstance<RedisIdempotencyStore>(sp)
            : ActivatorUtilities.CreateInstance<SqlIdempotencyStore>(sp)));
        services.Replace(ServiceDescriptor.Singleton<IFailedAuthLimiter>(sp => Redis(sp)
            ? ActivatorUtilities.CreateInstance<RedisFailedAuthLimiter>(sp)
            : sp.GetRequiredService<FailedAuthLimiter>()));
        services.Replace(ServiceDescriptor.Singleton(sp => Redis(sp)
            ? new DeviceAuthorizationLimiter(sp.GetRequiredService<IOptions<GatewayOptions>>(),
                new RedisSourceWindow(sp.GetRequiredService<RedisStore>(), sp.GetRequiredService<TimeProvider>(), "device:src"))
            : new DeviceAuthorizationLimiter(sp.GetRequiredService<IOptions<GatewayOptions>>(), sp.GetRequiredService<TimeProvider>())));
        // The change feed's push channel: with Redis, nodes wake each other at once instead of at the next poll.
        services.Replace(ServiceDescriptor.Singleton<Changes.IChangeSignal>(sp => Redis(sp)
            ? ActivatorUtilities.CreateInstance<Changes.RedisChangeSignal>(sp)
            : new Changes.PollingOnlyChangeSignal()));
        return services;
    }

    private static bool Redis(IServiceProvider services) => RedisStore.IsConfigured(services.GetRequiredService<IOptions<GatewayOptions>>().Value);
}
