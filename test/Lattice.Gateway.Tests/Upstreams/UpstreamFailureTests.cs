using System.Net;
using System.Text;
using System.Text.Json;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Testing;

namespace Lattice.Gateway.Tests.Upstreams;

[Collection(GatewayCollection.Name)]
public sealed class UpstreamFailureTests(GatewayFixture gateway)
{
    private static StringContent Chat(string model, bool stream = false) => new(
        $$"""{"model":"{{model}}","messages":[{"role":"user","content":"hi"}],"stream":{{(stream ? "true" : "false")}}}""",
        Encoding.UTF8, "application/json");

    private async Task<(HttpStatusCode Status, JsonElement Error, string Text)> SendAsync(string model)
    {
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/v1/chat/completions", Chat(model)).WaitAsync(TimeSpan.FromSeconds(20));
        var text = await response.Content.ReadAsStringAsync();
        var error = response.IsSuccessStatusCode ? default : JsonDocument.Parse(text).RootElement.GetProperty("error").Clone();
        return (response.StatusCode, error, text);
    }

    [Fact]
    public async Task A_dead_offer_is_skipped_for_the_next_one()
    {
        var (status, _, text) = await SendAsync("lovelace:failover");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Contains("You said: hi", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_5xx_offer_is_skipped_for_the_next_one()
    {
        var (status, _, text) = await SendAsync("lovelace:fail-500-then-ok");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Contains("You said: hi", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_upstream_5xx_with_an_envelope_is_502_with_that_envelope()
    {
        var (status, error, text) = await SendAsync("lovelace:fail-500");
        Assert.Equal(HttpStatusCode.BadGateway, status);
        OpenApiContract.AssertValid("ErrorResponse", text);
        Assert.Equal("standin_failure", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task An_upstream_5xx_whose_body_never_ends_is_read_only_up_to_the_cap()
    {
        // The stand-in's error body goes on for ever: the gateway reads 64 KiB of it, gives up on relaying it, and
        // answers with its own error instead of waiting for the end (or buffering all of it).
        var (status, error, _) = await SendAsync("lovelace:fail-500-endless");
        Assert.Equal(HttpStatusCode.BadGateway, status);
        Assert.Equal("upstream_error", error.GetProperty("code").GetString());
        Assert.Equal("The upstream provider answered with status 500.", error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task An_upstream_5xx_without_an_envelope_is_502_upstream_error()
    {
        var (status, error, _) = await SendAsync("lovelace:html-503");
        Assert.Equal(HttpStatusCode.BadGateway, status);
        Assert.Equal("upstream_error", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task An_unreachable_upstream_is_502_upstream_error()
    {
        var (status, error, _) = await SendAsync("lovelace:dead");
        Assert.Equal(HttpStatusCode.BadGateway, status);
        Assert.Equal("upstream_error", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task An_upstream_that_rejects_our_credential_is_502_not_401()
    {
        var (status, error, _) = await SendAsync("lovelace:wrong-credential");
        Assert.Equal(HttpStatusCode.BadGateway, status);
        Assert.Equal("upstream_error", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task An_upstream_4xx_is_relayed_as_is()
    {
        var (status, error, _) = await SendAsync("lovelace:bad-request");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("standin_bad", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task A_slow_upstream_times_out_with_504()
    {
        var started = System.Diagnostics.Stopwatch.StartNew();
        var (status, error, _) = await SendAsync("lovelace:slow");
        Assert.Equal(HttpStatusCode.GatewayTimeout, status);
        Assert.Equal("upstream_timeout", error.GetProperty("code").GetString());
        // The stand-in answers after a minute; the offer's timeout is one second. Anything well short of the minute
        // proves the gateway gave up on its own, however loaded the machine.
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(30), started.Elapsed.ToString());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_stream_that_breaks_midway_ends_with_an_error_event(bool reset)
    {
        // Closed (FIN: the chunked body just stops) or reset (RST: the read fails with "connection reset by peer").
        var (model, gate) = await MidStreamBreak.ModelAsync(gateway, reset);
        using var client = gateway.DevClient();
        var (response, body) = await MidStreamBreak.ReadAsync(client,
            new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat(model, stream: true) }, gate, "\"content\":\"You\"");
        using var _ = response;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = Sse.DataEvents(body);
        Assert.DoesNotContain("[DONE]", events);
        Assert.Contains("\"content\":\"You\"", events[1], StringComparison.Ordinal);
        using var last = JsonDocument.Parse(events[^1]);
        Assert.Equal("upstream_error", last.RootElement.GetProperty("error").GetProperty("code").GetString());
        OpenApiContract.AssertValid("ErrorResponse", events[^1]);
        // One usage record, with the error and the status the client got.
        var record = await Metering.Ledger.RecordAsync(gateway.Factory.Services, response.Headers.GetValues("x-request-id").Single());
        Assert.Equal("upstream_error", record.Status);
        Assert.Equal(200, record.HttpStatus);
    }
}
