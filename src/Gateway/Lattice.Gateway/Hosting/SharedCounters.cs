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
        // With Redis, far from their limits rate limits and budgets are admitted from node-local allotments of the shared
        // counters (one round trip per many requests); near them, each request goes to Redis. Disposed at a graceful stop,
        // after requests have drained: what a node holds is given back then.
        services.Replace(ServiceDescriptor.Singleton<IRateLimitCounters>(sp => Redis(sp)
            ? ActivatorUtilities.CreateInstance<AllottedRateLimitCounters>(sp, ActivatorUtilities.CreateInstance<RedisRateLimitCounters>(sp))
            : ActivatorUtilities.CreateInstance<LocalRateLimitCounters>(sp)));
        services.Replace(ServiceDescriptor.Singleton<IBudgetCounters>(sp => Redis(sp)
            ? ActivatorUtilities.CreateInstance<AllottedBudgetCounters>(sp, ActivatorUtilities.CreateInstance<RedisBudgetCounters>(sp))
            : ActivatorUtilities.CreateInstance<LocalBudgetCounters>(sp)));
        services.Replace(ServiceDescriptor.Singleton<IIdempotencyStore>(sp => Redis(sp)
            ? ActivatorUtilities.CreateInstance<RedisIdempotencyStore>(sp)
            : IdempotencyServices.DatabaseStore(sp)));
        // Failing open, the counts that slow guessing fall back to this node's own while Redis is away.
        services.Replace(ServiceDescriptor.Singleton<IFailedAuthLimiter>(sp => !Redis(sp)
            ? sp.GetRequiredService<FailedAuthLimiter>()
            : sp.GetRequiredService<RedisStore>().FailsOpen
                ? new FailOpenFailedAuthLimiter(ActivatorUtilities.CreateInstance<RedisFailedAuthLimiter>(sp), sp.GetRequiredService<FailedAuthLimiter>(),
                    sp.GetRequiredService<RedisStore>())
                : ActivatorUtilities.CreateInstance<RedisFailedAuthLimiter>(sp)));
        services.Replace(ServiceDescriptor.Singleton(sp => new DeviceAuthorizationLimiter(sp.GetRequiredService<IOptions<GatewayOptions>>(), DeviceCounter(sp))));
        // The change feed's push channel: with Redis, nodes wake each other at once instead of at the next poll.
        services.Replace(ServiceDescriptor.Singleton<Changes.IChangeSignal>(sp => Redis(sp)
            ? ActivatorUtilities.CreateInstance<Changes.RedisChangeSignal>(sp)
            : new Changes.PollingOnlyChangeSignal()));
        return services;
    }

    private static ISourceCounter DeviceCounter(IServiceProvider services)
    {
        var time = services.GetRequiredService<TimeProvider>();
        if (!Redis(services))
        {
            return new SourceWindow(time);
        }
        var redis = services.GetRequiredService<RedisStore>();
        var shared = new RedisSourceWindow(redis, time, "device:src");
        return redis.FailsOpen ? new FailOpenSourceCounter(shared, new SourceWindow(time), redis, "device authorization") : shared;
    }

    private static bool Redis(IServiceProvider services) => RedisStore.IsConfigured(services.GetRequiredService<IOptions<GatewayOptions>>().Value);
}
