using System.Net;

namespace Lattice.Gateway.Billing.Stripe;

/// <summary>The Stripe export: options, the ledger reader, the SDK client, and the exporter (running only when configured).</summary>
public static class StripeServices
{
    public static IServiceCollection AddStripeExport(this IServiceCollection services)
    {
        services.AddOptions<StripeOptions>().BindConfiguration(StripeOptions.Section).ValidateDataAnnotations().ValidateOnStart();
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
