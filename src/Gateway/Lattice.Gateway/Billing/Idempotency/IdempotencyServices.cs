namespace Lattice.Gateway.Billing.Idempotency;

public static class IdempotencyServices
{
    public static IServiceCollection AddIdempotency(this IServiceCollection services)
    {
        services.AddOptions<IdempotencyOptions>().BindConfiguration(IdempotencyOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        // SQLite's own store (prepared statements, no flush per commit) or EF Core's on PostgreSQL. With Lattice:Redis
        // set, Hosting/SharedCounters puts the Redis store in this one's place.
        services.AddSingleton(DatabaseStore);
        services.AddHostedService<IdempotencyPruner>();
        return services;
    }

    /// <summary>The store in the gateway's database: SQLite's own, or EF Core's on PostgreSQL.</summary>
    internal static IIdempotencyStore DatabaseStore(IServiceProvider sp) =>
        sp.GetRequiredService<Persistence.DatabaseLocation>().Provider == Persistence.DatabaseProvider.Sqlite
            ? ActivatorUtilities.CreateInstance<SqliteIdempotencyStore>(sp)
            : ActivatorUtilities.CreateInstance<SqlIdempotencyStore>(sp);

    public static IApplicationBuilder UseIdempotency(this IApplicationBuilder app) => app.UseMiddleware<IdempotencyMiddleware>();
}
