namespace Lattice.Gateway.Hosting;

/// <summary>Gives every response an <c>x-request-id</c>, set before anything else can start the response.</summary>
internal sealed class RequestIdMiddleware(RequestDelegate next)
{
    public Task InvokeAsync(HttpContext context)
    {
        var id = string.Create(36, Guid.NewGuid(), static (span, guid) =>
        {
            "req_".CopyTo(span);
            guid.TryFormat(span[4..], out _, "N");
        });
        context.TraceIdentifier = id;
        context.Response.Headers["x-request-id"] = id;
        return next(context);
    }
}
