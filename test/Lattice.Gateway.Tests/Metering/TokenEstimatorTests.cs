using System.Text;
using Lattice.Gateway.Metering;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Tests.Metering;

/// <summary>
/// Expected counts were checked against an independent tiktoken implementation (js-tiktoken, o200k_base and
/// cl100k_base); the cookbook's example conversation is the one OpenAI's API billed at 124 (gpt-4o) and 129 (gpt-4).
/// </summary>
public sealed class TokenEstimatorTests
{
    // One instance for the class, as in the gateway: the tables load once.
    private static readonly TokenEstimator Estimator = new();

    private static byte[] B(string s) => Encoding.UTF8.GetBytes(s);

    private const string Cookbook = """
        {"model":"gpt-4o","messages":[
          {"role":"system","content":"You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
          {"role":"system","name":"example_user","content":"New synergies will help drive top-line growth."},
          {"role":"system","name":"example_assistant","content":"Things working well together will increase revenue."},
          {"role":"system","name":"example_user","content":"Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
          {"role":"system","name":"example_assistant","content":"Let's talk later when we're less busy about how to do better."},
          {"role":"user","content":"This late pivot means we don't have time to boil the ocean for the client deliverable."}]}
        """;

    [Theory]
    [InlineData("gpt-4o", TokenEstimator.O200kBase)]
    [InlineData("gpt-4o-mini-2024-07-18", TokenEstimator.O200kBase)]
    [InlineData("chatgpt-4o-latest", TokenEstimator.O200kBase)]
    [InlineData("gpt-4.1-nano", TokenEstimator.O200kBase)]
    [InlineData("gpt-5", TokenEstimator.O200kBase)]
    [InlineData("o1-mini", TokenEstimator.O200kBase)]
    [InlineData("o3", TokenEstimator.O200kBase)]
    [InlineData("o4-mini", TokenEstimator.O200kBase)]
    [InlineData("openai/gpt-4o", TokenEstimator.O200kBase)]
    [InlineData("gpt-4", TokenEstimator.Cl100kBase)]
    [InlineData("gpt-4-turbo", TokenEstimator.Cl100kBase)]
    [InlineData("GPT-4-0613", TokenEstimator.Cl100kBase)]
    [InlineData("gpt-3.5-turbo", TokenEstimator.Cl100kBase)]
    [InlineData("text-embedding-3-small", TokenEstimator.Cl100kBase)]
    [InlineData("azure/text-embedding-ada-002", TokenEstimator.Cl100kBase)]
    [InlineData("llama-3.2-3b-instruct", TokenEstimator.O200kBase)]
    [InlineData("lovelace:chat", TokenEstimator.O200kBase)]
    [InlineData("", TokenEstimator.O200kBase)]
    public void Picks_the_encoding_by_model(string model, string encoding) => Assert.Equal(encoding, TokenEstimator.EncodingFor(model));

    [Theory]
    [InlineData("hello world", "gpt-4o", 2)]
    [InlineData("hello world", "gpt-4", 2)]
    [InlineData("The quick brown fox jumps over the lazy dog.", "gpt-4o", 10)]
    [InlineData("héllo ✓ 日本語", "gpt-4o", 5)]
    [InlineData("héllo ✓ 日本語", "gpt-3.5-turbo", 8)]
    [InlineData("", "gpt-4o", 0)]
    public void Counts_text_in_the_models_encoding(string text, string model, int tokens) =>
        Assert.Equal(tokens, Estimator.CountTokens(text, model));

    [Theory]
    [InlineData("gpt-4o", 124)]
    [InlineData("gpt-4o-mini", 124)]
    [InlineData("gpt-4", 129)]
    [InlineData("gpt-3.5-turbo", 129)]
    public void The_prompt_of_the_cookbook_example_matches_what_openai_billed(string model, long prompt)
    {
        var usage = Estimator.EstimateChat(B(Cookbook), default, sse: false, model);
        Assert.Equal(new Usage(prompt, 0, prompt, Estimated: true), usage);
    }

    [Fact]
    public void Text_parts_count_like_string_content_and_other_parts_not_at_all()
    {
        var asString = Estimator.EstimateChat(B("""{"messages":[{"role":"user","content":"hello world"}]}"""), default, false, "gpt-4o");
        var asParts = Estimator.EstimateChat(B("""
            {"messages":[{"role":"user","content":[{"type":"text","text":"hello"},{"type":"image_url","image_url":{"url":"https://x/y.png"}},{"type":"text","text":" world"}]}]}
            """), default, false, "gpt-4o");
        // 3 per message + "user" 1 + "hello world" 2 + 3 priming; as parts "hello" 1 + " world" 1.
        Assert.Equal(9, asString.PromptTokens);
        Assert.Equal(9, asParts.PromptTokens);
    }

    [Fact]
    public void Tool_calls_and_tool_results_in_the_prompt_count()
    {
        const string request = """
            {"model":"gpt-4o","messages":[
              {"role":"user","content":"hello world"},
              {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
              {"role":"tool","tool_call_id":"call_1","content":"Paris is sunny."}],
             "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]}
            """;
        // (3+1+2) + (3+1+2+5) + (3+1+3+4) + 3
        Assert.Equal(31, Estimator.EstimateChat(B(request), default, false, "gpt-4o").PromptTokens);
    }

    [Fact]
    public void A_complete_answer_counts_content_and_tool_call_arguments_of_every_choice()
    {
        const string request = """{"model":"gpt-4o","messages":[{"role":"user","content":"hello world"}]}""";
        const string answer = """
            {"id":"chatcmpl-1","object":"chat.completion","choices":[
              {"index":0,"message":{"role":"assistant","content":"Hello there! How can I help you today?","refusal":null},"finish_reason":"stop"},
              {"index":1,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"finish_reason":"tool_calls"}]}
            """;
        Assert.Equal(new Usage(9, 15, 24, Estimated: true), Estimator.EstimateChat(B(request), B(answer), sse: false, "gpt-4o"));
    }

    [Fact]
    public void A_stream_joins_its_deltas_before_counting()
    {
        const string request = """{"model":"gpt-4o","messages":[{"role":"user","content":"hello world"}],"stream":true}""";
        // "Hello"+" wor"+"ld" is 3 tokens piece by piece, 2 joined; {"city": + "Paris"} is 6 piece by piece, 5 joined.
        string events =
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n" +
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}]}\n\n" +
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" wor\"},\"finish_reason\":null}]}\r\n\r\n" +
            ": keep-alive\n\n" +
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ld\"},\"finish_reason\":null}]}\n\n" +
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}\n\n" +
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]}}]}\n\n" +
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]}}]}\n\n" +
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n" +
            "data: [DONE]\n\n";
        Assert.Equal(new Usage(9, 7, 16, Estimated: true), Estimator.EstimateChat(B(request), B(events), sse: true, "gpt-4o"));
    }

    [Fact]
    public void A_stream_cut_off_mid_way_counts_what_the_client_received()
    {
        const string request = """{"model":"gpt-4o","messages":[{"role":"user","content":"hello world"}],"stream":true}""";
        string events =
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"He said \\\"hi\\\"\\n\"}}]}\n\n" +
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" and";
        Assert.Equal(5, Estimator.EstimateChat(B(request), B(events), sse: true, "gpt-4o").CompletionTokens);
    }

    [Theory]
    [InlineData("""{"model":"text-embedding-3-small","input":"hello world"}""", 2)]
    [InlineData("""{"model":"text-embedding-3-small","input":["hello world","Hello, world!"]}""", 6)]
    [InlineData("""{"input":["héllo ✓ 日本語"],"model":"text-embedding-3-small"}""", 8)]
    [InlineData("""{"model":"text-embedding-3-small","input":[15339,1917,0]}""", 3)]
    [InlineData("""{"model":"text-embedding-3-small","input":[[15339,1917],[0],[]]}""", 3)]
    [InlineData("""{"model":"text-embedding-3-small"}""", 0)]
    [InlineData("""not json""", 0)]
    public void Embeddings_count_their_input(string request, long tokens) =>
        Assert.Equal(new Usage(PromptTokens: tokens, TotalTokens: tokens, Estimated: true), Estimator.EstimateEmbeddings(B(request), "text-embedding-3-small"));

    [Fact]
    public void Embeddings_use_the_models_encoding() =>
        Assert.Equal(5, Estimator.EstimateEmbeddings(B("""{"input":"héllo ✓ 日本語"}"""), "my-embedder").PromptTokens);

    [Fact]
    public void Malformed_bodies_estimate_what_is_readable_and_do_not_throw()
    {
        var usage = Estimator.EstimateChat(B("""{"messages":[{"role":"user","content":"hello world"},{"role":"""), B("{\"choices\":[{"), sse: false, "gpt-4o");
        Assert.True(usage.Estimated);
        // The first message whole (3+1+2) and the wrapper of the second (3); no priming, as the body never ended.
        Assert.Equal(9, usage.PromptTokens);
        Assert.Equal(0, usage.CompletionTokens);
    }

    [Fact]
    public void One_shared_instance_counts_the_same_from_many_threads()
    {
        byte[] request = B(Cookbook);
        var counts = new long[64];
        Parallel.For(0, counts.Length, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
            counts[i] = Estimator.EstimateChat(request, default, sse: false, i % 2 == 0 ? "gpt-4o" : "gpt-4").PromptTokens);
        for (int i = 0; i < counts.Length; i++)
        {
            Assert.Equal(i % 2 == 0 ? 124 : 129, counts[i]);
        }
    }
}
