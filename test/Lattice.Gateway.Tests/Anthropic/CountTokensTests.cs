using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lattice.Gateway.Anthropic;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Gateway.Tests.Metering;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Anthropic;

/// <summary><c>POST /v1/messages/count_tokens</c>: the ledger's own estimate of the translated prompt, nothing dispatched.</summary>
[Collection(GatewayCollection.Name)]
public sealed class CountTokensTests(GatewayFixture gateway)
{
    private HttpClient AnthropicClient(string? key = null)
    {
        var client = gateway.Client();
        client.DefaultRequestHeaders.Add("x-api-key", key ?? gateway.ApiKey);
        client.DefaultRequestHeaders.Add("anthropic-version", "2023-06-01");
        return client;
    }

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    private static string RequestId(HttpResponseMessage response) => response.Headers.GetValues("request-id").Single();

    /// <summary>
    /// o200k_base counts: "user" 1, "hello there" 2, "system" 1, "be brief" 2; each message is wrapped in 3 and the reply
    /// primed with 3 (the cookbook's rule the estimator follows).
    /// </summary>
    [Theory]
    [InlineData("""{"model":"lovelace:chat","messages":[{"role":"user","content":"hello there"}]}""", 9)]
    [InlineData("""{"model":"lovelace:chat","system":"be brief","messages":[{"role":"user","content":[{"type":"text","text":"hello there"}]}]}""", 15)]
    public async Task The_count_is_the_prompt_estimate(string body, int expected)
    {
        using var client = AnthropicClient();
        using var response = await client.PostAsync("/v1/messages/count_tokens", Json(body));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal($$"""{"input_tokens":{{expected}}}""", await response.Content.ReadAsStringAsync());
        // Counting dispatches nothing, so nothing is metered.
        Assert.Equal(0, await Ledger.CountAsync(gateway.Factory.Services, RequestId(response)));
    }

    [Fact]
    public async Task A_tool_loop_counts_what_the_ledger_would_estimate_for_the_same_conversation()
    {
        const string conversation = """
            "system":[{"type":"text","text":"You answer weather questions."}],
            "tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
            "messages":[
              {"role":"user","content":[{"type":"text","text":"Weather in Paris?"},{"type":"image","source":{"type":"url","url":"https://example.com/sky.jpg"}}]},
              {"role":"assistant","content":[{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},
              {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"18C and sunny","is_error":false}]}]
            """;
        using var client = AnthropicClient();
        using var response = await client.PostAsync("/v1/messages/count_tokens", Json("{\"model\":\"lovelace:chat\"," + conversation + "}"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var counted = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["input_tokens"]!.GetValue<long>();

        // The same conversation sent to /v1/messages is estimated, when a target reports no usage, from this chat body.
        var (sent, _) = MessagesRequest.Translate(Encoding.UTF8.GetBytes("{\"model\":\"lovelace:chat\",\"max_tokens\":50," + conversation + "}"));
        var estimate = gateway.Factory.Services.GetRequiredService<TokenEstimator>().EstimateChat(sent!.ChatBody, [], sse: false, "lovelace:chat");
        Assert.Equal(estimate.PromptTokens, counted);
        Assert.Equal(45, counted); // pinned: a change to the translation or the estimator shows here first
    }

    [Fact]
    public async Task A_model_without_connected_capacity_is_still_counted()
    {
        using var client = AnthropicClient();
        using var response = await client.PostAsync("/v1/messages/count_tokens",
            Json("""{"model":"lovelace:dead","messages":[{"role":"user","content":"hello there"}]}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("""{"input_tokens":9}""", await response.Content.ReadAsStringAsync());
    }

    public static TheoryData<string, int, string, string> Refusals => new()
    {
        { """{"model":"lovelace:nope","messages":[{"role":"user","content":"hi"}]}""", 404, "not_found_error", "The model 'lovelace:nope' does not exist or you do not have access to it." },
        { """{"model":"lattice:personal:rt_nobody","messages":[{"role":"user","content":"hi"}]}""", 404, "not_found_error", "The model 'lattice:personal:rt_nobody' does not exist or you do not have access to it." },
        { """{"model":"lovelace:chat","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}""", 400, "invalid_request_error", "max_tokens: unknown field (counting tokens takes model, messages, system, tools and tool_choice)." },
        { """{"model":"lovelace:chat","messages":[]}""", 400, "invalid_request_error", "messages: a non-empty array is required." },
        { """{"model":"lovelace:chat","messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"x"}}]}]}""", 400, "invalid_request_error", "messages.0.content.0: 'document' blocks (PDFs and text documents) are not supported by the chat-completions targets this model is served by." },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task A_refusal_is_anthropics_error_envelope(string body, int status, string type, string message)
    {
        using var client = AnthropicClient();
        using var response = await client.PostAsync("/v1/messages/count_tokens", Json(body));

        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal(
            JsonSerializer.Serialize(new { type = "error", error = new { type, message }, request_id = RequestId(response) },
                new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }),
            await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Counting_needs_the_inference_scope_and_a_valid_key()
    {
        using var bad = AnthropicClient("sk_not_a_real_key");
        using var unauthenticated = await bad.PostAsync("/v1/messages/count_tokens", Json("""{"model":"lovelace:chat","messages":[{"role":"user","content":"hi"}]}"""));
        Assert.Equal(HttpStatusCode.Unauthorized, unauthenticated.StatusCode);
        Assert.Equal("authentication_error", JsonNode.Parse(await unauthenticated.Content.ReadAsStringAsync())!["error"]!["type"]!.GetValue<string>());

        var reader = await gateway.CreateKeyAsync(new JsonObject { ["name"] = "reader", ["scopes"] = new JsonArray("lattice:compute:catalog:read") });
        using var client = AnthropicClient(reader);
        using var forbidden = await client.PostAsync("/v1/messages/count_tokens", Json("""{"model":"lovelace:chat","messages":[{"role":"user","content":"hi"}]}"""));
        Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);
        Assert.Equal("permission_error", JsonNode.Parse(await forbidden.Content.ReadAsStringAsync())!["error"]!["type"]!.GetValue<string>());
    }
}
