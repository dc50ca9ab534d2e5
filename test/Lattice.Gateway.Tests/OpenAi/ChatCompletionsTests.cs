using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Testing;

namespace Lattice.Gateway.Tests.OpenAi;

[Collection(GatewayCollection.Name)]
public sealed class ChatCompletionsTests(GatewayFixture gateway)
{
    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    [Fact]
    public async Task Non_streaming_chat_relays_the_upstream_answer()
    {
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/v1/chat/completions", Json("""{"model":"lovelace:chat","messages":[{"role":"user","content":"hello there"}]}"""));
        var text = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(response.Headers.Contains("x-request-id"));
        // A relayed answer is never sniffed by a browser as another type.
        Assert.Equal("nosniff", Assert.Single(response.Headers.GetValues("X-Content-Type-Options")));
        OpenApiContract.AssertValid("CreateChatCompletionResponse", text);
        using var doc = JsonDocument.Parse(text);
        Assert.Equal("You said: hello there", doc.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        Assert.Equal(6, doc.RootElement.GetProperty("usage").GetProperty("total_tokens").GetInt32());
    }

    [Fact]
    public async Task Every_field_passes_through_byte_for_byte_with_only_model_rewritten()
    {
        // Odd spacing, unknown fields and every OpenAI option: the upstream must see exactly these bytes.
        const string sent = """
            { "messages" : [{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}],
              "model":  "lovelace:chat" ,
              "tools":[{"type":"function","function":{"name":"lookup","parameters":{"type":"object","properties":{"q":{"type":"string"}}}}}],
              "tool_choice":"auto", "response_format":{"type":"json_object"}, "n":2, "stop":["\n\n"], "seed":7,
              "logprobs":true, "top_logprobs":2, "max_tokens":50, "max_completion_tokens":60, "user":"u-1",
              "metadata":{"k":"v"}, "a_field_from_the_future":{"nested":[1,2,{"x":null}]}, "temperature":0.25 }
            """;
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/v1/chat/completions", Json(sent));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        var last = await gateway.LastUpstreamRequestAsync("/v1/chat/completions");
        var received = Encoding.UTF8.GetString(Convert.FromBase64String(last["body_base64"]!.GetValue<string>()));
        Assert.Equal(sent.Replace("\"lovelace:chat\"", "\"standin-chat\"", StringComparison.Ordinal), received);
        Assert.Equal("Bearer " + GatewayFixture.UpstreamKey, last["headers"]!["Authorization"]!.GetValue<string>());

        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal(2, doc.RootElement.GetProperty("choices").GetArrayLength());
    }

    [Fact]
    public async Task Tool_calls_come_back_untouched()
    {
        const string sent = """{"model":"lovelace:chat","messages":[{"role":"user","content":"weather"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"get_weather"}}}""";
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/v1/chat/completions", Json(sent));
        var text = await response.Content.ReadAsStringAsync();
        OpenApiContract.AssertValid("CreateChatCompletionResponse", text);
        var choice = JsonNode.Parse(text)!["choices"]![0]!;
        Assert.Equal("tool_calls", choice["finish_reason"]!.GetValue<string>());
        var call = choice["message"]!["tool_calls"]![0]!;
        Assert.Equal("get_weather", call["function"]!["name"]!.GetValue<string>());
        Assert.Equal("""{"echo":"weather"}""", call["function"]!["arguments"]!.GetValue<string>());
    }

    [Fact]
    public async Task Streaming_is_openai_sse_with_one_id_and_done()
    {
        var events = await StreamAsync("""{"model":"lovelace:chat","messages":[{"role":"user","content":"hello there"}],"stream":true}""");
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events.Take(events.Count - 1).Select(e => JsonNode.Parse(e)!).ToList();
        foreach (var e in events.Take(events.Count - 1))
        {
            OpenApiContract.AssertValidStreamChunk(e);
            Assert.DoesNotContain("\"usage\"", e, StringComparison.Ordinal);
        }
        Assert.Single(chunks.Select(c => c["id"]!.GetValue<string>()).Distinct());
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c["object"]!.GetValue<string>()));
        var content = string.Concat(chunks.Select(c => c["choices"]![0]!["delta"]!["content"]?.GetValue<string>()));
        Assert.Equal("You said: hello there", content);
        Assert.Equal("stop", chunks[^1]["choices"]![0]!["finish_reason"]!.GetValue<string>());
    }

    [Fact]
    public async Task Include_usage_adds_a_final_usage_chunk_with_empty_choices()
    {
        var events = await StreamAsync("""{"model":"lovelace:chat","messages":[{"role":"user","content":"hello there"}],"stream":true,"stream_options":{"include_usage":true}}""");
        Assert.Equal("[DONE]", events[^1]);
        var usageChunk = JsonNode.Parse(events[^2])!;
        OpenApiContract.AssertValidStreamChunk(events[^2]);
        Assert.Empty(usageChunk["choices"]!.AsArray());
        Assert.Equal(6, usageChunk["usage"]!["total_tokens"]!.GetValue<int>());
        Assert.All(events.Take(events.Count - 2), e => Assert.Null(JsonNode.Parse(e)!["usage"]));
    }

    [Fact]
    public async Task A_json_answer_names_the_model_the_client_asked_for_not_the_upstreams_snapshot()
    {
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/v1/chat/completions", Json(
            """{"model":"lovelace:dated","messages":[{"role":"user","content":"say \"model\":\"x\""}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"required"}"""));
        var bytes = await response.Content.ReadAsByteArrayAsync();
        var text = Encoding.UTF8.GetString(bytes);
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        // The length changed on the way, so the upstream's Content-Length must not have been passed on.
        Assert.True(response.Content.Headers.ContentLength is null || response.Content.Headers.ContentLength == bytes.Length, $"{response.Content.Headers.ContentLength} for {bytes.Length} bytes");
        OpenApiContract.AssertValid("CreateChatCompletionResponse", text);
        var answer = JsonNode.Parse(text)!;
        Assert.Equal("lovelace:dated", answer["model"]!.GetValue<string>());
        Assert.DoesNotContain("standin-dated", text, StringComparison.Ordinal);
        // The tool call's arguments hold the client's text, escaped key and all, untouched.
        Assert.Equal("""{"echo":"say \"model\":\"x\""}""", answer["choices"]![0]!["message"]!["tool_calls"]![0]!["function"]!["arguments"]!.GetValue<string>());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Every_chunk_of_a_stream_names_the_model_the_client_asked_for(bool includeUsage)
    {
        var events = await StreamAsync($$$"""{"model":"lovelace:dated","messages":[{"role":"user","content":"hello there"}],"stream":true,"stream_options":{"include_usage":{{{(includeUsage ? "true" : "false")}}}}}""");
        Assert.Equal("[DONE]", events[^1]);
        Assert.True(events.Count > 4, string.Join('\n', events));
        foreach (var e in events.Take(events.Count - 1))
        {
            OpenApiContract.AssertValidStreamChunk(e);
            Assert.Equal("lovelace:dated", JsonNode.Parse(e)!["model"]!.GetValue<string>());
        }
        Assert.Equal(includeUsage, JsonNode.Parse(events[^2])!["usage"] is not null);
    }

    [Fact]
    public async Task Groq_paths_are_the_same_surface()
    {
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/openai/v1/chat/completions", Json("""{"model":"lovelace:chat","messages":[{"role":"user","content":"groq"}]}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("You said: groq", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        using var models = await client.GetAsync("/openai/v1/models");
        Assert.Equal(HttpStatusCode.OK, models.StatusCode);
    }

    [Fact]
    public async Task The_generic_task_route_is_the_same_dispatch()
    {
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/v1/tasks/chat.completions", Json("""{"model":"lovelace:chat","messages":[{"role":"user","content":"generic"}]}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("You said: generic", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Chunks_are_relayed_as_they_arrive_not_buffered()
    {
        using var client = gateway.DevClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = Json("""{"model":"lovelace:drip","messages":[{"role":"user","content":"a b c d"}],"stream":true}"""),
        };
        var started = System.Diagnostics.Stopwatch.StartNew();
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        await using var body = await response.Content.ReadAsStreamAsync();
        var reader = new StreamReader(body);
        // The drip upstream pauses 300 ms before each of its 6 content chunks; the first content must arrive long before the end.
        string? line;
        do
        {
            line = await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        while (line is not null && !line.Contains("\"content\":\"You\"", StringComparison.Ordinal));
        var firstContent = started.Elapsed;
        var rest = await reader.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(10));
        var total = started.Elapsed;
        Assert.NotNull(line);
        Assert.EndsWith("data: [DONE]\n\n", rest, StringComparison.Ordinal);
        Assert.True(total - firstContent > TimeSpan.FromMilliseconds(1000), $"first content at {firstContent}, end at {total}");
    }

    private async Task<List<string>> StreamAsync(string body)
    {
        using var client = gateway.DevClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Json(body) };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var text = await response.Content.ReadAsStringAsync().WaitAsync(TimeSpan.FromSeconds(20));
        return Sse.DataEvents(text).ToList();
    }
}
