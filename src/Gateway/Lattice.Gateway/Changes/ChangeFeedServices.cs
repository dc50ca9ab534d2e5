using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Lattice.Gateway.Changes;

public static class ChangeFeedServices
{
    /// <summary>
    /// The change feed and its poller. A push channel registered as <see cref="IChangeSignal"/> before this call wins;
    /// otherwise nodes poll alone.
    /// </summary>
    public static IServiceCollection AddChangeFeed(this IServiceCollection services)
    {
        services.TryAddSingleton<IChangeSignal, PollingOnlyChangeSignal>();
        services.AddSingleton<ChangeFeed>();
        services.AddSingleton<ChangeFeedPoller>();
        services.AddHostedService(sp => sp.GetRequiredService<ChangeFeedPoller>());
        return services;
    }

    /// <summary>Registers a store (already registered as itself) as the owner of its change kinds.</summary>
    public static IServiceCollection AddChangeHandler<TStore>(this IServiceCollection services) where TStore : class, IChangeHandler =>
        services.AddSingleton<IChangeHandler>(sp => sp.GetRequiredService<TStore>());
}
