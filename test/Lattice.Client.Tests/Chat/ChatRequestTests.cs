using System.Net;
using Lattice.Client.Tests.Infrastructure;
using Microsoft.Extensions.AI;

namespace Lattice.Client.Tests.Chat;

/// <summary>The exact chat body the abstraction's messages and options become.</summary>
public sealed class ChatRequestTests
{
    [Fact]
    public async Task Messages_parts_tool_calls_results_and_options_become_this_body()
    {
        var transport = new ScriptedTransport(_ => ScriptedTransport.Json(HttpStatusCode.OK, ScriptedTransport.Completion));
        using var lattice = new LatticeClient(new LatticeClientOptions
        {
            Endpoint = new Uri("http://lattice.test"), TokenProvider = new DeveloperKeyTokenProvider("sk_x"), Transport = transport,
        });
        ChatMessage[] messages =
        [
            new(ChatRole.User, [new TextContent("what is this, café?"), new DataContent(new byte[] { 1, 2, 3 }, "image/png")]),
            new(ChatRole.Assistant, [new FunctionCallContent("call_1", "look", new Dictionary<string, object?> { ["x"] = 1 })]),
            new(ChatRole.Tool, [new FunctionResultContent("call_1", "a \"cat\"")]),
        ];
        var options = new ChatOptions
        {
            Instructions = "be brief", Temperature = 0.7f, MaxOutputTokens = 5, Seed = 3, StopSequences = ["x"],
            AdditionalProperties = new() { ["user"] = "u-1" },
        };
        await lattice.GetChatClient("lovelace:chat").GetResponseAsync(messages, options);

        var sent = transport.Sent.Single();
        Assert.Equal("/v1/chat/completions", sent.Path);
        Assert.Equal("Bearer sk_x", sent.Authorization);
        Assert.Equal(
            """{"model":"lovelace:chat","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"what is this, café?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AQID"}}]},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"look","arguments":"{\"x\":1}"}}]},{"role":"tool","tool_call_id":"call_1","content":"a \"cat\""}],"temperature":0.7,"max_tokens":5,"seed":3,"stop":["x"],"user":"u-1"}""",
            sent.Body);
    }
}
