using Lattice.Gateway.OpenAi;
using Lattice.Protocol;

namespace Lattice.Gateway.Auth;

/// <summary>Authenticates a request and checks its scope, writing the OpenAI error when either fails. Every route uses it.</summary>
public static class EndpointAuth
{
    /// <summary>
    /// The caller, or null after a 401/403 was written (429 when the source is over its failed-authentication limit). <paramref name="scope"/> or, when given,
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
        using var span = Telemetry.GatewayTracing.Start("lattice.auth");
        // The credential first: a valid one is never refused because others failed from the same address.
        var (failure, caller) = await authenticator.AuthenticateAsync(context.Request);
        if (span is not null)
        {
            span.SetTag("lattice.auth.result", failure.ToString());
            span.SetTag("lattice.credential_kind", caller?.Kind.ToString());
        }
        if (failure != AuthFailure.None)
        {
            try
            {
                if (!await context.RequestServices.GetRequiredService<IFailedAuthLimiter>().RecordFailureAsync(context))
                {
                    failure = AuthFailure.TooManyFailures;
                    context.RequestServices.GetRequiredService<Telemetry.GatewayMetrics>().Rejected(Telemetry.GatewayMetrics.Limiters.FailedAuth);
                }
            }
            catch (Persistence.SharedCountersUnavailableException)
            {
                // Fail closed: a failure that cannot be counted is not answered as an ordinary one, so guessing cannot
                // go on unthrottled while the counters are away. A valid credential never gets here.
                await writeError(context, GatewayError.CountersUnavailable());
                return null;
            }
            await writeError(context, ErrorFor(failure));
            return null;
        }
        if (caller!.HasScope(scope) || (alternative is not null && caller.HasScope(alternative)))
        {
            return caller;
        }
        span?.SetTag("lattice.auth.result", "MissingScope");
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
