using Lattice.Gateway.OpenAi;
using Lattice.Protocol;

namespace Lattice.Gateway.Auth;

/// <summary>Authenticates a request and checks its scope, writing the OpenAI error when either fails. Every route uses it.</summary>
public static class EndpointAuth
{
    /// <summary>
    /// The caller, or null after a 401/403/429 was written. <paramref name="scope"/> or, when given,
    /// <paramref name="alternative"/> suffices; the error names <paramref name="scope"/>.
    /// </summary>
    public static ValueTask<Caller?> RequireAsync(HttpContext context, string scope, string? alternative = null) =>
        RequireAsync(context, context.RequestServices.GetRequiredService<Authenticator>(), scope, alternative);

    /// <inheritdoc cref="RequireAsync(HttpContext, string, string?)"/>
    public static ValueTask<Caller?> RequireAsync(HttpContext context, Authenticator authenticator, string scope, string? alternative = null) =>
        RequireAsync(context, authenticator, OpenAiErrors.WriteAsync, scope, alternative);

    /// <summary>As <see cref="RequireAsync(HttpContext, string, string?)"/>, writing errors in a surface's own envelope.</summary>
    public static async ValueTask<Caller?> RequireAsync(HttpContext context, Authenticator authenticator,
        Func<HttpContext, GatewayError, Task> writeError, string scope, string? alternative = null)
    {
        var limiter = context.RequestServices.GetRequiredService<FailedAuthLimiter>();
        if (!limiter.IsAllowed(context))
        {
            await writeError(context, ErrorFor(AuthFailure.TooManyFailures));
            return null;
        }
        var failure = authenticator.TryAuthenticate(context.Request, out var caller);
        if (failure != AuthFailure.None)
        {
            if (!limiter.RecordFailure(context))
            {
                failure = AuthFailure.TooManyFailures;
            }
            await writeError(context, ErrorFor(failure));
            return null;
        }
        if (caller!.HasScope(scope) || (alternative is not null && caller.HasScope(alternative)))
        {
            return caller;
        }
        await writeError(context, GatewayError.MissingScope(scope));
        return null;
    }

    public static GatewayError ErrorFor(AuthFailure failure) => failure switch
    {
        AuthFailure.Revoked => GatewayError.Unauthenticated(Authenticator.Describe(failure)) with { Code = ErrorCodes.RevokedGrant },
        AuthFailure.TooManyFailures => new GatewayError(StatusCodes.Status429TooManyRequests, ErrorTypes.RateLimit, ErrorCodes.RateLimitExceeded, Authenticator.Describe(failure)),
        _ => GatewayError.Unauthenticated(Authenticator.Describe(failure)),
    };
}
