using System.Buffers;
using System.Text;
using Lattice.Gateway.Anthropic;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Tests.Anthropic;

/// <summary>The SSE grammar for an answer the stand-in does not give: text, then two tool calls, each its own block.</summary>
public sealed class MessageEventsTests
{
    [Fact]
    public void Text_then_two_tool_calls_are_blocks_0_1_and_2()
    {
        var output = new ArrayBufferWriter<byte>();
        var events = new MessageEvents("msg_1", "lovelace:chat");
        events.Start(output);
        events.Text(output, "Checking.");
        events.ToolStart(output, ToolCall.IdFor("call_a"), "get_weather");
        events.ToolInput(output, "");
        events.ToolInput(output, "{\"city\":");
        events.ToolInput(output, "\"Paris\"}");
        events.ToolStart(output, ToolCall.IdFor("toolu_b"), "get_time");
        events.ToolInput(output, "{}");
        events.End(output, "tool_use", null, default(Usage));

        string[] expected =
        [
            """event: message_start|data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"lovelace:chat","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}}""",
            """event: content_block_start|data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}""",
            """event: ping|data: {"type":"ping"}""",
            """event: content_block_delta|data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking."}}""",
            """event: content_block_stop|data: {"type":"content_block_stop","index":0}""",
            """event: content_block_start|data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_a","name":"get_weather","input":{}}}""",
            """event: content_block_delta|data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}""",
            """event: content_block_delta|data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}""",
            """event: content_block_stop|data: {"type":"content_block_stop","index":1}""",
            """event: content_block_start|data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_b","name":"get_time","input":{}}}""",
            """event: content_block_delta|data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{}"}}""",
            """event: content_block_stop|data: {"type":"content_block_stop","index":2}""",
            """event: message_delta|data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}""",
            """event: message_stop|data: {"type":"message_stop"}""",
        ];
        var transcript = Encoding.UTF8.GetString(output.WrittenSpan).Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e.Replace('\n', '|')).ToArray();
        Assert.Equal(expected, transcript);
    }

    [Fact]
    public void A_whole_message_has_the_text_then_the_tool_use_blocks()
    {
        var output = new ArrayBufferWriter<byte>();
        var a = new ToolCall(ToolCall.IdFor("call_a"), "get_weather");
        a.Input.Append("{\"city\":\"Paris\"}");
        var b = new ToolCall(ToolCall.IdFor("xyz"), "get_time");
        new MessageEvents("msg_1", "m").WriteMessage(output, "Checking.", [a, b], "tool_use", null, default(Usage));
        Assert.Equal(
            """{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_a","name":"get_weather","input":{"city":"Paris"}},{"type":"tool_use","id":"toolu_xyz","name":"get_time","input":{}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}""",
            Encoding.UTF8.GetString(output.WrittenSpan));
    }

    [Fact]
    public void A_text_delta_allocates_nothing_once_the_answer_has_started()
    {
        var output = new ArrayBufferWriter<byte>(64 * 1024);
        var events = new MessageEvents("msg_1", "lovelace:chat");
        events.Start(output);
        events.Text(output, "first"u8);

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            events.Text(output, " next \u00e9\n"u8);
        }
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        Assert.EndsWith("event: content_block_delta\ndata: " + """{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" next é\n"}}""" + "\n\n",
            Encoding.UTF8.GetString(output.WrittenSpan), StringComparison.Ordinal);
    }
}

/// <summary>Anthropic's error type for each status, as its docs list them.</summary>
public sealed class AnthropicErrorTypeTests
{
    [Theory]
    [InlineData(400, "invalid_request_error")]
    [InlineData(401, "authentication_error")]
    [InlineData(403, "permission_error")]
    [InlineData(404, "not_found_error")]
    [InlineData(409, "invalid_request_error")]
    [InlineData(413, "request_too_large")]
    [InlineData(422, "invalid_request_error")]
    [InlineData(429, "rate_limit_error")]
    [InlineData(500, "api_error")]
    [InlineData(502, "api_error")]
    [InlineData(504, "api_error")]
    [InlineData(503, "overloaded_error")]
    [InlineData(529, "overloaded_error")]
    public void A_status_has_anthropics_error_type(int status, string type) => Assert.Equal(type, AnthropicErrors.TypeFor(status));
}
