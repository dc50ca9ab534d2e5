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
/// "ask less often"; a client that does not know it at this endpoint treats it as any other error.
/// </remarks>
public sealed class DeviceAuthorizationLimiter(IOptions<GatewayOptions> options, TimeProvider time)
{
    /// <summary>The transaction property that marks a request refused by the limit.</summary>
    private const string RefusedProperty = "lattice:device_limit";

    private readonly int _limit = options.Value.DeviceAuthorizationsPerMinute;
    private readonly SourceWindow _requests = new(time);

    /// <summary>Counts one request from the caller's source; false when the source is over its limit.</summary>
    public bool TryAcquire(HttpContext context) =>
        _limit <= 0 || context.Connection.RemoteIpAddress is not { } address || _requests.Increment(address) <= _limit;

    /// <summary>Whole seconds until the window ends (at least 1).</summary>
    public long RetryAfterSeconds => Math.Max(1, (long)Math.Ceiling(_requests.UntilNextWindow().TotalSeconds));

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
        public ValueTask HandleAsync(ValidateDeviceAuthorizationRequestContext context)
        {
            var http = context.Transaction.GetHttpRequest()?.HttpContext;
            if (http is not null && !limiter.TryAcquire(http))
            {
                context.Transaction.Properties[RefusedProperty] = true;
                context.Reject(Errors.SlowDown, "Too many device authorization requests from this address. Try again in a minute.");
            }
            return default;
        }
    }

    /// <summary>OpenIddict answers every error at this endpoint with 400; a refusal by the limit is a 429.</summary>
    private sealed class AttachTooManyRequests(DeviceAuthorizationLimiter limiter) : IOpenIddictServerHandler<ApplyDeviceAuthorizationResponseContext>
    {
        public ValueTask HandleAsync(ApplyDeviceAuthorizationResponseContext context)
        {
            if (context.Transaction.Properties.ContainsKey(RefusedProperty) && context.Transaction.GetHttpRequest()?.HttpContext.Response is { } response)
            {
                response.StatusCode = StatusCodes.Status429TooManyRequests;
                response.Headers.RetryAfter = limiter.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
            }
            return default;
        }
    }
}
