using System.Text;
using System.Text.Json.Nodes;
using Lattice.Runtime.Engines;
using Lattice.StandIn.OpenAi;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Runtime.Tests.Engines;

/// <summary>
/// The openai-compatible engine against a local OpenAI-compatible server (the stand-in, on loopback): the body
/// reaches the server byte for byte with only the model's token replaced, and the answer comes back as sent.
/// </summary>
public sealed class OpenAiCompatibleEngineTests : IAsyncLifetime
{
    private const string Key = "local-server-key";
    private WebApplication? _server;
    private string _origin = "";

    public async Task InitializeAsync()
    {
        _server = StandInServer.Build(["--api-key", Key, "--urls", "http://127.0.0.1:0"]);
        await _server.StartAsync();
        _origin = _server.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');
    }

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.StopAsync();
            await _server.DisposeAsync();
        }
    }

    private OpenAiCompatibleEngine Engine() => new(new Uri(_origin + "/v1/"), [("standin-chat", null)], Key);

    private async Task<byte[]> LastBodyAsync()
    {
        using var http = new HttpClient();
        var last = JsonNode.Parse(await http.GetStringAsync(_origin + "/_standin/last?path=/v1/chat/completions"))!;
        return Convert.FromBase64String(last["body_base64"]!.GetValue<string>());
    }

    [Fact]
    public async Task The_body_is_forwarded_byte_for_byte_with_only_the_model_replaced()
    {
        // Odd spacing, key order, escapes and a number a re-serialiser would rewrite (1.0, 1e2).
        const string Sent = "{ \"messages\" : [ {\"role\":\"user\",\"content\":\"h\\u00e9llo \\\"there\\\"\"} ],\n  \"model\":\"lattice:personal:lat_x\",  \"temperature\": 1.0, \"top_p\": 1e0 }";
        await using var engine = Engine();
        var output = new RecordingOutput();

        await engine.ExecuteAsync(new EngineRequest("chat.completions", "standin-chat", Encoding.UTF8.GetBytes(Sent), "application/json", false), output, CancellationToken.None);

        Assert.Equal(200, output.Status);
        Assert.Equal("héllo \"there\"", JsonNode.Parse(output.Text)!["choices"]![0]!["message"]!["content"]!.GetValue<string>()[("You said: ".Length)..]);
        Assert.Equal(Sent.Replace("\"lattice:personal:lat_x\"", "\"standin-chat\"", StringComparison.Ordinal), Encoding.UTF8.GetString(await LastBodyAsync()));
    }

    [Fact]
    public async Task A_stream_comes_back_as_the_server_sent_it()
    {
        const string Sent = """{"model":"x","stream":true,"messages":[{"role":"user","content":"hello"}]}""";
        await using var engine = Engine();
        var output = new RecordingOutput();

        await engine.ExecuteAsync(new EngineRequest("chat.completions", "standin-chat", Encoding.UTF8.GetBytes(Sent), "application/json", true), output, CancellationToken.None);

        Assert.Equal(200, output.Status);
        Assert.StartsWith("text/event-stream", output.ContentType, StringComparison.Ordinal);
        Assert.StartsWith("data: {", output.Text, StringComparison.Ordinal);
        Assert.EndsWith("data: [DONE]\n\n", output.Text, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("not json", 400, "invalid_json")]
    [InlineData("[1,2]", 400, "invalid_type")]
    [InlineData("""{"model":42,"messages":[]}""", 400, "invalid_type")]
    public async Task A_body_it_cannot_forward_gets_a_clear_error(string body, int status, string code)
    {
        await using var engine = Engine();
        var output = new RecordingOutput();

        await engine.ExecuteAsync(new EngineRequest("chat.completions", "standin-chat", Encoding.UTF8.GetBytes(body), "application/json", false), output, CancellationToken.None);

        Assert.Equal(status, output.Status);
        Assert.Equal(code, JsonNode.Parse(output.Text)!["error"]!["code"]!.GetValue<string>());
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public async Task The_local_servers_usage_is_reported_streamed_or_not_and_the_client_gets_only_what_it_asked_for(bool stream, bool includeUsage)
    {
        var sent = "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"one two three\"}]"
            + (stream ? ",\"stream\":true" : "") + (includeUsage ? ",\"stream_options\":{\"include_usage\":true}" : "") + "}";
        await using var engine = Engine();
        var output = new RecordingOutput();

        var usage = await engine.ExecuteAsync(new EngineRequest("chat.completions", "standin-chat", Encoding.UTF8.GetBytes(sent), "application/json", stream), output, CancellationToken.None);

        // The stand-in counts words: three in the prompt, five in "You said: one two three".
        Assert.Equal(new EngineUsage(3, 5), usage);
        if (stream)
        {
            Assert.EndsWith("data: [DONE]\n\n", output.Text, StringComparison.Ordinal);
            Assert.Equal(includeUsage, output.Text.Contains("\"usage\"", StringComparison.Ordinal));
            // The local server was asked for the usage chunk either way.
            Assert.Contains("\"include_usage\":true", Encoding.UTF8.GetString(await LastBodyAsync()), StringComparison.Ordinal);
        }
    }
}
