using Lattice.Gateway.Changes;
using Lattice.Gateway.Hosting;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Metering;

/// <summary>The usage ledger: options, the journal and ledger singleton, and the commit loop's lifetime.</summary>
public static class MeteringServices
{
    public static IServiceCollection AddMetering(this IServiceCollection services)
    {
        services.AddOptions<MeteringOptions>().BindConfiguration(MeteringOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton(sp =>
        {
            var gateway = sp.GetRequiredService<IOptions<GatewayOptions>>().Value;
            var metering = sp.GetRequiredService<IOptions<MeteringOptions>>().Value;
            var loggers = sp.GetRequiredService<ILoggerFactory>();
            // The journal lives in the data directory whatever database the connection string names: it is this node's
            // own crash record, not shared state.
            var journal = UsageJournal.Open(gateway.DataDirectory, metering.JournalSlots, metering.JournalSlotBytes, loggers.CreateLogger<UsageJournal>());
            return new UsageLedger(journal, gateway.ResolveDatabase(), metering, loggers.CreateLogger<UsageLedger>());
        });
        // Registered after the database initializer (which migrates and runs the ledger's recovery), so the loop starts
        // on a ready database; hosted services stop in reverse order, after the server has drained its requests.
        services.AddHostedService<UsageLedgerService>();
        services.AddSingleton<WorkspacePrices>();
        services.AddChangeHandler<WorkspacePrices>();
        services.AddSingleton<TokenEstimator>();
        services.AddSingleton<UsageMeter>();
        return services;
    }
}

/// <summary>Runs the ledger's group-commit loop for the host's lifetime; a graceful stop commits everything queued.</summary>
internal sealed class UsageLedgerService(UsageLedger ledger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        ledger.Start();
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => ledger.StopAsync(cancellationToken);
}
