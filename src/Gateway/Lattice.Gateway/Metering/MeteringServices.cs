namespace Lattice.Gateway.Metering;

public static class MeteringServices
{
    /// <summary>The metering services the relay uses: the token estimator, one per gateway (its tables load once).</summary>
    public static IServiceCollection AddMetering(this IServiceCollection services)
    {
        services.AddSingleton<TokenEstimator>();
        return services;
    }
}
