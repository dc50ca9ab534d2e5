using System.Buffers;
using System.Text;
using System.Text.Json;

namespace Lattice.Protocol.Tests;

public sealed class ModelFieldRewriterTests
{
    private const string Asked = "lovelace:gpt-4o-mini";

    // An OpenAI answer with a tool call whose arguments, and a content string, hold the key as escaped text.
    private const string Completion =
        """{"id":"chatcmpl-B9","object":"chat.completion","created":1736000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"say \"model\":\"x\" and {\"model\":\"y\"}","tool_calls":[{"id":"call_1","type":"function","function":{"name":"pick","arguments":"{\"model\":\"gpt-4o\",\"n\":[1,{\"model\":\"z\"}]}"}}],"refusal":null},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13},"system_fingerprint":"fp_0aa8d3e20b"}""";

    private static string Rewrite(string json, params int[] cuts)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        var rewriter = new ModelFieldRewriter(ModelFieldRewriter.Quote(Asked));
        var output = new ArrayBufferWriter<byte>();
        var from = 0;
        foreach (var cut in cuts.Append(bytes.Length))
        {
            rewriter.Write(bytes.AsSpan(from, cut - from), output);
            from = cut;
        }
        return Encoding.UTF8.GetString(output.WrittenSpan);
    }

    private static long WatchedOffset(string json, params int[] cuts)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        var rewriter = new ModelFieldRewriter(ModelFieldRewriter.Quote(Asked), "usage"u8.ToArray());
        var output = new ArrayBufferWriter<byte>();
        var from = 0;
        foreach (var cut in cuts.Append(bytes.Length))
        {
            rewriter.Write(bytes.AsSpan(from, cut - from), output);
            from = cut;
        }
        // Watching changes nothing in what is written.
        Assert.Equal(Rewrite(json, cuts), Encoding.UTF8.GetString(output.WrittenSpan));
        return rewriter.WatchedValueOffset;
    }

    [Fact]
    public void The_top_level_usage_value_is_found_wherever_the_answer_is_split_and_reads_as_the_answers_usage()
    {
        var bytes = Encoding.UTF8.GetBytes(Completion);
        var expected = Completion.IndexOf("\"usage\":", StringComparison.Ordinal) + "\"usage\":".Length;
        for (var cut = 0; cut <= bytes.Length; cut++)
        {
            Assert.Equal(expected, WatchedOffset(Completion, cut));
        }
        Assert.Equal(expected, WatchedOffset(Completion, Enumerable.Range(1, bytes.Length - 1).ToArray()));
        Assert.True(Lattice.Protocol.Metering.UsageReader.TryReadAt(bytes, expected, "tokens", out var usage));
        Assert.Equal(new Lattice.Protocol.Metering.Usage(9, 4, 13), usage);
    }

    [Theory]
    [InlineData("""{"a":{"usage":{"prompt_tokens":1}}}""")]
    [InlineData("""{"content":"{\"usage\":{\"prompt_tokens\":1}}","usage" """)]
    [InlineData("""[{"usage":{"prompt_tokens":1}}]""")]
    [InlineData("""{"list":["usage",":"],"note":"usage"}""")]
    [InlineData("""{"us\u0061ge":{"prompt_tokens":1}}""")]
    [InlineData("""{"usages":1,"usag":2,"xusage":3}""")]
    public void A_usage_member_not_at_the_top_level_or_spelled_with_escapes_is_not_noted(string json) =>
        Assert.Equal(-1, WatchedOffset(json));

    [Fact]
    public void Only_the_first_top_level_usage_is_noted_and_reset_forgets_it()
    {
        Assert.Equal(10, WatchedOffset("""{"usage" :1,"usage":2}"""));
        var rewriter = new ModelFieldRewriter(ModelFieldRewriter.Quote(Asked), "usage"u8.ToArray());
        var output = new ArrayBufferWriter<byte>();
        rewriter.Write("""{"usage":1}"""u8, output);
        Assert.Equal(9, rewriter.WatchedValueOffset);
        rewriter.Reset();
        Assert.Equal(-1, rewriter.WatchedValueOffset);
        rewriter.Write("""{"model":"m", "usage":2}"""u8, output);
        Assert.Equal(22, rewriter.WatchedValueOffset);
    }

    [Fact]
    public void Only_the_top_level_model_value_changes_never_text_inside_strings()
    {
        var expected = Completion.Replace("\"model\":\"gpt-4o-mini-2024-07-18\"", "\"model\":\"" + Asked + "\"", StringComparison.Ordinal);
        Assert.NotEqual(Completion, expected);
        Assert.Equal(expected, Rewrite(Completion));
        // What the escaped text says is still exactly what the target said.
        using var doc = JsonDocument.Parse(Rewrite(Completion));
        var message = doc.RootElement.GetProperty("choices")[0].GetProperty("message");
        Assert.Equal("say \"model\":\"x\" and {\"model\":\"y\"}", message.GetProperty("content").GetString());
        Assert.Equal("{\"model\":\"gpt-4o\",\"n\":[1,{\"model\":\"z\"}]}", message.GetProperty("tool_calls")[0].GetProperty("function").GetProperty("arguments").GetString());
    }

    [Fact]
    public void Reads_split_at_every_byte_offset_give_the_same_bytes()
    {
        var whole = Rewrite(Completion);
        var length = Encoding.UTF8.GetByteCount(Completion);
        for (var cut = 0; cut <= length; cut++)
        {
            Assert.Equal(whole, Rewrite(Completion, cut));
        }
        for (var cut = 1; cut < length; cut += 7)
        {
            Assert.Equal(whole, Rewrite(Completion, cut, Math.Min(length, cut + 3)));
        }
        Assert.Equal(whole, Rewrite(Completion, Enumerable.Range(1, length - 1).ToArray()));
    }

    [Theory]
    // Anthropic's message_start carries the model one object down.
    [InlineData("""{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022","content":[],"stop_reason":null}}""",
        """{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"lovelace:gpt-4o-mini","content":[],"stop_reason":null}}""")]
    [InlineData("""{ "model" : "a\"b\\" , "x" : 1 }""", """{ "model" : "lovelace:gpt-4o-mini" , "x" : 1 }""")]
    [InlineData("""{"param":"model","model":"m","models":"x","model_name":"y","xmodel":"z"}""",
        """{"param":"model","model":"lovelace:gpt-4o-mini","models":"x","model_name":"y","xmodel":"z"}""")]
    [InlineData("""{"a":{"b":1,"model":"two"},"c":[{"model":"three"}],"d":{"e":{"model":"three"}}}""",
        """{"a":{"b":1,"model":"lovelace:gpt-4o-mini"},"c":[{"model":"three"}],"d":{"e":{"model":"three"}}}""")]
    [InlineData("""{"list":["model","v"],"o":{"l":["model",":","x"]},"model":null}""", """{"list":["model","v"],"o":{"l":["model",":","x"]},"model":null}""")]
    [InlineData("""{"data":[{"embedding":[0.1,-0.2,3e-5]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":2}}""",
        """{"data":[{"embedding":[0.1,-0.2,3e-5]}],"model":"lovelace:gpt-4o-mini","usage":{"prompt_tokens":2}}""")]
    [InlineData("""["model","x"]""", """["model","x"]""")]
    public void Model_members_at_depth_one_and_two_are_replaced_and_nothing_else(string answer, string expected)
    {
        Assert.Equal(expected, Rewrite(answer));
        var length = Encoding.UTF8.GetByteCount(answer);
        for (var cut = 0; cut <= length; cut++)
        {
            Assert.Equal(expected, Rewrite(answer, cut));
        }
    }

    [Fact]
    public void Reset_starts_a_new_text_after_a_broken_one()
    {
        var rewriter = new ModelFieldRewriter(ModelFieldRewriter.Quote("m"));
        var output = new ArrayBufferWriter<byte>();
        rewriter.Write("""{"content":"unterminated"""u8, output);
        rewriter.Reset();
        rewriter.Write("""{"model":"x"}"""u8, output);
        Assert.Equal("""{"content":"unterminated{"model":"m"}""", Encoding.UTF8.GetString(output.WrittenSpan));
    }

    [Theory]
    [InlineData("lovelace:chat", "\"lovelace:chat\"")]
    [InlineData("lattice:personal:lat_01", "\"lattice:personal:lat_01\"")]
    [InlineData("a\"b\\c+é", "\"a\\\"b\\\\c+é\"")]
    public void Quote_makes_a_json_string_token(string model, string token)
    {
        Assert.Equal(token, Encoding.UTF8.GetString(ModelFieldRewriter.Quote(model)));
    }
}
