namespace Lattice.Gateway.Hosting;

/// <summary>
/// Gives every response an <c>x-request-id</c>, set before anything else can start the response, and
/// <c>X-Content-Type-Options: nosniff</c>, so a browser never reads a relayed answer as anything but its declared type;
/// and, when the gateway's public URL is https, <c>Strict-Transport-Security</c>, so a browser that has been there once
/// never again sends the session cookie over plain HTTP. (ASP.NET Core's <c>UseHsts</c> writes it only for requests that
/// arrived over TLS, which behind a TLS-terminating proxy none do.) Such requests are then handled as https.
/// </summary>
/// <remarks>
/// Ids are a random per-process prefix plus a counter: unique across processes, and no random-number
/// system call per request (a <see cref="Guid"/> per request was measurable on the hot path).
/// </remarks>
internal sealed class RequestIdMiddleware(RequestDelegate next, Microsoft.Extensions.Options.IOptions<GatewayOptions> options)
{
    /// <summary>One year, the usual HSTS lifetime; subdomains are not the gateway's to speak for.</summary>
    public const string HstsValue = "max-age=31536000";

    private readonly bool _hsts = options.Value.IsPublicHttps;

    private static readonly string Prefix = "req_" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8));
    private static long s_counter;

    public Task InvokeAsync(HttpContext context)
    {
        var n = (ulong)Interlocked.Increment(ref s_counter);
        var id = string.Create(Prefix.Length + 16, n, static (span, value) =>
        {
            Prefix.CopyTo(span);
            value.TryFormat(span[Prefix.Length..], out _, "x16");
        });
        context.TraceIdentifier = id;
        var headers = context.Response.Headers;
        headers["x-request-id"] = id;
        headers.XContentTypeOptions = "nosniff";
        if (_hsts)
        {
            headers.StrictTransportSecurity = HstsValue;
            // Browsers reach the gateway over https (TLS ends at a proxy in front of it): the request is treated as the
            // https request it was, so cookies are Secure and antiforgery, which refuses Secure cookies on plain
            // requests, works without trusting a forwarded scheme header.
            context.Request.Scheme = Uri.UriSchemeHttps;
        }
        return next(context);
    }
}
