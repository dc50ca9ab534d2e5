using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Anthropic;
using Anthropic.Core;
using Anthropic.Models.Messages;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Gateway.Tests.Metering;
using OpenAI;
using OpenAI.Chat;

namespace Lattice.Gateway.Tests.Upstreams;

/// <summary>
/// One model, <c>lovelace:claude-echo</c>, served by an Anthropic upstream (the stand-in's <c>/v1/messages</c>) to both
/// client families: the Anthropic SDK's bytes pass through with only the model replaced; the OpenAI SDK's chat is
/// translated to Messages and back.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class AnthropicUpstreamTests(GatewayFixture gateway)
{
    private const string Model = GatewayFixture.ClaudeModel;
    private const string UpstreamModel = "claude-standin";

    /// <summary>Keeps the last request body a client sent, to compare with what the upstream received.</summary>
    private sealed class Recorder(HttpMessageHandler inner) : DelegatingHandler(inner)
    {
        public string? LastBody { get; private set; }

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            if (request.Content is not null)
            {
                LastBody = Encoding.UTF8.GetString(await request.Content.ReadAsByteArrayAsync(cancellationToken));
            }
            return await base.SendAsync(request, cancellationToken);
        }
    }

    private (AnthropicClient Client, Recorder Recorder) AnthropicSdk()
    {
        var recorder = new Recorder(gateway.Factory.Server.CreateHandler());
        var client = new AnthropicClient(new ClientOptions
        {
            ApiKey = gateway.ApiKey,
            BaseUrl = gateway.Factory.Server.BaseAddress.ToString().TrimEnd('/'),
            HttpClient = new HttpClient(recorder) { BaseAddress = gateway.Factory.Server.BaseAddress },
            MaxRetries = 0,
        });
        return (client, recorder);
    }

    private ChatClient OpenAiSdk(string model = Model) => new OpenAIClient(new ApiKeyCredential(gateway.ApiKey), new OpenAIClientOptions
    {
        Endpoint = new Uri(gateway.Factory.Server.BaseAddress, "/v1"),
        Transport = new HttpClientPipelineTransport(gateway.Factory.CreateClient()),
        RetryPolicy = new ClientRetryPolicy(0),
    }).GetChatClient(model);

    private async Task<JsonObject> UpstreamReceivedAsync() => await gateway.LastUpstreamRequestAsync("/v1/messages");

    private static string Body(JsonObject received) => Encoding.UTF8.GetString(Convert.FromBase64String(received["body_base64"]!.GetValue<string>()));

    private static string Header(JsonObject received, string name) =>
        received["headers"]!.AsObject().First(h => string.Equals(h.Key, name, StringComparison.OrdinalIgnoreCase)).Value!.GetValue<string>();

    /// <summary>The upstream got the client's bytes, the model's value alone replaced, with Anthropic's headers.</summary>
    private async Task AssertPassedThroughAsync(string clientBody)
    {
        var modelToken = $"\"model\":\"{Model}\"";
        Assert.Contains(modelToken, clientBody, StringComparison.Ordinal);
        var received = await UpstreamReceivedAsync();
        Assert.Equal(clientBody.Replace(modelToken, $"\"model\":\"{UpstreamModel}\"", StringComparison.Ordinal), Body(received));
        Assert.Equal(GatewayFixture.UpstreamKey, Header(received, "x-api-key"));
        Assert.Equal("2023-06-01", Header(received, "anthropic-version"));
        Assert.DoesNotContain(received["headers"]!.AsObject(), h => h.Key.Equals("Authorization", StringComparison.OrdinalIgnoreCase));
    }

    private static Tool Weather() => new()
    {
        Name = "get_weather",
        Description = "Current weather",
        InputSchema = new InputSchema
        {
            Properties = new Dictionary<string, JsonElement> { ["city"] = JsonSerializer.SerializeToElement(new { type = "string" }) },
            Required = ["city"],
        },
    };

    // ---- Anthropic clients: pass-through ----

    [Fact]
    public async Task The_anthropic_sdk_creates_a_message_through_the_anthropic_upstream_untouched()
    {
        var (client, recorder) = AnthropicSdk();
        var message = await client.Messages.Create(new MessageCreateParams { Model = Model, MaxTokens = 100, Messages = [new UserMessageParam("hello there")] });

        // The stand-in's own Message, not one the gateway wrote (its id), naming the model the client asked for.
        Assert.StartsWith("msg_standin_", message.ID, StringComparison.Ordinal);
        Assert.Equal(Model, message.Model.Raw());
        Assert.True(message.Content.Single().TryPickText(out var text));
        Assert.Equal("You said: hello there", text.Text);
        Assert.Equal(StopReason.EndTurn, message.StopReason!.Value());
        Assert.Equal(2, message.Usage.InputTokens);
        Assert.Equal(4, message.Usage.OutputTokens);
        await AssertPassedThroughAsync(recorder.LastBody!);
    }

    [Fact]
    public async Task The_anthropic_sdk_streams_through_the_anthropic_upstream_untouched()
    {
        var (client, recorder) = AnthropicSdk();
        var text = new StringBuilder();
        string? id = null;
        long? outputTokens = null;
        await foreach (var ev in client.Messages.CreateStreaming(new MessageCreateParams { Model = Model, MaxTokens = 100, Messages = [new UserMessageParam("hello there")] }))
        {
            if (ev.TryPickStart(out var start))
            {
                id = start.Message.ID;
            }
            else if (ev.TryPickContentBlockDelta(out var delta) && delta.Delta.TryPickText(out var piece))
            {
                text.Append(piece.Text);
            }
            else if (ev.TryPickDelta(out var messageDelta))
            {
                outputTokens = messageDelta.Usage.OutputTokens;
            }
        }
        Assert.Equal("You said: hello there", text.ToString());
        Assert.StartsWith("msg_standin_", id, StringComparison.Ordinal);
        Assert.Equal(4, outputTokens);
        await AssertPassedThroughAsync(recorder.LastBody!);
    }

    [Fact]
    public async Task A_stream_reaches_the_anthropic_client_event_for_event()
    {
        using var client = gateway.Client();
        client.DefaultRequestHeaders.Add("x-api-key", gateway.ApiKey);
        client.DefaultRequestHeaders.Add("anthropic-version", "2023-06-01");
        // Odd spacing and member order: only the model's value may change on the way.
        var body = $$"""{ "max_tokens" : 100, "stream": true,  "messages": [{"role":"user","content":"hi"}], "model":"{{Model}}" }""";
        using var response = await client.PostAsync("/v1/messages", new StringContent(body, Encoding.UTF8, "application/json"));
        var answer = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(body.Replace($"\"model\":\"{Model}\"", $"\"model\":\"{UpstreamModel}\"", StringComparison.Ordinal), Body(await UpstreamReceivedAsync()));
        var names = answer.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e.Split('\n')[0]).ToArray();
        Assert.Equal(
            ["event: message_start", "event: content_block_start", "event: ping", "event: content_block_delta", "event: content_block_delta",
             "event: content_block_delta", "event: content_block_stop", "event: message_delta", "event: message_stop"],
            names);
        Assert.Contains("""data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" hi"}}""", answer, StringComparison.Ordinal);
        Assert.EndsWith("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", answer, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_anthropic_sdk_does_a_tool_round_trip_through_the_anthropic_upstream()
    {
        var (client, recorder) = AnthropicSdk();
        MessageParam question = new UserMessageParam("weather in Paris");
        var first = await client.Messages.Create(new MessageCreateParams
        {
            Model = Model,
            MaxTokens = 100,
            Messages = [question],
            Tools = [Weather()],
            ToolChoice = new ToolChoiceAny(),
        });
        Assert.Equal(StopReason.ToolUse, first.StopReason!.Value());
        Assert.True(first.Content.Single().TryPickToolUse(out var use));
        Assert.Equal("toolu_standin_1", use.ID);
        Assert.Equal("get_weather", use.Name);
        Assert.Equal("weather in Paris", use.Input["echo"].GetString());
        await AssertPassedThroughAsync(recorder.LastBody!);

        var second = await client.Messages.Create(new MessageCreateParams
        {
            Model = Model,
            MaxTokens = 100,
            Messages =
            [
                question,
                new AssistantMessageParam { Content = new List<ContentBlockParam> { new ToolUseBlockParam { ID = use.ID, Name = use.Name, Input = use.Input } } },
                new UserMessageParam { Content = new List<ContentBlockParam> { new ToolResultBlockParam { ToolUseID = use.ID, Content = "18C and sunny" } } },
            ],
            Tools = [Weather()],
            ToolChoice = new ToolChoiceAuto(),
        });
        Assert.True(second.Content.Single().TryPickText(out var text));
        Assert.Equal("You said: weather in Paris", text.Text);
        await AssertPassedThroughAsync(recorder.LastBody!);
    }

    // ---- OpenAI clients: translated ----

    [Fact]
    public async Task The_openai_sdk_chats_with_the_anthropic_upstream()
    {
        ChatCompletion completion = await OpenAiSdk().CompleteChatAsync([new SystemChatMessage("be brief"), new UserChatMessage("hello there")]);

        Assert.Equal("You said: hello there", completion.Content.Single().Text);
        Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
        Assert.StartsWith("msg_standin_", completion.Id, StringComparison.Ordinal);
        // The stand-in counts the system text too: "be brief hello there".
        Assert.Equal(4, completion.Usage.InputTokenCount);
        Assert.Equal(4, completion.Usage.OutputTokenCount);
        var received = await UpstreamReceivedAsync();
        Assert.Equal(
            """{"model":"claude-standin","max_tokens":4096,"system":[{"type":"text","text":"be brief"}],"messages":[{"role":"user","content":[{"type":"text","text":"hello there"}]}]}""",
            Body(received));
        Assert.Equal(GatewayFixture.UpstreamKey, Header(received, "x-api-key"));
        Assert.Equal("2023-06-01", Header(received, "anthropic-version"));
    }

    [Fact]
    public async Task The_openai_sdk_streams_from_the_anthropic_upstream_with_usage()
    {
        var text = new StringBuilder();
        var ids = new HashSet<string>();
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        await foreach (var update in OpenAiSdk().CompleteChatStreamingAsync([new UserChatMessage("stream this please")]))
        {
            ids.Add(update.CompletionId);
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }
            usage ??= update.Usage;
            finish ??= update.FinishReason;
        }
        Assert.Equal("You said: stream this please", text.ToString());
        Assert.Single(ids);
        Assert.Equal(ChatFinishReason.Stop, finish);
        Assert.NotNull(usage);
        Assert.Equal(3, usage.InputTokenCount);
        Assert.Equal(5, usage.OutputTokenCount);
        Assert.Contains("\"stream\":true", Body(await UpstreamReceivedAsync()), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_translated_stream_without_include_usage_is_chats_exact_shape()
    {
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/v1/chat/completions", new StringContent(
            $$"""{"model":"{{Model}}","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":10}""", Encoding.UTF8, "application/json"));
        var body = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = Sse.DataEvents(body);
        var id = JsonNode.Parse(events[0])!["id"]!.GetValue<string>();
        var created = JsonNode.Parse(events[0])!["created"]!.GetValue<long>();
        string Chunk(string delta, string? finish) =>
            $$"""{"id":"{{id}}","object":"chat.completion.chunk","created":{{created}},"model":"{{Model}}","choices":[{"index":0,"delta":{{delta}},"logprobs":null,"finish_reason":{{(finish is null ? "null" : $"\"{finish}\"")}}}]}""";
        Assert.Equal(
            [
                Chunk("""{"role":"assistant","content":"","refusal":null}""", null),
                Chunk("""{"content":"You"}""", null),
                Chunk("""{"content":" said:"}""", null),
                Chunk("""{"content":" hi"}""", null),
                Chunk("{}", "stop"),
                "[DONE]",
            ],
            events);
        Assert.Equal(
            """{"model":"claude-standin","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"stream":true}""",
            Body(await UpstreamReceivedAsync()));
    }

    [Fact]
    public async Task The_openai_sdk_does_a_tool_round_trip_through_the_anthropic_upstream()
    {
        var chat = OpenAiSdk();
        var options = new ChatCompletionOptions
        {
            Tools = { ChatTool.CreateFunctionTool("get_weather", "Current weather", BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string"}}}""")) },
            ToolChoice = ChatToolChoice.CreateRequiredChoice(),
        };
        List<ChatMessage> messages = [new UserChatMessage("weather in Paris")];
        ChatCompletion first = await chat.CompleteChatAsync(messages, options);

        Assert.Equal(ChatFinishReason.ToolCalls, first.FinishReason);
        var call = Assert.Single(first.ToolCalls);
        Assert.Equal("toolu_standin_1", call.Id);
        Assert.Equal("get_weather", call.FunctionName);
        Assert.Equal("""{"echo":"weather in Paris"}""", call.FunctionArguments.ToString());
        Assert.Equal(
            """{"model":"claude-standin","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"weather in Paris"}]}],"tools":[{"name":"get_weather","description":"Current weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],"tool_choice":{"type":"any"}}""",
            Body(await UpstreamReceivedAsync()));

        messages.Add(new AssistantChatMessage(first));
        messages.Add(new ToolChatMessage(call.Id, "18C and sunny"));
        ChatCompletion second = await chat.CompleteChatAsync(messages, new ChatCompletionOptions { Tools = { options.Tools[0] } });

        Assert.Equal("You said: weather in Paris", second.Content.Single().Text);
        using var sent = JsonDocument.Parse(Body(await UpstreamReceivedAsync()));
        Assert.Equal(
            """[{"role":"user","content":[{"type":"text","text":"weather in Paris"}]},{"role":"assistant","content":[{"type":"tool_use","id":"toolu_standin_1","name":"get_weather","input":{"echo":"weather in Paris"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_standin_1","content":"18C and sunny"}]}]""",
            sent.RootElement.GetProperty("messages").GetRawText());
    }

    [Fact]
    public async Task The_openai_sdk_streams_a_tool_call_from_the_anthropic_upstream()
    {
        var options = new ChatCompletionOptions
        {
            Tools = { ChatTool.CreateFunctionTool("get_weather", "Current weather", BinaryData.FromString("""{"type":"object"}""")) },
            ToolChoice = ChatToolChoice.CreateFunctionChoice("get_weather"),
        };
        var arguments = new StringBuilder();
        string? id = null, name = null;
        ChatFinishReason? finish = null;
        await foreach (var update in OpenAiSdk().CompleteChatStreamingAsync([new UserChatMessage("weather in Paris")], options))
        {
            foreach (var part in update.ToolCallUpdates)
            {
                Assert.Equal(0, part.Index);
                id ??= part.ToolCallId;
                name ??= part.FunctionName;
                arguments.Append(part.FunctionArgumentsUpdate?.ToString());
            }
            finish ??= update.FinishReason;
        }
        Assert.Equal("toolu_standin_1", id);
        Assert.Equal("get_weather", name);
        Assert.Equal("""{"echo":"weather in Paris"}""", arguments.ToString());
        Assert.Equal(ChatFinishReason.ToolCalls, finish);
        Assert.Contains("\"tool_choice\":{\"type\":\"tool\",\"name\":\"get_weather\"}", Body(await UpstreamReceivedAsync()), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("\"n\":2", "n")]
    [InlineData("\"logprobs\":true", "logprobs")]
    [InlineData("\"response_format\":{\"type\":\"json_object\"}", "response_format")]
    [InlineData("\"temperature\":1.5", "temperature")]
    [InlineData("\"seed\":7", "seed")]
    public async Task A_chat_field_a_messages_request_cannot_carry_is_a_400_naming_it(string field, string param)
    {
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/v1/chat/completions", new StringContent(
            $$"""{"model":"{{Model}}","messages":[{"role":"user","content":"hi"}],{{field}}}""", Encoding.UTF8, "application/json"));
        var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("invalid_request_error", error["type"]!.GetValue<string>());
        Assert.Equal(param, error["param"]!.GetValue<string>());
        Assert.StartsWith(param + ":", error["message"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    // ---- failover and errors ----

    [Fact]
    public async Task An_overloaded_anthropic_upstream_fails_over_to_the_next_offer_for_both_client_families()
    {
        var (client, _) = AnthropicSdk();
        var message = await client.Messages.Create(new MessageCreateParams { Model = GatewayFixture.ClaudeFailoverModel, MaxTokens = 100, Messages = [new UserMessageParam("hello there")] });
        Assert.True(message.Content.Single().TryPickText(out var text));
        Assert.Equal("You said: hello there", text.Text);

        ChatCompletion completion = await OpenAiSdk(GatewayFixture.ClaudeFailoverModel).CompleteChatAsync([new UserChatMessage("hello there")]);
        Assert.Equal("You said: hello there", completion.Content.Single().Text);
    }

    [Fact]
    public async Task An_overloaded_anthropic_upstream_with_no_other_offer_is_explained_in_each_surfaces_envelope()
    {
        using var anthropic = gateway.Client();
        anthropic.DefaultRequestHeaders.Add("x-api-key", gateway.ApiKey);
        anthropic.DefaultRequestHeaders.Add("anthropic-version", "2023-06-01");
        using var messages = await anthropic.PostAsync("/v1/messages", new StringContent(
            $$"""{"model":"{{GatewayFixture.ClaudeOverloadedModel}}","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}""", Encoding.UTF8, "application/json"));
        var anthropicError = JsonNode.Parse(await messages.Content.ReadAsStringAsync())!;
        Assert.Equal(HttpStatusCode.BadGateway, messages.StatusCode);
        Assert.Equal("error", anthropicError["type"]!.GetValue<string>());
        Assert.Equal("Overloaded", anthropicError["error"]!["message"]!.GetValue<string>());

        using var chat = gateway.DevClient();
        using var completions = await chat.PostAsync("/v1/chat/completions", new StringContent(
            $$"""{"model":"{{GatewayFixture.ClaudeOverloadedModel}}","messages":[{"role":"user","content":"hi"}]}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadGateway, completions.StatusCode);
        Assert.Equal(
            """{"error":{"message":"Overloaded","type":"overloaded_error","param":null,"code":null}}""",
            await completions.Content.ReadAsStringAsync());
    }

    // ---- admin ----

    [Fact]
    public async Task An_offer_says_its_kind_and_an_unknown_kind_is_refused_naming_it()
    {
        using var listed = await gateway.Admin.GetAsync("/admin/v1/models");
        var models = JsonNode.Parse(await listed.Content.ReadAsStringAsync())!["data"]!.AsArray();
        Assert.Equal("anthropic", models.Single(m => m!["id"]!.GetValue<string>() == Model)!["offers"]![0]!["kind"]!.GetValue<string>());
        Assert.Equal("upstream", models.Single(m => m!["id"]!.GetValue<string>() == "lovelace:chat")!["offers"]![0]!["kind"]!.GetValue<string>());

        var offer = GatewayFixture.Offer(gateway.StandInUrl, "x");
        offer["kind"] = "gemini";
        using var refused = await gateway.Admin.PostAsJsonAsync("/admin/v1/models", new JsonObject { ["id"] = "lovelace:kind-test", ["offers"] = new JsonArray(offer) });
        var error = JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!;
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Equal("offers[0].kind", error["param"]!.GetValue<string>());
    }

    // ---- metering ----

    [Fact]
    public async Task Usage_is_the_same_streamed_or_not_through_either_surface()
    {
        using var anthropic = gateway.Client();
        anthropic.DefaultRequestHeaders.Add("x-api-key", gateway.ApiKey);
        anthropic.DefaultRequestHeaders.Add("anthropic-version", "2023-06-01");
        using var chat = gateway.DevClient();
        var requests = new (HttpClient Client, string Path, string Body, string Surface, bool Stream)[]
        {
            (anthropic, "/v1/messages", $$"""{"model":"{{Model}}","max_tokens":50,"messages":[{"role":"user","content":"hello there"}]}""", Surfaces.Anthropic, false),
            (anthropic, "/v1/messages", $$"""{"model":"{{Model}}","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"hello there"}]}""", Surfaces.Anthropic, true),
            (chat, "/v1/chat/completions", $$"""{"model":"{{Model}}","messages":[{"role":"user","content":"hello there"}]}""", Surfaces.OpenAi, false),
            (chat, "/v1/chat/completions", $$"""{"model":"{{Model}}","stream":true,"messages":[{"role":"user","content":"hello there"}]}""", Surfaces.OpenAi, true),
            (chat, "/v1/chat/completions", $$"""{"model":"{{Model}}","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello there"}]}""", Surfaces.OpenAi, true),
        };
        foreach (var (client, path, body, surface, stream) in requests)
        {
            using var response = await client.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
            var answer = await response.Content.ReadAsStringAsync();
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            if (surface == Surfaces.OpenAi && stream && !body.Contains("include_usage", StringComparison.Ordinal))
            {
                // The gateway's own usage chunk was taken out again.
                Assert.DoesNotContain("\"usage\"", answer, StringComparison.Ordinal);
            }
            var record = await Ledger.RecordAsync(gateway.Factory.Services, response.Headers.GetValues("x-request-id").Single());
            Assert.Equal(UsageStatuses.Ok, record.Status);
            Assert.Equal(surface, record.Surface);
            Assert.Equal(stream, record.Stream);
            Assert.Equal(ServedByKinds.Upstream, record.ServedBy);
            Assert.Equal(new Lattice.Protocol.Metering.Usage(2, 4, 6), record.Usage);
        }
    }
}
