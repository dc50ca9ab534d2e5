using System.Net;
using Lattice.Gateway.Persistence;

namespace Lattice.Gateway.Auth;

/// <summary>
/// Failed authentication counted in the Redis every node shares while it answers, and on this node alone while it
/// does not (<c>Lattice:RedisWhenDown=open</c>): guessing stays throttled per node during an outage instead of being
/// refused with 503 (closed) or not counted at all.
/// </summary>
public sealed class FailOpenFailedAuthLimiter(RedisFailedAuthLimiter shared, FailedAuthLimiter local, RedisStore redis) : IFailedAuthLimiter
{
    public async ValueTask<bool> RecordFailureAsync(HttpContext context)
    {
        try
        {
            return await shared.RecordFailureAsync(context);
        }
        catch (SharedCountersUnavailableException)
        {
            redis.ServingUncounted("failed authentication");
            return await local.RecordFailureAsync(context);
        }
    }

    public async ValueTask<TimeSpan> AccountBackoffAsync(string account)
    {
        try
        {
            return await shared.AccountBackoffAsync(account);
        }
        catch (SharedCountersUnavailableException)
        {
            redis.ServingUncounted("password backoff");
            return await local.AccountBackoffAsync(account);
        }
    }

    public async ValueTask RecordAccountFailureAsync(string account)
    {
        try
        {
            await shared.RecordAccountFailureAsync(account);
        }
        catch (SharedCountersUnavailableException)
        {
            redis.ServingUncounted("password backoff");
            await local.RecordAccountFailureAsync(account);
        }
    }

    public async ValueTask RecordAccountSuccessAsync(string account)
    {
        // Both: a backoff counted locally during an outage must not outlive the right password either.
        await local.RecordAccountSuccessAsync(account);
        try
        {
            await shared.RecordAccountSuccessAsync(account);
        }
        catch (SharedCountersUnavailableException)
        {
            redis.ServingUncounted("password backoff");
        }
    }
}

/// <summary>
/// Counts per source in the Redis every node shares while it answers, and on this node alone while it does not
/// (<c>Lattice:RedisWhenDown=open</c>): device authorization requests stay limited per node during an outage.
/// </summary>
public sealed class FailOpenSourceCounter(ISourceCounter shared, ISourceCounter local, RedisStore redis, string counter) : ISourceCounter
{
    public async ValueTask<(long Count, TimeSpan UntilNextWindow)> IncrementAsync(IPAddress address)
    {
        try
        {
            return await shared.IncrementAsync(address);
        }
        catch (SharedCountersUnavailableException)
        {
            redis.ServingUncounted(counter);
            return await local.IncrementAsync(address);
        }
    }
}
