namespace Lattice.Runtime.Connection;

/// <summary>The gateway addresses a daemon is given: each one node (or one load-balanced address) of the same deployment.</summary>
public static class GatewayEndpoints
{
    /// <summary>
    /// <paramref name="url"/> as the origin the daemon dials (<c>http://host:port</c>, no trailing slash), or null with
    /// <paramref name="problem"/> saying why it is not one. A path is dropped, as pairing does (so the API's base URL,
    /// <c>…/v1</c>, names the same node); user info is refused, so that no secret reaches a log line.
    /// </summary>
    public static string? ToOrigin(string url, out string? problem)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
        {
            problem = $"expected an http(s) URL, not '{url}'";
            return null;
        }
        if (uri.UserInfo.Length > 0)
        {
            problem = "a gateway URL carries no user name or password (the runtime credential authenticates the daemon)";
            return null;
        }
        problem = null;
        return uri.GetLeftPart(UriPartial.Authority);
    }
}
