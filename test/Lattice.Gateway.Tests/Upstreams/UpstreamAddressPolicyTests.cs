using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Lattice.Gateway.Tests.Identity;
using Lattice.Gateway.Upstreams;

namespace Lattice.Gateway.Tests.Upstreams;

/// <summary>Upstream secrets go only where they are bound, and no upstream is a cloud metadata service.</summary>
public sealed class UpstreamAddressPolicyTests
{
    private static async Task<(HttpStatusCode Status, JsonNode? Body)> CreateModelAsync(OAuthGateway gateway, string id, string baseUrl, string? credential)
    {
        var offer = new JsonObject { ["base_url"] = baseUrl, ["upstream_model"] = "standin-chat" };
        if (credential is not null)
        {
            offer["credential"] = credential;
        }
        using var response = await gateway.Admin.PostAsJsonAsync("admin/v1/models", new JsonObject { ["id"] = id, ["offers"] = new JsonArray(offer) });
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync()));
    }

    [Fact]
    public async Task Offers_on_metadata_addresses_are_refused_unless_allowed_and_bound_credentials_stay_on_their_hosts()
    {
        var gateway = OAuthGateway.With(new()
        {
            ["Lattice:CredentialHosts:standin:0"] = "127.0.0.1",
            ["Lattice:Credentials:vendor"] = "sk-vendor-secret",
            ["Lattice:CredentialHosts:vendor:0"] = "api.vendor.example",
        });
        await gateway.InitializeAsync();
        try
        {
            foreach (var url in (string[])["http://169.254.169.254/latest", "http://[fe80::1]/v1", "http://[fd00:ec2::254]/v1", "http://metadata.google.internal/v1", "http://[::ffff:169.254.169.254]/v1"])
            {
                var (status, body) = await CreateModelAsync(gateway, "lovelace:imds", url, null);
                Assert.Equal(HttpStatusCode.BadRequest, status);
                Assert.Equal("offers[0].base_url", body!["error"]!["param"]!.GetValue<string>());
                Assert.StartsWith("'base_url' points at a link-local or cloud metadata address", body["error"]!["message"]!.GetValue<string>());
            }

            // A credential bound to another host is refused for this one…
            var (refused, error) = await CreateModelAsync(gateway, "lovelace:vendor", gateway.StandInUrl + "/v1", "vendor");
            Assert.Equal(HttpStatusCode.BadRequest, refused);
            Assert.Equal("offers[0].credential", error!["error"]!["param"]!.GetValue<string>());
            Assert.Equal($"The credential 'vendor' is bound to api.vendor.example (Lattice:CredentialHosts:vendor), not {new Uri(gateway.StandInUrl).Authority}.",
                error["error"]!["message"]!.GetValue<string>());

            // …and one bound to the stand-in's host serves as before.
            var (created, _) = await CreateModelAsync(gateway, "lovelace:bound", gateway.StandInUrl + "/v1", "standin");
            Assert.Equal(HttpStatusCode.Created, created);
            using var client = gateway.Client(gateway.A.Key);
            using var answer = await client.PostAsJsonAsync("v1/chat/completions", new JsonObject
            {
                ["model"] = "lovelace:bound",
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
            });
            Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        }
        finally
        {
            await gateway.DisposeAsync();
        }
    }

    [Fact]
    public async Task With_link_local_allowed_such_an_offer_is_accepted()
    {
        var gateway = OAuthGateway.With(new() { ["Lattice:AllowLinkLocalUpstreams"] = "true" });
        await gateway.InitializeAsync();
        try
        {
            var (status, _) = await CreateModelAsync(gateway, "lovelace:imds", "http://169.254.169.254/v1", null);
            Assert.Equal(HttpStatusCode.Created, status);
        }
        finally
        {
            await gateway.DisposeAsync();
        }
    }

    [Fact]
    public async Task The_upstream_client_never_connects_to_a_link_local_address()
    {
        using var refusing = new HttpClient(new SocketsHttpHandler { ConnectCallback = UpstreamAddressPolicy.Connect(allowLinkLocal: false) });
        var failure = await Assert.ThrowsAsync<HttpRequestException>(() => refusing.GetAsync("http://169.254.169.254/latest/meta-data/"));
        Assert.StartsWith("169.254.169.254 is a link-local address, where upstreams are not allowed (Lattice:AllowLinkLocalUpstreams).", failure.Message);
        await Assert.ThrowsAsync<HttpRequestException>(() => refusing.GetAsync("http://[fe80::1%251]:9/"));

        // Loopback and every other address are reached as before.
        using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var accepted = listener.AcceptSocketAsync();
        using var cancel = new CancellationTokenSource();
        var request = refusing.GetAsync($"http://127.0.0.1:{port}/", cancel.Token);
        using (var socket = await accepted)
        {
            Assert.True(socket.Connected);
        }
        cancel.Cancel();
        await Assert.ThrowsAnyAsync<Exception>(() => request);
    }

    [Theory]
    [InlineData("169.254.0.1", true)]
    [InlineData("169.253.255.255", false)]
    [InlineData("fe80::abcd", true)]
    [InlineData("fd00:ec2::254", true)]
    [InlineData("::ffff:169.254.169.254", true)]
    [InlineData("127.0.0.1", false)]
    [InlineData("10.0.0.1", false)]
    [InlineData("::1", false)]
    public void Link_local_addresses_are_recognised(string address, bool linkLocal) =>
        Assert.Equal(linkLocal, UpstreamAddressPolicy.IsLinkLocal(IPAddress.Parse(address)));
}
