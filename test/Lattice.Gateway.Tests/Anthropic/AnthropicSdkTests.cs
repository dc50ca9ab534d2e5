using System.Text;
using System.Text.Json.Nodes;
using Anthropic;
using Anthropic.Core;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;
using Lattice.Gateway.Tests.Infrastructure;

namespace Lattice.Gateway.Tests.Anthropic;

/// <summary>The official NuGet <c>Anthropic</c> client, unmodified, against the in-process gateway.</summary>
[Collection(GatewayCollection.Name)]
public sealed class AnthropicSdkTests(GatewayFixture gateway)
{
    /// <summary>The SDK pointed at the test server: its base URL and an HttpClient that reaches it; no retries.</summary>
    internal static AnthropicClient Sdk(GatewayFixture gateway, string key) => new(new ClientOptions
    {
        ApiKey = key,
        BaseUrl = gateway.Factory.Server.BaseAddress.ToString().TrimEnd('/'),
        HttpClient = gateway.Factory.CreateClient(),
        MaxRetries = 0,
    });

    private static MessageCreateParams Hello(string model = "lovelace:chat") => new()
    {
        Model = model,
        MaxTokens = 100,
        Messages = [new UserMessageParam("hello there")],
    };

    [Fact]
    public async Task The_sdk_creates_a_message()
    {
        var client = Sdk(gateway, gateway.ApiKey);
        var message = await client.Messages.Create(Hello());

        Assert.StartsWith("msg_", message.ID, StringComparison.Ordinal);
        Assert.Equal("lovelace:chat", message.Model.Raw());
        Assert.True(message.Content.Single().TryPickText(out var text));
        Assert.Equal("You said: hello there", text.Text);
        Assert.Equal(StopReason.EndTurn, message.StopReason!.Value());
        Assert.Equal(2, message.Usage.InputTokens);
        Assert.Equal(4, message.Usage.OutputTokens);
    }

    [Fact]
    public async Task The_sdk_streams_a_message()
    {
        var client = Sdk(gateway, gateway.ApiKey);
        var text = new StringBuilder();
        var kinds = new List<string>();
        StopReason? stop = null;
        long? outputTokens = null;
        await foreach (var ev in client.Messages.CreateStreaming(Hello()))
        {
            if (ev.TryPickStart(out _))
            {
                kinds.Add("message_start");
            }
            else if (ev.TryPickContentBlockStart(out _))
            {
                kinds.Add("content_block_start");
            }
            else if (ev.TryPickContentBlockDelta(out var delta))
            {
                kinds.Add("content_block_delta");
                Assert.True(delta.Delta.TryPickText(out var piece));
                text.Append(piece.Text);
            }
            else if (ev.TryPickContentBlockStop(out _))
            {
                kinds.Add("content_block_stop");
            }
            else if (ev.TryPickDelta(out var messageDelta))
            {
                kinds.Add("message_delta");
                stop = messageDelta.Delta.StopReason?.Value();
                outputTokens = messageDelta.Usage.OutputTokens;
            }
            else if (ev.TryPickStop(out _))
            {
                kinds.Add("message_stop");
            }
        }

        Assert.Equal("You said: hello there", text.ToString());
        Assert.Equal(
            ["message_start", "content_block_start", "content_block_delta", "content_block_delta", "content_block_delta", "content_block_delta",
             "content_block_stop", "message_delta", "message_stop"],
            kinds);
        Assert.Equal(StopReason.EndTurn, stop);
        Assert.Equal(4, outputTokens);
    }

    [Fact]
    public async Task A_bad_key_is_the_sdks_unauthorized_exception()
    {
        var client = Sdk(gateway, "sk_not_a_real_key");
        var error = await Assert.ThrowsAsync<AnthropicUnauthorizedException>(() => client.Messages.Create(Hello()));
        Assert.False(string.IsNullOrEmpty(error.RequestID));
    }

    [Fact]
    public async Task An_unknown_model_is_the_sdks_not_found_exception()
    {
        var client = Sdk(gateway, gateway.ApiKey);
        await Assert.ThrowsAsync<AnthropicNotFoundException>(() => client.Messages.Create(Hello("lovelace:nope")));
    }

    [Fact]
    public async Task A_request_the_gateway_cannot_translate_yet_is_the_sdks_bad_request_exception()
    {
        var client = Sdk(gateway, gateway.ApiKey);
        // More stop sequences than the chat targets take.
        var request = Hello() with { StopSequences = ["a", "b", "c", "d", "e"] };
        await Assert.ThrowsAsync<AnthropicBadRequestException>(() => client.Messages.Create(request));
    }

    [Fact]
    public async Task The_sdk_does_a_tool_round_trip()
    {
        var client = Sdk(gateway, gateway.ApiKey);
        var weather = new Tool
        {
            Name = "get_weather",
            Description = "Current weather",
            InputSchema = new InputSchema
            {
                Properties = new Dictionary<string, System.Text.Json.JsonElement>
                {
                    ["city"] = System.Text.Json.JsonSerializer.SerializeToElement(new { type = "string" }),
                },
                Required = ["city"],
            },
        };
        MessageParam question = new UserMessageParam("weather in Paris");
        var first = await client.Messages.Create(new MessageCreateParams
        {
            Model = "lovelace:chat",
            MaxTokens = 100,
            Messages = [question],
            Tools = [weather],
            ToolChoice = new ToolChoiceAny(),
        });

        Assert.Equal(StopReason.ToolUse, first.StopReason!.Value());
        Assert.True(first.Content.Single().TryPickToolUse(out var use));
        Assert.Equal("toolu_standin_1", use.ID);
        Assert.Equal("get_weather", use.Name);
        Assert.Equal("weather in Paris", use.Input["echo"].GetString());

        var second = await client.Messages.Create(new MessageCreateParams
        {
            Model = "lovelace:chat",
            MaxTokens = 100,
            Messages =
            [
                question,
                new AssistantMessageParam { Content = new List<ContentBlockParam> { new ToolUseBlockParam { ID = use.ID, Name = use.Name, Input = use.Input } } },
                new UserMessageParam { Content = new List<ContentBlockParam> { new ToolResultBlockParam { ToolUseID = use.ID, Content = "18C and sunny" } } },
            ],
            Tools = [weather],
            ToolChoice = new ToolChoiceAuto(),
        });

        Assert.Equal(StopReason.EndTurn, second.StopReason!.Value());
        Assert.True(second.Content.Single().TryPickText(out var text));
        Assert.Equal("You said: weather in Paris", text.Text);
        var last = await gateway.LastUpstreamRequestAsync("/v1/chat/completions");
        var received = JsonNode.Parse(Convert.FromBase64String(last["body_base64"]!.GetValue<string>()))!;
        Assert.Equal("""{"role":"tool","tool_call_id":"toolu_standin_1","content":"18C and sunny"}""", received["messages"]![2]!.ToJsonString());
    }

    [Fact]
    public async Task The_sdk_sends_images_base64_and_by_url()
    {
        var client = Sdk(gateway, gateway.ApiKey);
        var message = await client.Messages.Create(new MessageCreateParams
        {
            Model = "lovelace:chat",
            MaxTokens = 100,
            Messages =
            [
                new UserMessageParam
                {
                    Content = new List<ContentBlockParam>
                    {
                        new TextBlockParam("compare these"),
                        new ImageBlockParam(new Base64ImageSource { Data = "iVBORw0KGgo=", MediaType = MediaType.ImagePng }),
                        new ImageBlockParam(new UrlImageSource("https://example.com/cat.jpg")),
                    },
                },
            ],
        });

        Assert.True(message.Content.Single().TryPickText(out var text));
        Assert.Equal("You said: compare these", text.Text);
        var last = await gateway.LastUpstreamRequestAsync("/v1/chat/completions");
        var received = JsonNode.Parse(Convert.FromBase64String(last["body_base64"]!.GetValue<string>()))!;
        Assert.Equal(
            """[{"type":"text","text":"compare these"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},{"type":"image_url","image_url":{"url":"https://example.com/cat.jpg"}}]""",
            received["messages"]![0]!["content"]!.ToJsonString());
    }

    [Fact]
    public async Task The_sdk_counts_tokens()
    {
        var client = Sdk(gateway, gateway.ApiKey);
        var count = await client.Messages.CountTokens(new MessageCountTokensParams
        {
            Model = "lovelace:chat",
            System = "be brief",
            Messages = [new UserMessageParam("hello there")],
        });
        // 3 + "system" 1 + "be brief" 2, 3 + "user" 1 + "hello there" 2, and the reply's 3 (o200k_base).
        Assert.Equal(15, count.InputTokens);
    }

    [Fact]
    public async Task Counting_tokens_for_an_unknown_model_is_the_sdks_not_found_exception()
    {
        var client = Sdk(gateway, gateway.ApiKey);
        await Assert.ThrowsAsync<AnthropicNotFoundException>(() => client.Messages.CountTokens(new MessageCountTokensParams
        {
            Model = "lovelace:nope",
            Messages = [new UserMessageParam("hello there")],
        }));
    }

    [Fact]
    public async Task The_sdk_lists_and_retrieves_models()
    {
        var client = Sdk(gateway, gateway.ApiKey);
        var ids = new List<string>();
        var page = await client.Models.List(new global::Anthropic.Models.Models.ModelListParams { Limit = 2 });
        while (true)
        {
            Assert.True(page.Items.Count <= 2);
            ids.AddRange(page.Items.Select(m => m.ID));
            if (!page.HasNext())
            {
                break;
            }
            page = await page.Next();
        }
        Assert.Contains("lovelace:chat", ids);
        Assert.Equal(ids.Count, ids.Distinct().Count());

        var model = await client.Models.Retrieve("lovelace:chat");
        Assert.Equal("lovelace:chat", model.ID);
        Assert.Equal("lovelace:chat", model.DisplayName);
        Assert.NotEqual(default, model.CreatedAt);

        await Assert.ThrowsAsync<AnthropicNotFoundException>(() => client.Models.Retrieve("lovelace:nope"));
    }
}
