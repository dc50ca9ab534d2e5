using Lattice.Gateway.Persistence;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Responses;

/// <summary>Deletes kept responses past their retention now and then, in bounded batches.</summary>
public sealed class ResponsePruner(ResponseStore store, IOptions<ResponsesOptions> options, TimeProvider time, ILogger<ResponsePruner> logger)
    : BatchPruner(time, logger)
{
    protected override string What => "stored responses";

    protected override TimeSpan Interval => options.Value.PruneInterval;

    protected override int Batch => options.Value.PruneBatch;

    protected override ValueTask<int> PruneBatchAsync(int batch, CancellationToken cancellationToken) => store.PruneAsync(batch, cancellationToken);
}
