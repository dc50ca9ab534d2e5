using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;
using Lattice.Gateway.Tests.Infrastructure;

namespace Lattice.Gateway.Tests.Anthropic;

/// <summary>Rate limits on the Anthropic surface: its headers, a 429 in its envelope, the SDK's own exception. A gateway of its own, for its clock.</summary>
public sealed class MessagesRateLimitTests(GatewayFixture gateway) : IClassFixture<GatewayFixture>
{
    private const string Hello = """{"model":"lovelace:chat","max_tokens":100,"messages":[{"role":"user","content":"hello there"}]}""";

    private static string Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? string.Join(",", values) : "(none)";

    private async Task<string> LimitedKeyAsync(JsonObject limits) =>
        (await GatewayFixture.PostAsync(gateway.Admin, $"/admin/v1/workspaces/{gateway.WorkspaceId}/keys",
            new JsonObject { ["name"] = "limited", ["limits"] = limits }))["key"]!.GetValue<string>();

    [Fact]
    public async Task A_limited_key_gets_anthropics_rate_limit_headers_and_a_rate_limit_error()
    {
        var key = await LimitedKeyAsync(new JsonObject { ["requests_per_minute"] = 1, ["tokens_per_minute"] = 1000 });
        using var client = gateway.Client();
        client.DefaultRequestHeaders.Add("x-api-key", key);
        var now = gateway.Time.GetUtcNow();

        using (var first = await client.PostAsync("/v1/messages", new StringContent(Hello, Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
            Assert.Equal("1", Header(first, "anthropic-ratelimit-requests-limit"));
            Assert.Equal("0", Header(first, "anthropic-ratelimit-requests-remaining"));
            Assert.Equal(Rfc3339(now.AddMinutes(1)), Header(first, "anthropic-ratelimit-requests-reset"));
            Assert.Equal("1000", Header(first, "anthropic-ratelimit-tokens-limit"));
            Assert.NotEqual("(none)", Header(first, "anthropic-ratelimit-tokens-remaining"));
            Assert.NotEqual("(none)", Header(first, "anthropic-ratelimit-tokens-reset"));
            // Only Anthropic's headers on this surface.
            Assert.Equal("(none)", Header(first, "x-ratelimit-limit-requests"));
        }

        using (var refused = await client.PostAsync("/v1/messages", new StringContent(Hello, Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.Equal("60", Header(refused, "retry-after"));
            Assert.Equal("0", Header(refused, "anthropic-ratelimit-requests-remaining"));
            var body = (await refused.Content.ReadFromJsonAsync<JsonObject>())!;
            Assert.Equal("error", body["type"]!.GetValue<string>());
            Assert.Equal("rate_limit_error", body["error"]!["type"]!.GetValue<string>());
            Assert.Equal("Rate limit reached for lovelace:chat on requests per min (RPM): Limit 1. Please try again in 1m0s.", body["error"]!["message"]!.GetValue<string>());
            Assert.Equal(Header(refused, "request-id"), body["request_id"]!.GetValue<string>());
        }

        // The SDK sees its own rate-limit exception (it would retry after retry-after; here it does not retry).
        var sdk = AnthropicSdkTests.Sdk(gateway, key);
        await Assert.ThrowsAsync<AnthropicRateLimitException>(() => sdk.Messages.Create(new MessageCreateParams
        {
            Model = "lovelace:chat",
            MaxTokens = 100,
            Messages = [new UserMessageParam("hello there")],
        }));
    }

    private static string Rfc3339(DateTimeOffset at)
    {
        var seconds = (at.UtcTicks + TimeSpan.TicksPerSecond - 1) / TimeSpan.TicksPerSecond;
        return new DateTime(seconds * TimeSpan.TicksPerSecond, DateTimeKind.Utc).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);
    }
}
