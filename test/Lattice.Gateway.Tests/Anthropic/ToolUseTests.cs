using System.Net;
using System.Text;
using Lattice.Gateway.Tests.Infrastructure;

namespace Lattice.Gateway.Tests.Anthropic;

/// <summary>
/// Tool use on <c>POST /v1/messages</c> over the stand-in's <c>lovelace:chat</c>: tools, tool_choice, tool_use and
/// tool_result blocks as the chat body the upstream receives; the stand-in's forced tool call (<c>call_standin_1</c>,
/// arguments <c>{"echo":T}</c>) as a <c>tool_use</c> block, whole and streamed.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class ToolUseTests(GatewayFixture gateway)
{
    private const string Weather = """{"name":"get_weather","description":"Current weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}""";
    private const string WeatherFunction = """{"type":"function","function":{"name":"get_weather","description":"Current weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}""";

    private HttpClient AnthropicClient()
    {
        var client = gateway.Client();
        client.DefaultRequestHeaders.Add("x-api-key", gateway.ApiKey);
        client.DefaultRequestHeaders.Add("anthropic-version", "2023-06-01");
        return client;
    }

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    private static string MessageId(HttpResponseMessage response) => "msg_" + response.Headers.GetValues("request-id").Single()["req_".Length..];

    public static TheoryData<string, string> Translations => new()
    {
        // A tool definition and tool_choice auto.
        {
            $$$"""{"model":"lovelace:chat","max_tokens":50,"messages":[{"role":"user","content":"weather in Paris"}],"tools":[{{{Weather}}}],"tool_choice":{"type":"auto"}}""",
            $$$"""{"model":"standin-chat","messages":[{"role":"user","content":"weather in Paris"}],"max_tokens":50,"tools":[{{{WeatherFunction}}}],"tool_choice":"auto"}"""
        },
        // any is required; disable_parallel_tool_use turns parallel calls off.
        {
            $$$"""{"model":"lovelace:chat","max_tokens":50,"messages":[{"role":"user","content":"weather in Paris"}],"tools":[{{{Weather}}}],"tool_choice":{"type":"any","disable_parallel_tool_use":true}}""",
            $$$"""{"model":"standin-chat","messages":[{"role":"user","content":"weather in Paris"}],"max_tokens":50,"tools":[{{{WeatherFunction}}}],"tool_choice":"required","parallel_tool_calls":false}"""
        },
        // tool names the function; a tool without a description, with a cache hint, of type custom.
        {
            """{"model":"lovelace:chat","max_tokens":50,"messages":[{"role":"user","content":"go"}],"tools":[{"type":"custom","name":"f","input_schema":{"type":"object"},"cache_control":{"type":"ephemeral"}}],"tool_choice":{"type":"tool","name":"f","disable_parallel_tool_use":false}}""",
            """{"model":"standin-chat","messages":[{"role":"user","content":"go"}],"max_tokens":50,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"f"}}}"""
        },
        // none.
        {
            $$$"""{"model":"lovelace:chat","max_tokens":50,"messages":[{"role":"user","content":"go"}],"tools":[{{{Weather}}}],"tool_choice":{"type":"none"}}""",
            $$$"""{"model":"standin-chat","messages":[{"role":"user","content":"go"}],"max_tokens":50,"tools":[{{{WeatherFunction}}}],"tool_choice":"none"}"""
        },
        // A multi-turn tool loop: two parallel tool_use blocks after text; their results (one an error with text blocks)
        // as tool messages right after, the turn's text after them; a tool_use alone has null content.
        {
            $$$"""{"model":"lovelace:chat","max_tokens":50,"tools":[{{{Weather}}}],"messages":[{"role":"user","content":"weather in Paris and Nowhere"},{"role":"assistant","content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_a","name":"get_weather","input":{ "city" : "Paris" }},{"type":"tool_use","id":"toolu_b","name":"get_weather","input":{"city":"Nowhere"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_a","content":"18C"},{"type":"tool_result","tool_use_id":"toolu_b","is_error":true,"content":[{"type":"text","text":"no such city"},{"type":"text","text":"try again"}]},{"type":"text","text":"and tomorrow?"}]},{"role":"assistant","content":[{"type":"tool_use","id":"toolu_c","name":"get_weather","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_c","is_error":false}]}]}""",
            $$$"""{"model":"standin-chat","messages":[{"role":"user","content":"weather in Paris and Nowhere"},{"role":"assistant","content":"Let me check.","tool_calls":[{"id":"toolu_a","type":"function","function":{"name":"get_weather","arguments":"{\u0022city\u0022:\u0022Paris\u0022}"}},{"id":"toolu_b","type":"function","function":{"name":"get_weather","arguments":"{\u0022city\u0022:\u0022Nowhere\u0022}"}}]},{"role":"tool","tool_call_id":"toolu_a","content":"18C"},{"role":"tool","tool_call_id":"toolu_b","content":"Error: no such city\ntry again"},{"role":"user","content":"and tomorrow?"},{"role":"assistant","content":null,"tool_calls":[{"id":"toolu_c","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},{"role":"tool","tool_call_id":"toolu_c","content":""}],"max_tokens":50,"tools":[{{{WeatherFunction}}}]}"""
        },
    };

    [Theory]
    [MemberData(nameof(Translations))]
    public async Task A_tool_request_reaches_the_chat_target_as_this_chat_body(string sent, string expected)
    {
        using var client = AnthropicClient();
        using var response = await client.PostAsync("/v1/messages", Json(sent));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await response.Content.ReadAsStringAsync();

        var last = await gateway.LastUpstreamRequestAsync("/v1/chat/completions");
        var received = Encoding.UTF8.GetString(Convert.FromBase64String(last["body_base64"]!.GetValue<string>()));
        Assert.Equal(expected, received);
    }

    [Fact]
    public async Task A_tool_call_comes_back_as_a_tool_use_block_with_stop_reason_tool_use()
    {
        using var client = AnthropicClient();
        using var response = await client.PostAsync("/v1/messages",
            Json($$$"""{"model":"lovelace:chat","max_tokens":50,"messages":[{"role":"user","content":"weather in Paris"}],"tools":[{{{Weather}}}],"tool_choice":{"type":"any"}}"""));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(
            $$$"""{"id":"{{{MessageId(response)}}}","type":"message","role":"assistant","model":"lovelace:chat","content":[{"type":"tool_use","id":"toolu_standin_1","name":"get_weather","input":{"echo":"weather in Paris"}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":3,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":5}}""",
            await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task A_streamed_tool_call_is_a_tool_use_block_with_input_json_deltas_event_by_event()
    {
        using var client = AnthropicClient();
        using var response = await client.PostAsync("/v1/messages",
            Json($$$"""{"model":"lovelace:chat","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"weather in Paris"}],"tools":[{{{Weather}}}],"tool_choice":{"type":"tool","name":"get_weather"}}"""));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        string[] expected =
        [
            """event: message_start|data: {"type":"message_start","message":{"id":"MSGID","type":"message","role":"assistant","model":"lovelace:chat","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}}""".Replace("MSGID", MessageId(response), StringComparison.Ordinal),
            """event: content_block_start|data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_standin_1","name":"get_weather","input":{}}}""",
            """event: ping|data: {"type":"ping"}""",
            """event: content_block_delta|data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"echo\":"}}""",
            """event: content_block_delta|data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"\"weather in Paris\""}}""",
            """event: content_block_delta|data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"}"}}""",
            """event: content_block_stop|data: {"type":"content_block_stop","index":0}""",
            """event: message_delta|data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":3,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":5}}""",
            """event: message_stop|data: {"type":"message_stop"}""",
        ];
        var events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e.Replace('\n', '|')).ToArray();
        Assert.Equal(expected, events);
    }
}
