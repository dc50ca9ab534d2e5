using System.Net;
using System.Text;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Upstreams;

/// <summary>The relay guards the wire format: the client gets exactly the upstream's bytes (with the model it asked for), however they were split.</summary>
[Collection(GatewayCollection.Name)]
public sealed class PassThroughTests(GatewayFixture gateway) : IAsyncLifetime
{
    private static readonly string[] Pieces =
    [
        "data: {\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"h\u00e9",
        "llo \u2603\"},\"finish_reason\":null}],\"x_unknown\":{\"a\":[1,2]}}\n\ndata: {\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n",
    ];

    private WebApplication? _upstream;

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        _upstream = builder.Build();
        _upstream.MapPost("/v1/chat/completions", async (HttpContext context) =>
        {
            context.Response.ContentType = "text/event-stream";
            foreach (var piece in Pieces)
            {
                await context.Response.Body.WriteAsync(Encoding.UTF8.GetBytes(piece));
                await context.Response.Body.FlushAsync();
                await Task.Delay(20);
            }
        });
        await _upstream.StartAsync();
        var url = _upstream.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        await gateway.AddModelAsync("lovelace:fixed-" + GetHashCode(), GatewayFixture.Offer(url + "/v1", "m"));
    }

    [Fact]
    public async Task The_sse_stream_is_relayed_byte_for_byte()
    {
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/v1/chat/completions", new StringContent(
            $$"""{"model":"lovelace:fixed-{{GetHashCode()}}","messages":[{"role":"user","content":"x"}],"stream":true}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var bytes = await response.Content.ReadAsByteArrayAsync();
        // Byte for byte, but for the model: the client is told the id it asked for.
        var expected = string.Concat(Pieces).Replace("\"model\":\"m\"", $"\"model\":\"lovelace:fixed-{GetHashCode()}\"", StringComparison.Ordinal);
        Assert.Equal(Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(expected)), Encoding.UTF8.GetString(bytes));
    }

    [Fact]
    public async Task A_client_that_goes_away_cancels_the_upstream_request()
    {
        var before = gateway.UpstreamClientAborts;
        using var client = gateway.DevClient();
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions"))
        {
            request.Content = new StringContent("""{"model":"lovelace:drip","messages":[{"role":"user","content":"one two three four five six"}],"stream":true}""", Encoding.UTF8, "application/json");
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            await using var body = await response.Content.ReadAsStreamAsync();
            var buffer = new byte[64];
            Assert.True(await body.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(10)) > 0);
        }

        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (gateway.UpstreamClientAborts == before && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }
        Assert.True(gateway.UpstreamClientAborts > before, "the upstream never saw the request cancelled");
    }

    public async Task DisposeAsync()
    {
        if (_upstream is not null)
        {
            await _upstream.DisposeAsync();
        }
    }
}
