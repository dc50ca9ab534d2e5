namespace Lattice.Client.Pipeline;

/// <summary>
/// The outermost stage: gives every POST one idempotency key for the whole logical call (so a retry the gateway already
/// ran is replayed, not run and charged again), and retries what may succeed later, waiting as the gateway's
/// <c>retry-after</c> says or with exponential backoff, on the client's <see cref="TimeProvider"/>.
/// </summary>
internal sealed class RetryHandler(LatticeRetryOptions options, TimeProvider time) : DelegatingHandler
{
    public const string IdempotencyKeyHeader = "Idempotency-Key";

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        string? key = null;
        if (request.Method == HttpMethod.Post && options.MaxRetries > 0)
        {
            if (request.Headers.TryGetValues(IdempotencyKeyHeader, out var given))
            {
                key = given.FirstOrDefault();
            }
            else
            {
                key = "lc_" + Guid.NewGuid().ToString("N");
                request.Headers.TryAddWithoutValidation(IdempotencyKeyHeader, key);
            }
        }

        for (var attempt = 1; ; attempt++)
        {
            TimeSpan delay;
            try
            {
                return await base.SendAsync(request, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception failure) when (attempt <= options.MaxRetries && !cancellationToken.IsCancellationRequested
                && DelayBefore(failure, attempt, request, key) is { } wait)
            {
                delay = wait;
                options.OnRetry?.Invoke(new LatticeRetry(attempt + 1, delay, failure, key));
            }
            await Task.Delay(delay, time, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>How long to wait before retrying after <paramref name="failure"/>; null: do not retry.</summary>
    private TimeSpan? DelayBefore(Exception failure, int attempt, HttpRequestMessage request, string? key)
    {
        switch (failure)
        {
            case LatticeException { IsTransient: true } refused:
                if (refused.RetryAfter is { } retryAfter)
                {
                    return retryAfter <= options.MaxDelay ? retryAfter : null;
                }
                return Backoff(attempt);
            case HttpRequestException:
                // No answer arrived, so the gateway may or may not have run it: only safe to send again when a replay
                // cannot run it twice (an idempotency key) or the method changes nothing.
                return key is not null || request.Method == HttpMethod.Get ? Backoff(attempt) : null;
            default:
                return null;
        }
    }

    /// <summary>Exponential with equal jitter, so many clients refused together do not come back together.</summary>
    private TimeSpan Backoff(int attempt)
    {
        var full = Math.Min(options.BaseDelay.TotalMilliseconds * Math.Pow(2, attempt - 1), options.MaxDelay.TotalMilliseconds);
        return TimeSpan.FromMilliseconds(full / 2 + Random.Shared.NextDouble() * full / 2);
    }
}
