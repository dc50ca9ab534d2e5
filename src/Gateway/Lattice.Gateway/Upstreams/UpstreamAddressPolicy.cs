using System.Net;
using System.Net.Sockets;
using Lattice.Gateway.Hosting;

namespace Lattice.Gateway.Upstreams;

/// <summary>
/// Where upstream requests — and the secrets they carry — may go. Cloud metadata services live on link-local
/// addresses (169.254.169.254, fd00:ec2::254, fe80::/10) and answer anyone who can reach them with the machine's own
/// credentials, so an offer pointing there is refused unless <see cref="UpstreamCredentialsOptions.AllowLinkLocalUpstreams"/>,
/// both when the offer is created and when a connection is opened (a name can resolve there later). A credential bound
/// to hosts (<see cref="UpstreamCredentialsOptions.CredentialHosts"/>) is only ever sent to those hosts.
/// </summary>
public static class UpstreamAddressPolicy
{
    /// <summary>Host names of cloud metadata services that are not IP literals.</summary>
    private static readonly string[] MetadataHosts = ["metadata.google.internal", "metadata.goog", "metadata.azure.internal"];

    /// <summary>True for link-local addresses (IPv4 169.254.0.0/16, IPv6 fe80::/10) and the IPv6 metadata address fd00:ec2::254.</summary>
    public static bool IsLinkLocal(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            var b = address.GetAddressBytes();
            return b[0] == 169 && b[1] == 254;
        }
        return address.IsIPv6LinkLocal || address.Equals(AwsMetadataV6);
    }

    private static readonly IPAddress AwsMetadataV6 = IPAddress.Parse("fd00:ec2::254");

    /// <summary>True when the URL's host is a link-local address or a metadata service's name.</summary>
    public static bool IsLinkLocalOrMetadata(Uri url) =>
        IPAddress.TryParse(url.IdnHost.Trim('[', ']'), out var address)
            ? IsLinkLocal(address)
            : MetadataHosts.Contains(url.IdnHost.TrimEnd('.'), StringComparer.OrdinalIgnoreCase);

    /// <summary>Whether <paramref name="credential"/> may be sent to <paramref name="url"/>: always, unless it is bound to other hosts.</summary>
    public static bool MaySend(UpstreamCredentialsOptions options, string credential, Uri url)
    {
        if (!options.CredentialHosts.TryGetValue(credential, out var hosts) || hosts.Length == 0)
        {
            return true;
        }
        foreach (var host in hosts)
        {
            var bound = host.Trim();
            if (string.Equals(bound, url.IdnHost, StringComparison.OrdinalIgnoreCase)
                || string.Equals(bound, url.Authority, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>
    /// The upstream client's connect step: resolves the host and connects only to addresses the policy allows, so a
    /// name that resolves to a metadata service is refused at the moment it would be used.
    /// </summary>
    public static Func<SocketsHttpConnectionContext, CancellationToken, ValueTask<Stream>> Connect(bool allowLinkLocal) =>
        async (context, cancellationToken) =>
        {
            var endPoint = context.DnsEndPoint;
            var addresses = IPAddress.TryParse(endPoint.Host, out var literal)
                ? [literal]
                : await Dns.GetHostAddressesAsync(endPoint.Host, cancellationToken).ConfigureAwait(false);
            var allowed = allowLinkLocal ? addresses : Array.FindAll(addresses, a => !IsLinkLocal(a));
            if (allowed.Length == 0)
            {
                throw new HttpRequestException(HttpRequestError.ConnectionError,
                    $"{endPoint.Host} is a link-local address, where upstreams are not allowed (Lattice:AllowLinkLocalUpstreams).");
            }
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(allowed, endPoint.Port, cancellationToken).ConfigureAwait(false);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        };
}
