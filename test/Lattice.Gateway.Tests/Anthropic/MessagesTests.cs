using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Gateway.Tests.Metering;

namespace Lattice.Gateway.Tests.Anthropic;

/// <summary>
/// <c>POST /v1/messages</c> over the stand-in's <c>lovelace:chat</c> (it echoes "You said: …" and counts words as
/// tokens): the chat body the upstream receives, the Message and the SSE transcript the client gets, and the errors.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class MessagesTests(GatewayFixture gateway)
{
    private static readonly JsonSerializerOptions Relaxed = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static string Quote(string value) => JsonSerializer.Serialize(value, Relaxed);

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    /// <summary>A client that sends its key the way Anthropic's SDKs do by default.</summary>
    private HttpClient AnthropicClient(string? key = null)
    {
        var client = gateway.Client();
        client.DefaultRequestHeaders.Add("x-api-key", key ?? gateway.ApiKey);
        client.DefaultRequestHeaders.Add("anthropic-version", "2023-06-01");
        return client;
    }

    private static string RequestId(HttpResponseMessage response) => response.Headers.GetValues("request-id").Single();

    private static string MessageId(HttpResponseMessage response) => "msg_" + RequestId(response)["req_".Length..];

    public static TheoryData<string, string> Translations => new()
    {
        // A string content, nothing else.
        {
            """{"model":"lovelace:chat","max_tokens":100,"messages":[{"role":"user","content":"hello there"}]}""",
            """{"model":"standin-chat","messages":[{"role":"user","content":"hello there"}],"max_tokens":100}"""
        },
        // A system string and a multi-turn conversation; one text block becomes a string content.
        {
            """{"model":"lovelace:chat","max_tokens":5,"system":"be brief","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]},{"role":"assistant","content":"hello"},{"role":"user","content":"how are you"}]}""",
            """{"model":"standin-chat","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"how are you"}],"max_tokens":5}"""
        },
        // System blocks (cache_control is a hint the chat targets have no use for) and several text blocks become text parts.
        {
            """{"model":"lovelace:chat","max_tokens":9,"system":[{"type":"text","text":"one"},{"type":"text","text":"two","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}""",
            """{"model":"standin-chat","messages":[{"role":"system","content":[{"type":"text","text":"one"},{"type":"text","text":"two"}]},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"max_tokens":9}"""
        },
        // Sampling, stop sequences and the end user.
        {
            """{"model":"lovelace:chat","max_tokens":64,"messages":[{"role":"user","content":"go"}],"stop_sequences":["END","\n\nHuman:"],"temperature":0.5,"top_p":0.9,"metadata":{"user_id":"user-42"}}""",
            """{"model":"standin-chat","messages":[{"role":"user","content":"go"}],"max_tokens":64,"stop":["END","\n\nHuman:"],"temperature":0.5,"top_p":0.9,"user":"user-42"}"""
        },
        // Images, base64 and by URL, become image_url parts beside the text.
        {
            """{"model":"lovelace:chat","max_tokens":20,"messages":[{"role":"user","content":[{"type":"text","text":"compare"},{"type":"image","source":{"type":"base64","media_type":"image/gif","data":"R0lGODlh"}},{"type":"image","source":{"type":"url","url":"https://example.com/b.jpg"}}]}]}""",
            """{"model":"standin-chat","messages":[{"role":"user","content":[{"type":"text","text":"compare"},{"type":"image_url","image_url":{"url":"data:image/gif;base64,R0lGODlh"}},{"type":"image_url","image_url":{"url":"https://example.com/b.jpg"}}]}],"max_tokens":20}"""
        },
        // A stream asks the chat target for its usage chunk.
        {
            """{"model":"lovelace:chat","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"go"}],"metadata":{"user_id":null}}""",
            """{"model":"standin-chat","messages":[{"role":"user","content":"go"}],"max_tokens":64,"stream":true,"stream_options":{"include_usage":true}}"""
        },
    };

    [Theory]
    [MemberData(nameof(Translations))]
    public async Task A_messages_request_reaches_the_chat_target_as_this_chat_body(string sent, string expected)
    {
        using var client = AnthropicClient();
        using var response = await client.PostAsync("/v1/messages", Json(sent));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await response.Content.ReadAsStringAsync();

        var last = await gateway.LastUpstreamRequestAsync("/v1/chat/completions");
        var received = Encoding.UTF8.GetString(Convert.FromBase64String(last["body_base64"]!.GetValue<string>()));
        Assert.Equal(expected, received);
    }

    /// <summary>The Message for "hello there": whole, and cut short by <c>max_tokens</c>.</summary>
    [Theory]
    [InlineData(100, "You said: hello there", "end_turn", 4)]
    [InlineData(2, "You said:", "max_tokens", 2)]
    public async Task The_chat_answer_comes_back_as_a_message_with_the_model_the_client_named(int maxTokens, string text, string stopReason, int outputTokens)
    {
        using var client = AnthropicClient();
        using var response = await client.PostAsync("/v1/messages",
            Json($$"""{"model":"lovelace:chat","max_tokens":{{maxTokens}},"messages":[{"role":"user","content":"hello there"}]}"""));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal(RequestId(response), response.Headers.GetValues("x-request-id").Single());
        Assert.Equal(
            $$$"""{"id":"{{{MessageId(response)}}}","type":"message","role":"assistant","model":"lovelace:chat","content":[{"type":"text","text":"{{{text}}}"}],"stop_reason":"{{{stopReason}}}","stop_sequence":null,"usage":{"input_tokens":2,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":{{{outputTokens}}}}}""",
            await response.Content.ReadAsStringAsync());

        // The dispatch metered it as the OpenAI surface would.
        await AssertMeteredAsync(response, stream: false, outputTokens);
    }

    [Fact]
    public async Task A_stream_is_anthropics_event_grammar_event_by_event()
    {
        using var client = AnthropicClient();
        using var response = await client.PostAsync("/v1/messages",
            Json("""{"model":"lovelace:chat","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hello there"}]}"""));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var id = MessageId(response);
        string[] expected =
        [
            """event: message_start|data: {"type":"message_start","message":{"id":"MSGID","type":"message","role":"assistant","model":"lovelace:chat","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}}""".Replace("MSGID", id, StringComparison.Ordinal),
            """event: content_block_start|data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}""",
            """event: ping|data: {"type":"ping"}""",
            """event: content_block_delta|data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"You"}}""",
            """event: content_block_delta|data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" said:"}}""",
            """event: content_block_delta|data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" hello"}}""",
            """event: content_block_delta|data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there"}}""",
            """event: content_block_stop|data: {"type":"content_block_stop","index":0}""",
            """event: message_delta|data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":2,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":4}}""",
            """event: message_stop|data: {"type":"message_stop"}""",
        ];
        Assert.Equal(expected, Events(await response.Content.ReadAsStringAsync()));

        // Streamed and not, the ledger holds the same counts.
        await AssertMeteredAsync(response, stream: true, 4);
    }

    /// <summary>The ledger's record of "hello there" on lovelace:chat: 2 prompt tokens and the completion's.</summary>
    private async Task AssertMeteredAsync(HttpResponseMessage response, bool stream, int completionTokens)
    {
        var record = await Ledger.RecordAsync(gateway.Factory.Services, RequestId(response));
        Assert.Equal("chat.completions", record.Task);
        Assert.Equal("anthropic", record.Surface);
        Assert.Equal("lovelace:chat", record.Model);
        Assert.Equal(200, record.HttpStatus);
        Assert.Equal(stream, record.Stream);
        Assert.Equal(2, record.Usage.PromptTokens);
        Assert.Equal(completionTokens, record.Usage.CompletionTokens);
    }

    [Fact]
    public async Task A_stream_that_breaks_ends_with_an_error_event()
    {
        var (model, gate) = await MidStreamBreak.ModelAsync(gateway);
        using var client = AnthropicClient();
        var (response, body) = await MidStreamBreak.ReadAsync(client, new HttpRequestMessage(HttpMethod.Post, "/v1/messages")
        {
            Content = Json($$"""{"model":"{{model}}","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hello there"}]}"""),
        }, gate, "text_delta");
        using var _ = response;

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = Events(body);
        Assert.StartsWith("event: message_start|", events[0], StringComparison.Ordinal);
        Assert.Equal(
            $$$"""event: error|data: {"type":"error","error":{"type":"api_error","message":"The upstream provider failed in the middle of the response."},"request_id":"{{{RequestId(response)}}}"}""",
            events[^1]);
        Assert.DoesNotContain(events, e => e.StartsWith("event: message_stop", StringComparison.Ordinal));
    }

    /// <summary>Splits an SSE body into its events (lines joined by '|'), checking each ends with a blank line.</summary>
    private static List<string> Events(string body)
    {
        Assert.EndsWith("\n\n", body, StringComparison.Ordinal);
        return body[..^2].Split("\n\n").Select(e => e.Replace('\n', '|')).ToList();
    }

    public static TheoryData<string, int, string, string> Refusals => new()
    {
        { """{"model":"lovelace:chat","messages":[{"role":"user","content":"hi"}]}""", 400, "invalid_request_error", "max_tokens: an integer of at least 1 is required." },
        { """{"model":"lovelace:chat","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}""", 400, "invalid_request_error", "max_tokens: an integer of at least 1 is required." },
        { """{"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}""", 400, "invalid_request_error", "model: a non-empty string is required." },
        { """{"model":"lovelace:chat","max_tokens":10,"messages":[]}""", 400, "invalid_request_error", "messages: a non-empty array is required." },
        { """{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"system","content":"hi"}]}""", 400, "invalid_request_error", "messages.0.role: must be 'user' or 'assistant'." },
        { """{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"bash_20250124","name":"bash"}]}""", 400, "invalid_request_error", "tools.0.type: Anthropic server tools ('bash_20250124') are not supported by the chat-completions targets this model is served by." },
        { """{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"tools":[{"name":"get_weather"}]}""", 400, "invalid_request_error", "tools.0.input_schema: an object is required." },
        { """{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"tool_choice":{"type":"some"}}""", 400, "invalid_request_error", "tool_choice.type: must be 'auto', 'any', 'tool' or 'none'." },
        { """{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"tool_choice":{"type":"tool"}}""", 400, "invalid_request_error", "tool_choice.name: a non-empty string is required." },
        { """{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"f","input":"x"}]}]}""", 400, "invalid_request_error", "messages.0.content.0.input: an object is required." },
        { """{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"image","source":{"type":"url","url":"https://example.com/a.png"}}]}]}]}""", 400, "invalid_request_error", "messages.0.content.0.content.0: images in a tool_result are not supported: the chat-completions tool message this model is served by carries text only." },
        { """{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"url","url":"https://example.com/a.pdf"}}]}]}""", 400, "invalid_request_error", "messages.0.content.0: 'document' blocks (PDFs and text documents) are not supported by the chat-completions targets this model is served by." },
        { """{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/tiff","data":"SUkq"}}]}]}""", 400, "invalid_request_error", "messages.0.content.0.source.media_type: must be one of 'image/jpeg', 'image/png', 'image/gif', 'image/webp'." },
        { """{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"assistant","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"42"}]}]}""", 400, "invalid_request_error", "messages.0.content.0: 'tool_result' blocks belong in a user turn." },
        { """{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"user","content":[{"type":"tool_use","id":"toolu_1","name":"f","input":{}}]}]}""", 400, "invalid_request_error", "messages.0.content.0: 'tool_use' blocks belong in an assistant turn." },
        { """{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","is_error":"yes"}]}]}""", 400, "invalid_request_error", "messages.0.content.0.is_error: must be a boolean." },
        { """{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"top_k":5}""", 400, "invalid_request_error", "top_k: not supported by the chat-completions targets this model is served by." },
        { """{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"temperature":1.5}""", 400, "invalid_request_error", "temperature: must be a number from 0 to 1." },
        { """{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"frequency_penalty":1}""", 400, "invalid_request_error", "frequency_penalty: unknown field." },
        { """{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"stop_sequences":["a","b","c","d","e"]}""", 400, "invalid_request_error", "stop_sequences: at most 4 are supported by the chat-completions targets." },
        { """{"model":"lovelace:chat","max_tokens":10,""", 400, "invalid_request_error", "The request body is not valid JSON (line 1, position 40)." },
        { """{"model":"lovelace:nope","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}""", 404, "not_found_error", "The model 'lovelace:nope' does not exist or you do not have access to it." },
        { """{"model":"lovelace:fail-500","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}""", 502, "api_error", "The stand-in failed on purpose." },
        // A target's own refusal keeps its status and message.
        { """{"model":"lovelace:bad-request","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}""", 400, "invalid_request_error", "Upstream says the request is bad." },
        { """{"model":"lovelace:bad-request","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}""", 400, "invalid_request_error", "Upstream says the request is bad." },
        { """{"model":"lovelace:dead","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}""", 502, "api_error", "The upstream provider could not be reached." },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task A_refusal_is_anthropics_error_envelope(string sent, int status, string type, string message)
    {
        using var client = AnthropicClient();
        using var response = await client.PostAsync("/v1/messages", Json(sent));

        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal(
            """{"type":"error","error":{"type":""" + Quote(type) + ""","message":""" + Quote(message) + """},"request_id":""" + Quote(RequestId(response)) + "}",
            await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task A_body_over_the_limit_is_request_too_large()
    {
        var padding = new string('a', (int)GatewayFixture.MaxBodyBytes);
        using var client = AnthropicClient();
        using var response = await client.PostAsync("/v1/messages",
            Json($$"""{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"user","content":"{{padding}}"}]}"""));

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.Equal("request_too_large", error["error"]!["type"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_bad_key_is_an_authentication_error_whichever_header_carries_it()
    {
        using var byApiKey = AnthropicClient("sk_not_a_real_key");
        using var first = await byApiKey.PostAsync("/v1/messages", Json("""{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"""));
        Assert.Equal(HttpStatusCode.Unauthorized, first.StatusCode);
        var error = JsonNode.Parse(await first.Content.ReadAsStringAsync())!;
        Assert.Equal("error", error["type"]!.GetValue<string>());
        Assert.Equal("authentication_error", error["error"]!["type"]!.GetValue<string>());
        Assert.Equal(RequestId(first), error["request_id"]!.GetValue<string>());

        // A valid key as a bearer token works as well as in x-api-key.
        using var byBearer = gateway.Client();
        byBearer.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", gateway.ApiKey);
        using var second = await byBearer.PostAsync("/v1/messages", Json("""{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"""));
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
    }

    [Fact]
    public async Task Streaming_needs_only_the_inference_scope()
    {
        var key = await gateway.CreateKeyAsync(new JsonObject { ["name"] = "inference only", ["scopes"] = new JsonArray("lattice:compute:inference") });
        using var client = AnthropicClient(key);
        using var response = await client.PostAsync("/v1/messages", Json("""{"model":"lovelace:chat","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}"""));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.EndsWith("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_key_without_the_inference_scope_is_a_permission_error()
    {
        var key = await gateway.CreateKeyAsync(new JsonObject { ["name"] = "reader", ["scopes"] = new JsonArray("lattice:compute:catalog:read") });
        using var client = AnthropicClient(key);
        using var response = await client.PostAsync("/v1/messages", Json("""{"model":"lovelace:chat","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}"""));

        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.Equal("permission_error", error["error"]!["type"]!.GetValue<string>());
    }
}
