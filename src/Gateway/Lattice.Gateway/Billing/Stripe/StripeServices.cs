using System.Net;

namespace Lattice.Gateway.Billing.Stripe;

/// <summary>The Stripe export: options, the ledger reader, the SDK client, and the exporter (running only when configured).</summary>
public static class StripeServices
{
    public static IServiceCollection AddStripeExport(this IServiceCollection services)
    {
        services.AddOptions<StripeOptions>().BindConfiguration(StripeOptions.Section).ValidateDataAnnotations()
            // The exporter reads the ledger in rowid order (SqliteUsageExportLedger); PostgreSQL's table has no such position yet.
            .Validate<Microsoft.Extensions.Options.IOptions<Hosting.GatewayOptions>>(
                (stripe, gateway) => !stripe.Enabled || string.IsNullOrWhiteSpace(gateway.Value.Database)
                    || Persistence.DatabaseLocation.Parse(gateway.Value.Database, out _)?.Provider != Persistence.DatabaseProvider.Postgres,
                "Lattice:Stripe: exporting usage to Stripe works on SQLite only for now; PostgreSQL's usage_records has no ledger position to export in order (docs/storage.md).")
            .ValidateOnStart();
        services.AddScoped<IUsageExportLedger, SqliteUsageExportLedger>();
        services.AddHttpClient(StripeMeterEvents.HttpClientName)
            .ConfigureHttpClient(c => c.Timeout = TimeSpan.FromSeconds(30))
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler
            {
                AllowAutoRedirect = false,
                AutomaticDecompression = DecompressionMethods.All,
                PooledConnectionLifetime = TimeSpan.FromMinutes(5),
                ActivityHeadersPropagator = null,
            })
            .RemoveAllLoggers();
        services.AddSingleton<StripeMeterEvents>();
        services.AddHostedService<StripeExporter>();
        return services;
    }
}
