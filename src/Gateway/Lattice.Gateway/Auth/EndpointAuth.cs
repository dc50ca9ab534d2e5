using Lattice.Gateway.OpenAi;

namespace Lattice.Gateway.Auth;

/// <summary>Authenticates a request and checks its scope, writing the OpenAI error when either fails.</summary>
public static class EndpointAuth
{
    /// <summary>The caller, or null after a 401/403 was written. Any one of <paramref name="scopes"/> suffices.</summary>
    public static async ValueTask<Caller?> RequireAsync(HttpContext context, params string[] scopes)
    {
        var authenticator = context.RequestServices.GetRequiredService<Authenticator>();
        var failure = authenticator.TryAuthenticate(context.Request, out var caller);
        if (failure != AuthFailure.None)
        {
            await OpenAiErrors.WriteAsync(context, GatewayError.Unauthenticated(Authenticator.Describe(failure)));
            return null;
        }
        foreach (var scope in scopes)
        {
            if (caller!.HasScope(scope))
            {
                return caller;
            }
        }
        await OpenAiErrors.WriteAsync(context, GatewayError.MissingScope(scopes[0]));
        return null;
    }
}
