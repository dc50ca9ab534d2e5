using System.Buffers;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Tests.Metering;

/// <summary>
/// The stand-in reports usage the way OpenAI does, and the metering pieces the relay uses read it and hide an
/// injected include_usage from the client: patched request in, filtered stream out, the client's bytes as if
/// nothing had been added.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed partial class StandInUsageTests(GatewayFixture gateway)
{
    private const string Hello = """{"model":"standin-chat","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there"}]""";

    // Each answer has its own id and creation second; everything else must be equal.
    [GeneratedRegex("\"id\":\"chatcmpl-standin-[0-9]+\",(\"object\":\"chat\\.completion(\\.chunk)?\"),\"created\":[0-9]+")]
    private static partial Regex IdAndCreated();

    private static string Normalise(string body) => IdAndCreated().Replace(body, "\"id\":\"X\",$1,\"created\":0");

    private async Task<string> PostAsync(string body)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", GatewayFixture.UpstreamKey);
        using var content = new ByteArrayContent(Encoding.UTF8.GetBytes(body));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await http.PostAsync(gateway.StandInUrl + "/v1/chat/completions", content);
        response.EnsureSuccessStatusCode();
        return await response.Content.ReadAsStringAsync();
    }

    public static TheoryData<string> Requests => new()
    {
        Hello + "}",
        Hello + ""","n":3}""",
        Hello + ""","max_tokens":2}""",
        Hello + ""","tools":[{"type":"function","function":{"name":"echo","parameters":{"type":"object"}}}],"tool_choice":"required"}""",
    };

    [Theory]
    [MemberData(nameof(Requests))]
    public async Task With_include_usage_every_chunk_has_a_null_usage_and_a_usage_chunk_ends_the_stream(string request)
    {
        string body = await PostAsync(request[..^1] + ""","stream":true,"stream_options":{"include_usage":true}}""");
        var events = Sse.DataEvents(body);
        Assert.Equal("[DONE]", events[^1]);
        var usageChunk = JsonNode.Parse(events[^2])!.AsObject();
        Assert.Empty(usageChunk["choices"]!.AsArray());
        Assert.Equal(System.Text.Json.JsonValueKind.Object, usageChunk["usage"]!.GetValueKind());
        foreach (string e in events.Take(events.Count - 2))
        {
            var chunk = JsonNode.Parse(e)!.AsObject();
            Assert.True(chunk.ContainsKey("usage"));
            Assert.Null(chunk["usage"]);
            Assert.NotEmpty(chunk["choices"]!.AsArray());
            Assert.EndsWith(",\"usage\":null}", e, StringComparison.Ordinal);
        }
    }

    [Theory]
    [MemberData(nameof(Requests))]
    public async Task Without_include_usage_no_chunk_has_a_usage_member(string request)
    {
        foreach (string options in (string[])["", ""","stream_options":{"include_usage":false}""", ""","stream_options":null"""])
        {
            string body = await PostAsync(request[..^1] + ""","stream":true""" + options + "}");
            Assert.DoesNotContain("\"usage\"", body, StringComparison.Ordinal);
            Assert.EndsWith("data: [DONE]\n\n", body, StringComparison.Ordinal);
        }
    }

    [Theory]
    [MemberData(nameof(Requests))]
    public async Task Streamed_and_non_streamed_answers_report_the_same_usage(string request)
    {
        string whole = await PostAsync(request);
        Assert.True(UsageReader.TryRead(Encoding.UTF8.GetBytes(whole), "usage", "tokens", out var answered));

        string streamed = await PostAsync(request[..^1] + ""","stream":true,"stream_options":{"include_usage":true}}""");
        using var filter = new SseUsageFilter();
        filter.Push(Encoding.UTF8.GetBytes(streamed), new ArrayBufferWriter<byte>());
        Assert.True(filter.SawDone);
        Assert.Equal(answered, filter.Usage);
        Assert.True(answered.CompletionTokens > 0);
        Assert.Equal(answered.PromptTokens + answered.CompletionTokens, answered.TotalTokens);
    }

    [Theory]
    [MemberData(nameof(Requests))]
    public async Task An_injected_include_usage_is_invisible_to_the_client_and_still_meters(string request)
    {
        string clientRequest = request[..^1] + ""","stream":true}""";
        byte[] clientBytes = Encoding.UTF8.GetBytes(clientRequest);
        Assert.False(IncludeUsagePatch.ClientAskedForUsage(clientBytes));
        Assert.True(IncludeUsagePatch.TryCreate(clientBytes, out var splice));

        string upstreamStream = await PostAsync(Encoding.UTF8.GetString(splice.ApplyTo(clientBytes)));
        string unpatchedStream = await PostAsync(clientRequest);

        // Fed in small reads, as a network delivers it.
        byte[] upstreamBytes = Encoding.UTF8.GetBytes(upstreamStream);
        var output = new ArrayBufferWriter<byte>();
        using var filter = new SseUsageFilter(stripInjectedUsage: true, keepWrittenBytes: 1 << 20);
        for (int i = 0; i < upstreamBytes.Length; i += 7)
        {
            filter.Push(upstreamBytes.AsSpan(i, Math.Min(7, upstreamBytes.Length - i)), output);
        }

        string received = Encoding.UTF8.GetString(output.WrittenSpan);
        Assert.Equal(Normalise(unpatchedStream), Normalise(received));
        Assert.True(filter.Usage is { CompletionTokens: > 0 });
        Assert.True(filter.SawDone);
        Assert.Equal(output.WrittenSpan.ToArray(), filter.Written.ToArray());
    }
}
