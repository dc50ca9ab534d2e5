using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Hosting;

/// <summary>
/// The address the gateway is reached at: <see cref="GatewayOptions.PublicUrl"/>, or when that is unset the server's
/// own first http listening address. Never the request's <c>Host</c> header, which the caller chooses — an issuer,
/// discovery document or invitation link built from it would send people wherever the caller likes.
/// </summary>
public sealed class PublicUrl(IOptions<GatewayOptions> options, IServer server)
{
    /// <summary>Where a host with no listening address (an in-memory test server) is reached.</summary>
    private static readonly Uri NoAddress = new("http://localhost/");

    private readonly Uri? _configured = options.Value.ParsePublicUrl();
    private Uri? _listening;

    /// <summary>The base URI, ending in '/'.</summary>
    public Uri Value => _configured ?? _listening ?? FromServer();

    /// <summary>The OAuth issuer: <see cref="Value"/> as OpenIddict writes it into tokens (<c>iss</c>).</summary>
    public string Issuer => Value.AbsoluteUri;

    /// <summary>An absolute URL of <paramref name="path"/> (relative to the gateway's root, with or without a leading '/').</summary>
    public string Combine(string path) => new Uri(Value, path.TrimStart('/')).AbsoluteUri;

    private Uri FromServer()
    {
        var addresses = server.Features.Get<IServerAddressesFeature>()?.Addresses;
        var first = addresses?.FirstOrDefault(a => a.StartsWith("http://", StringComparison.OrdinalIgnoreCase)) ?? addresses?.FirstOrDefault();
        if (first is null || !Uri.TryCreate(first, UriKind.Absolute, out var uri) || uri.Port == 0)
        {
            // Not bound yet (port 0 is still to be chosen), a wildcard, or no sockets at all: not remembered, so the
            // real address is used once there is one.
            return NoAddress;
        }
        return _listening = new Uri(uri.GetLeftPart(UriPartial.Path).TrimEnd('/') + "/");
    }
}
