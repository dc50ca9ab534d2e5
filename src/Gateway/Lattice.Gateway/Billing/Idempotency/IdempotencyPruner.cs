using Lattice.Gateway.Persistence;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Billing.Idempotency;

/// <summary>Deletes expired idempotency keys now and then, in bounded batches. Until then they are already treated as absent.</summary>
public sealed class IdempotencyPruner(IIdempotencyStore store, IOptions<IdempotencyOptions> options, TimeProvider time, ILogger<IdempotencyPruner> logger)
    : BatchPruner(time, logger)
{
    protected override string What => "idempotency keys";

    protected override TimeSpan Interval => options.Value.PruneInterval;

    protected override int Batch => options.Value.PruneBatch;

    protected override ValueTask<int> PruneBatchAsync(int batch, CancellationToken cancellationToken) => store.PruneAsync(batch, cancellationToken);
}
