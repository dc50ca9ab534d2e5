using System.ClientModel;
using System.ClientModel.Primitives;
using System.Text;
using Lattice.Gateway.Tests.Infrastructure;
using OpenAI.Responses;

// The Responses client of the official SDK is marked experimental (OPENAI001) in the pinned version.
#pragma warning disable OPENAI001

namespace Lattice.Gateway.Tests.Responses;

/// <summary>The official NuGet <c>OpenAI</c> client's <see cref="ResponsesClient"/>, unmodified, against the in-process gateway.</summary>
[Collection(GatewayCollection.Name)]
public sealed class ResponsesSdkTests(GatewayFixture gateway)
{
    private const string Model = "lovelace:chat";

    /// <summary>The SDK pointed at the test server through its HttpClient; no retries.</summary>
    private ResponsesClient Sdk() => new(new ApiKeyCredential(gateway.ApiKey), new ResponsesClientOptions
    {
        Endpoint = new Uri(gateway.Factory.Server.BaseAddress, "v1"),
        Transport = new HttpClientPipelineTransport(gateway.Factory.CreateClient()),
        RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
    });

    private async Task<string> UpstreamChatBodyAsync()
    {
        var last = await gateway.LastUpstreamRequestAsync("/v1/chat/completions");
        return Encoding.UTF8.GetString(Convert.FromBase64String(last["body_base64"]!.GetValue<string>()));
    }

    [Fact]
    public async Task The_sdk_creates_a_response()
    {
        ResponseResult response = await Sdk().CreateResponseAsync(Model, "hello there");

        Assert.StartsWith("resp_", response.Id, StringComparison.Ordinal);
        Assert.Equal(Model, response.Model);
        Assert.Equal(ResponseStatus.Completed, response.Status);
        Assert.Equal("You said: hello there", response.GetOutputText());
        var message = Assert.IsAssignableFrom<MessageResponseItem>(Assert.Single(response.OutputItems));
        Assert.Equal("msg_" + response.Id["resp_".Length..], message.Id);
        Assert.Equal(2, response.Usage.InputTokenCount);
        Assert.Equal(4, response.Usage.OutputTokenCount);
        Assert.Equal(6, response.Usage.TotalTokenCount);
    }

    [Fact]
    public async Task The_sdk_streams_a_response()
    {
        var text = new StringBuilder();
        var sequence = new List<int>();
        ResponseResult? completed = null;
        await foreach (var update in await Sdk().CreateResponseStreamingAsync(Model, "hello there"))
        {
            sequence.Add(update.SequenceNumber);
            if (update is StreamingResponseOutputTextDeltaUpdate delta)
            {
                text.Append(delta.Delta);
            }
            else if (update is StreamingResponseCompletedUpdate done)
            {
                completed = done.Response;
            }
        }

        Assert.Equal("You said: hello there", text.ToString());
        Assert.Equal(Enumerable.Range(0, sequence.Count), sequence);
        Assert.NotNull(completed);
        Assert.Equal("You said: hello there", completed.GetOutputText());
        Assert.Equal(2, completed.Usage.InputTokenCount);
        Assert.Equal(4, completed.Usage.OutputTokenCount);
    }

    [Fact]
    public async Task The_sdk_runs_a_function_calling_round_trip()
    {
        var client = Sdk();
        var weather = ResponseTool.CreateFunctionTool("get_weather",
            BinaryData.FromString("""{"type":"object","properties":{"echo":{"type":"string"}},"required":["echo"]}"""),
            strictModeEnabled: false, functionDescription: "Current weather");
        List<ResponseItem> conversation = [ResponseItem.CreateUserMessageItem("weather in Paris")];
        var options = new CreateResponseOptions(Model, conversation) { Tools = { weather }, ToolChoice = ResponseToolChoice.CreateRequiredChoice() };

        ResponseResult first = await client.CreateResponseAsync(options);
        var call = Assert.IsType<FunctionCallResponseItem>(Assert.Single(first.OutputItems));
        Assert.Equal("call_standin_1", call.CallId);
        Assert.Equal("get_weather", call.FunctionName);
        Assert.Equal("""{"echo":"weather in Paris"}""", call.FunctionArguments.ToString());

        // The call and its output go back as items; the model answers from there.
        conversation.Add(call);
        conversation.Add(ResponseItem.CreateFunctionCallOutputItem(call.CallId, "18C and sunny"));
        ResponseResult second = await client.CreateResponseAsync(new CreateResponseOptions(Model, conversation) { Tools = { weather } });

        Assert.Equal("You said: weather in Paris", second.GetOutputText());
        Assert.Equal(
            """{"model":"standin-chat","messages":[{"role":"user","content":[{"type":"text","text":"weather in Paris"}]},{"role":"assistant","content":null,"tool_calls":[{"id":"call_standin_1","type":"function","function":{"name":"get_weather","arguments":"{\"echo\":\"weather in Paris\"}"}}]},{"role":"tool","tool_call_id":"call_standin_1","content":"18C and sunny"}],"tools":[{"type":"function","function":{"name":"get_weather","description":"Current weather","parameters":{"type":"object","properties":{"echo":{"type":"string"}},"required":["echo"]},"strict":false}}]}""",
            await UpstreamChatBodyAsync());
    }

    [Fact]
    public async Task The_sdk_continues_with_previous_response_id_then_gets_and_deletes_it()
    {
        var client = Sdk();
        ResponseResult first = await client.CreateResponseAsync(Model, "hello there");
        ResponseResult second = await client.CreateResponseAsync(Model, "and now?", previousResponseId: first.Id);

        Assert.Equal(first.Id, second.PreviousResponseId);
        Assert.Equal("You said: and now?", second.GetOutputText());
        Assert.Equal(
            """{"model":"standin-chat","messages":[{"role":"user","content":[{"type":"text","text":"hello there"}]},{"role":"assistant","content":"You said: hello there"},{"role":"user","content":[{"type":"text","text":"and now?"}]}]}""",
            await UpstreamChatBodyAsync());

        ResponseResult got = await client.GetResponseAsync(first.Id);
        Assert.Equal(first.Id, got.Id);
        Assert.Equal("You said: hello there", got.GetOutputText());

        ResponseDeletionResult deleted = await client.DeleteResponseAsync(first.Id);
        Assert.True(deleted.Deleted);
        Assert.Equal(first.Id, deleted.ResponseId);
        var missing = await Assert.ThrowsAsync<ClientResultException>(() => client.GetResponseAsync(first.Id));
        Assert.Equal(404, missing.Status);
    }

    [Fact]
    public async Task The_sdk_gets_a_400_naming_a_built_in_tool()
    {
        var options = new CreateResponseOptions(Model, [ResponseItem.CreateUserMessageItem("hi")])
        {
            Tools = { ResponseTool.CreateWebSearchTool() },
        };
        var error = await Assert.ThrowsAsync<ClientResultException>(() => Sdk().CreateResponseAsync(options));
        Assert.Equal(400, error.Status);
        Assert.Contains("tools[0].type: built-in tools ('web_search') are not supported", error.Message, StringComparison.Ordinal);
    }
}
