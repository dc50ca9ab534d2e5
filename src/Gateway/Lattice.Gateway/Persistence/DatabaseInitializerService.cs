namespace Lattice.Gateway.Persistence;

/// <summary>Runs <see cref="DatabaseInitializer"/> when the host starts, before the server accepts requests.</summary>
internal sealed class DatabaseInitializerService(IServiceScopeFactory scopes) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        await scope.ServiceProvider.GetRequiredService<DatabaseInitializer>().InitializeAsync(cancellationToken);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
