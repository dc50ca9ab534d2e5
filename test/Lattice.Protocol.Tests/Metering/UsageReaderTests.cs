using System.Text;
using Lattice.Protocol.Metering;

namespace Lattice.Protocol.Tests.Metering;

public sealed class UsageReaderTests
{
    private static Usage Read(string json, string? path = "usage", string unit = "tokens")
    {
        Assert.True(UsageReader.TryRead(Encoding.UTF8.GetBytes(json), path, unit, out var usage));
        return usage;
    }

    private static bool Fails(string json, string? path = "usage", string unit = "tokens") =>
        !UsageReader.TryRead(Encoding.UTF8.GetBytes(json), path, unit, out var usage) && usage == default;

    [Fact]
    public void Reads_an_openai_chat_completion() =>
        Assert.Equal(new Usage(19, 10, 29, CachedTokens: 3), Read("""
            {"id":"chatcmpl-abc","object":"chat.completion","created":1,"model":"gpt-4o-mini",
             "choices":[{"index":0,"message":{"role":"assistant","content":"Hi \"usage\": {","refusal":null},"logprobs":null,"finish_reason":"stop"}],
             "usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,
                      "prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0},
                      "completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},
             "service_tier":"default","system_fingerprint":"fp_1"}
            """));

    [Fact]
    public void Reads_embeddings_usage_without_completion_tokens() =>
        Assert.Equal(new Usage(PromptTokens: 8, TotalTokens: 8), Read("""
            {"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}
            """));

    [Fact]
    public void Reads_a_responses_api_report() =>
        Assert.Equal(new Usage(36, 87, 123, CachedTokens: 4), Read("""
            {"id":"resp_1","object":"response","output":[],"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":4},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}}
            """));

    [Fact]
    public void Anthropic_cache_counts_join_the_prompt_so_cached_stays_part_of_it() =>
        Assert.Equal(new Usage(17, 7, 24, CachedTokens: 5), Read("""
            {"id":"msg_1","type":"message","content":[{"type":"text","text":"Hi"}],"usage":{"input_tokens":10,"cache_creation_input_tokens":2,"cache_read_input_tokens":5,"output_tokens":7}}
            """));

    [Fact]
    public void Total_is_prompt_plus_completion_when_absent() =>
        Assert.Equal(new Usage(4, 6, 10), Read("""{"usage":{"completion_tokens":6,"prompt_tokens":4}}"""));

    [Theory]
    [InlineData("""{"text":"hi","usage":{"type":"duration","seconds":3.2}}""", 3200)]
    [InlineData("""{"text":"hi","usage":{"type":"duration","seconds":7}}""", 7000)]
    [InlineData("""{"text":"hi","usage":{"type":"duration","seconds":0.0004}}""", 0)]
    [InlineData("""{"text":"hi","usage":{"type":"duration","seconds":1.0006}}""", 1001)]
    public void Transcription_duration_becomes_rounded_milliseconds(string json, long milliseconds) =>
        Assert.Equal(new Usage(AudioMilliseconds: milliseconds), Read(json, unit: "seconds"));

    [Fact]
    public void Transcription_token_usage_reads_as_tokens() =>
        Assert.Equal(new Usage(14, 45, 59), Read("""
            {"text":"Imagine…","usage":{"type":"tokens","input_tokens":14,"input_token_details":{"text_tokens":0,"audio_tokens":14},"output_tokens":45,"total_tokens":59}}
            """, unit: "seconds"));

    [Fact]
    public void A_bare_number_is_seconds_for_a_seconds_task() =>
        Assert.Equal(new Usage(AudioMilliseconds: 8470), Read("""{"task":"transcribe","duration":8.47,"text":"x"}""", "duration", "seconds"));

    [Fact]
    public void A_bare_number_is_total_tokens_for_a_tokens_task() =>
        Assert.Equal(new Usage(TotalTokens: 12), Read("""{"meta":{"tokens":12}}""", "meta.tokens"));

    [Fact]
    public void Follows_a_dotted_path_past_values_it_skips() =>
        Assert.Equal(new Usage(3, 4, 7), Read("""
            {"type":"response.completed","sequence_number":9,"response":{"output":[{"content":[{"text":"a","usage":{"input_tokens":99}}]}],"usage":{"input_tokens":3,"output_tokens":4,"total_tokens":7}}}
            """, "response.usage"));

    [Fact]
    public void A_numeric_segment_indexes_an_array() =>
        Assert.Equal(new Usage(2, 0, 2), Read("""{"data":[{"usage":{"prompt_tokens":1}},{"usage":{"prompt_tokens":2}}]}""", "data.1.usage"));

    [Fact]
    public void Only_the_member_on_the_path_counts_not_a_nested_namesake() =>
        Assert.Equal(new Usage(1, 0, 1), Read("""{"choices":[{"usage":{"prompt_tokens":99}}],"usage":{"prompt_tokens":1}}"""));

    [Fact]
    public void Escaped_member_names_match() =>
        Assert.Equal(new Usage(5, 1, 6), Read("""{"us\u0061ge":{"prompt_tokens":5,"completion_tokens":1}}"""));

    [Theory]
    [InlineData("""{"id":"x"}""", "usage", "tokens")]
    [InlineData("""{"usage":null}""", "usage", "tokens")]
    [InlineData("""{"usage":"lots"}""", "usage", "tokens")]
    [InlineData("""{"response":{"usage":null}}""", "response.usage", "tokens")]
    [InlineData("""{"response":[1]}""", "response.usage", "tokens")]
    [InlineData("""{"data":[]}""", "data.0.usage", "tokens")]
    [InlineData("""{"usage":{"prompt_tokens":1}}""", null, "tokens")]
    [InlineData("""{"usage":{"prompt_tokens":1}}""", "", "tokens")]
    [InlineData("""{"usage":{"prompt_tokens":1}}""", "usage", "requests")]
    [InlineData("""{"usage":{"prompt_tokens":1""", "usage", "tokens")]
    [InlineData("""not json""", "usage", "tokens")]
    [InlineData("", "usage", "tokens")]
    public void Nothing_to_read_is_false(string json, string? path, string unit) => Assert.True(Fails(json, path, unit));

    [Theory]
    [InlineData("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3,\"total_tokens\":5}}\n\n")]
    [InlineData("data:{\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3,\"total_tokens\":5}}\r\n\r\n")]
    [InlineData("event: chunk\nid: 7\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}\n\n")]
    [InlineData("data: {\"choices\":[],\ndata: \"usage\":{\"prompt_tokens\":2,\ndata: \"completion_tokens\":3}}\n\n")]
    public void Reads_one_sse_event(string sseEvent)
    {
        Assert.True(UsageReader.TryReadSseEvent(Encoding.UTF8.GetBytes(sseEvent), "usage", "tokens", out var usage));
        Assert.Equal(new Usage(2, 3, 5), usage);
    }

    [Theory]
    [InlineData("data: [DONE]\n\n")]
    [InlineData(": keep-alive\n\n")]
    [InlineData("data: {\"choices\":[],\"usage\":null}\n\n")]
    public void An_event_without_usage_is_false(string sseEvent) =>
        Assert.False(UsageReader.TryReadSseEvent(Encoding.UTF8.GetBytes(sseEvent), "usage", "tokens", out _));
}
