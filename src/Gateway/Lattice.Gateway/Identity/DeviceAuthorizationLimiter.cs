using System.Globalization;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Hosting;
using Microsoft.AspNetCore;
using Microsoft.Extensions.Options;
using OpenIddict.Server;
using OpenIddict.Server.AspNetCore;
using static OpenIddict.Abstractions.OpenIddictConstants;
using static OpenIddict.Server.OpenIddictServerEvents;

namespace Lattice.Gateway.Identity;

/// <summary>
/// Limits device authorization requests (<c>/connect/device</c>) per source address, in fixed one-minute windows
/// (<see cref="GatewayOptions.DeviceAuthorizationsPerMinute"/>): each request stores a device code and a user code, so
/// an unlimited endpoint lets anyone fill the token table, and a flood of user codes makes guessing one easier.
/// </summary>
/// <remarks>
/// Past the limit the request is refused with OAuth's error shape (RFC 6749 §5.2, which RFC 8628 §3.2 uses):
/// <c>{"error":"slow_down",…}</c>, status 429 and <c>Retry-After</c> in seconds. <c>slow_down</c> is RFC 8628's word for
/// "ask less often"; a client that does not know it at this endpoint treats it as any other error. When the counters
/// live in Redis and it cannot be reached, the request is refused with <c>temporarily_unavailable</c> and 503 (with
/// <c>Lattice:RedisWhenDown=open</c>, counted on this node alone instead).
/// </remarks>
public sealed class DeviceAuthorizationLimiter(IOptions<GatewayOptions> options, ISourceCounter requests)
{
    /// <summary>The transaction property that marks a request refused by the limit: the seconds to wait, or 0 when the counters could not be read.</summary>
    private const string RefusedProperty = "lattice:device_limit";

    private readonly int _limit = options.Value.DeviceAuthorizationsPerMinute;

    /// <summary>Counting in this process.</summary>
    public DeviceAuthorizationLimiter(IOptions<GatewayOptions> options, TimeProvider time) : this(options, new SourceWindow(time))
    {
    }

    /// <summary>
    /// Counts one request from the caller's source: null when it may go on, else the whole seconds (at least 1) until
    /// the window ends.
    /// </summary>
    public async ValueTask<long?> TryAcquireAsync(HttpContext context)
    {
        if (_limit <= 0 || context.Connection.RemoteIpAddress is not { } address)
        {
            return null;
        }
        var (count, untilNextWindow) = await requests.IncrementAsync(address);
        return count <= _limit ? null : Math.Max(1, (long)Math.Ceiling(untilNextWindow.TotalSeconds));
    }

    public static void Register(OpenIddictServerBuilder server)
    {
        server.AddEventHandler<ValidateDeviceAuthorizationRequestContext>(h => h.UseSingletonHandler<Refuse>()
            // First of all validation: a refused request costs no client lookup and no secret check.
            .SetOrder(int.MinValue + 1_000)
            .SetType(OpenIddictServerHandlerType.Custom));
        server.AddEventHandler<ApplyDeviceAuthorizationResponseContext>(h => h.UseSingletonHandler<AttachTooManyRequests>()
            .SetOrder(OpenIddictServerAspNetCoreHandlers.AttachHttpResponseCode<ApplyDeviceAuthorizationResponseContext>.Descriptor.Order + 500)
            .SetType(OpenIddictServerHandlerType.Custom));
    }

    private sealed class Refuse(DeviceAuthorizationLimiter limiter) : IOpenIddictServerHandler<ValidateDeviceAuthorizationRequestContext>
    {
        public async ValueTask HandleAsync(ValidateDeviceAuthorizationRequestContext context)
        {
            var http = context.Transaction.GetHttpRequest()?.HttpContext;
            if (http is null)
            {
                return;
            }
            try
            {
                if (await limiter.TryAcquireAsync(http) is { } retryAfter)
                {
                    context.Transaction.Properties[RefusedProperty] = retryAfter;
                    context.Reject(Errors.SlowDown, "Too many device authorization requests from this address. Try again in a minute.");
                }
            }
            catch (Persistence.SharedCountersUnavailableException)
            {
                // Fail closed (failing open, the counter falls back to this node's and never gets here): no device code
                // is issued that the limit did not count.
                context.Transaction.Properties[RefusedProperty] = 0L;
                context.Reject(Errors.TemporarilyUnavailable, "The gateway cannot reach its shared counters. Try again shortly.");
            }
        }
    }

    /// <summary>OpenIddict answers every error at this endpoint with 400; a refusal by the limit is a 429.</summary>
    private sealed class AttachTooManyRequests : IOpenIddictServerHandler<ApplyDeviceAuthorizationResponseContext>
    {
        public ValueTask HandleAsync(ApplyDeviceAuthorizationResponseContext context)
        {
            if (context.Transaction.Properties.TryGetValue(RefusedProperty, out var refused) && refused is long retryAfter
                && context.Transaction.GetHttpRequest()?.HttpContext.Response is { } response)
            {
                response.StatusCode = retryAfter > 0 ? StatusCodes.Status429TooManyRequests : StatusCodes.Status503ServiceUnavailable;
                response.Headers.RetryAfter = Math.Max(1, retryAfter).ToString(CultureInfo.InvariantCulture);
            }
            return default;
        }
    }
}
