namespace Lattice.Gateway.Cluster;

/// <summary>
/// The <c>Lattice:Cluster</c> configuration section: how gateway nodes reach each other. With <see cref="Secret"/> and
/// <c>Lattice:Redis</c> both set, a runtime linked to one node is reachable from every node (see docs/scale-out.md).
/// </summary>
public sealed class ClusterOptions
{
    public const string Section = "Lattice:Cluster";

    /// <summary>The shortest secret accepted: 32 characters (<c>openssl rand -hex 32</c> gives 64).</summary>
    public const int MinSecretLength = 32;

    /// <summary>
    /// The secret every node of the deployment shares, sent on each request one node forwards to another. Unset, the
    /// internal channel is closed (it answers 404) and links stay reachable only through their own node.
    /// </summary>
    public string? Secret { get; set; }

    /// <summary>
    /// The address other nodes reach this one at (<c>http://10.0.0.5:8080</c>). Unset: the server's first http listening
    /// address, which must then be a concrete one (not <c>0.0.0.0</c> or <c>[::]</c>).
    /// </summary>
    public string? NodeUrl { get; set; }

    /// <summary><see cref="NodeUrl"/> as an absolute http(s) URI without path, query or user info; null when unset or not one.</summary>
    public Uri? ParseNodeUrl() =>
        Uri.TryCreate(NodeUrl, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" && uri.AbsolutePath == "/"
            && uri.Query.Length == 0 && uri.Fragment.Length == 0 && uri.UserInfo.Length == 0
            ? uri
            : null;
}
