using System.Collections.Frozen;
using System.Reflection;

namespace Lattice.Gateway.Console;

/// <summary>
/// The web console at <c>/console</c>: a page, its scripts and one stylesheet, embedded in the gateway (no CDN, no
/// build step; it works offline). The page signs in as <see cref="ConsoleClient"/> through <c>/connect/authorize</c>
/// and calls the same public and admin APIs as every other client, with the signed-in person's access token: the
/// gateway serves these files and nothing else for it. Every path under <c>/console</c> without a file extension is
/// the page, which shows the view the path names.
/// </summary>
public static class ConsoleEndpoints
{
    private sealed record Asset(byte[] Bytes, string ContentType);

    private static readonly FrozenDictionary<string, Asset> Assets = new Dictionary<string, Asset>(StringComparer.Ordinal)
    {
        ["index.html"] = new(Read("index.html"), "text/html; charset=utf-8"),
        ["console-operator.js"] = new(Read("console-operator.js"), "text/javascript; charset=utf-8"),
        ["console.js"] = new(Read("console.js"), "text/javascript; charset=utf-8"),
        ["console-workspace.js"] = new(Read("console-workspace.js"), "text/javascript; charset=utf-8"),
        ["console.css"] = new(Read("console.css"), "text/css; charset=utf-8"),
    }.ToFrozenDictionary(StringComparer.Ordinal);

    /// <summary>
    /// Only the gateway's own script, styles and APIs; no inline script, no frames. The page holds an access token in
    /// memory, so nothing else may run in it. No referrer, so the authorization code in the callback URL goes nowhere.
    /// </summary>
    private const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

    public static IEndpointRouteBuilder MapConsole(this IEndpointRouteBuilder routes)
    {
        routes.MapGet(ConsoleClient.BasePath, Serve);
        routes.MapGet(ConsoleClient.BasePath + "/{**path}", Serve);
        return routes;
    }

    private static IResult Serve(HttpContext context, string? path)
    {
        var name = string.IsNullOrEmpty(path) || !Path.HasExtension(path) ? "index.html" : path;
        if (!Assets.TryGetValue(name, out var asset))
        {
            return TypedResults.NotFound();
        }
        var headers = context.Response.Headers;
        headers.ContentSecurityPolicy = ContentSecurityPolicy;
        headers.XContentTypeOptions = "nosniff";
        headers.XFrameOptions = "DENY";
        headers["Referrer-Policy"] = "no-referrer";
        // Small, and replaced with the gateway: always revalidated, so a new version is picked up on the next load.
        headers.CacheControl = "no-cache";
        return TypedResults.Bytes(asset.Bytes, asset.ContentType);
    }

    private static byte[] Read(string name)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("Lattice.Gateway.Console." + name)
            ?? throw new InvalidOperationException($"The console's {name} is not embedded in the gateway.");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }
}
