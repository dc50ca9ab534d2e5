namespace Lattice.Gateway.Auth;

/// <summary>Endpoint metadata: the scope a route needs, or <paramref name="Alternative"/> instead.</summary>
public sealed record RequiredScope(string Scope, string? Alternative = null);

/// <summary>
/// Checks <see cref="RequiredScope"/> between routing and the endpoint, for routes whose handlers bind a body:
/// an endpoint filter would run only after binding, so a caller without a credential sending a malformed body
/// would get a 400 from the route instead of a 401.
/// </summary>
public static class ScopeGate
{
    public static TBuilder RequireScope<TBuilder>(this TBuilder builder, string scope, string? alternative = null)
        where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new RequiredScope(scope, alternative));

    /// <summary>The caller the gate authenticated, for handlers of routes that carry <see cref="RequiredScope"/>.</summary>
    public static Caller CallerOf(HttpContext context) => (Caller)context.Items[typeof(Caller)]!;

    /// <remarks>Routes without <see cref="RequiredScope"/> (the API, which authenticates in its handlers) pass straight through.</remarks>
    public static IApplicationBuilder UseScopeGate(this IApplicationBuilder app) => app.Use((context, next) =>
        context.GetEndpoint()?.Metadata.GetMetadata<RequiredScope>() is { } required ? GateAsync(context, next, required) : next(context));

    private static async Task GateAsync(HttpContext context, RequestDelegate next, RequiredScope required)
    {
        // The error, when there is one, is already written.
        if (await EndpointAuth.RequireAsync(context, required.Scope, required.Alternative) is not { } caller)
        {
            return;
        }
        context.Items[typeof(Caller)] = caller;
        await next(context);
    }
}
