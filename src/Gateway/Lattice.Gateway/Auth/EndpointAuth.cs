using Lattice.Gateway.OpenAi;

namespace Lattice.Gateway.Auth;

/// <summary>Authenticates a request and checks its scope, writing the OpenAI error when either fails. Every route uses it.</summary>
public static class EndpointAuth
{
    /// <summary>
    /// The caller, or null after a 401/403 was written. <paramref name="scope"/> or, when given,
    /// <paramref name="alternative"/> suffices; the error names <paramref name="scope"/>.
    /// </summary>
    public static ValueTask<Caller?> RequireAsync(HttpContext context, string scope, string? alternative = null) =>
        RequireAsync(context, context.RequestServices.GetRequiredService<Authenticator>(), scope, alternative);

    /// <inheritdoc cref="RequireAsync(HttpContext, string, string?)"/>
    public static async ValueTask<Caller?> RequireAsync(HttpContext context, Authenticator authenticator, string scope, string? alternative = null)
    {
        var failure = authenticator.TryAuthenticate(context.Request, out var caller);
        if (failure != AuthFailure.None)
        {
            await OpenAiErrors.WriteAsync(context, GatewayError.Unauthenticated(Authenticator.Describe(failure)));
            return null;
        }
        if (caller!.HasScope(scope) || (alternative is not null && caller.HasScope(alternative)))
        {
            return caller;
        }
        await OpenAiErrors.WriteAsync(context, GatewayError.MissingScope(scope));
        return null;
    }
}
