using System.Net;

namespace Lattice.Gateway.Billing.Alerts;

/// <summary>Budget alerts: the sink the budget counters raise into, the outbox writer, the deliverer and its HTTP client.</summary>
public static class BudgetAlertServices
{
    public static IServiceCollection AddBudgetAlerts(this IServiceCollection services)
    {
        services.AddSingleton<BudgetAlertSecrets>();
        // The deliverer is registered before the outbox so that, stopping in reverse order, the outbox writes what is
        // still queued while the deliverer runs.
        services.AddSingleton<BudgetAlertDeliverer>();
        services.AddHostedService(sp => sp.GetRequiredService<BudgetAlertDeliverer>());
        services.AddSingleton<BudgetAlertOutbox>();
        services.AddSingleton<IBudgetAlertSink>(sp => sp.GetRequiredService<BudgetAlertOutbox>());
        services.AddHostedService(sp => sp.GetRequiredService<BudgetAlertOutbox>());

        services.AddHttpClient(BudgetAlertDeliverer.ClientName)
            .ConfigureHttpClient(c => c.Timeout = BudgetAlertDeliverer.RequestTimeout)
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler
            {
                // Straight to the receiver: no proxy, no cookies, and a redirect is not an acknowledgement.
                UseProxy = false,
                UseCookies = false,
                AllowAutoRedirect = false,
                AutomaticDecompression = DecompressionMethods.None,
                ConnectTimeout = BudgetAlertDeliverer.RequestTimeout,
                PooledConnectionLifetime = TimeSpan.FromMinutes(5),
                ActivityHeadersPropagator = null,
            })
            // The default logging handlers write each request's URL; an alert_url may carry a token in its query.
            .RemoveAllLoggers();
        return services;
    }
}
