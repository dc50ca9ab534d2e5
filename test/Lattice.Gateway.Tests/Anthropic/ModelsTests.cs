using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using Lattice.Gateway.Anthropic;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Tests.Infrastructure;

namespace Lattice.Gateway.Tests.Anthropic;

/// <summary><c>GET /v1/models</c> in Anthropic's shapes when the request carries <c>anthropic-version</c>; OpenAI's otherwise.</summary>
[Collection(GatewayCollection.Name)]
public sealed class ModelsTests(GatewayFixture gateway)
{
    private HttpClient AnthropicClient(string? key = null)
    {
        var client = gateway.Client();
        client.DefaultRequestHeaders.Add("x-api-key", key ?? gateway.ApiKey);
        client.DefaultRequestHeaders.Add("anthropic-version", "2023-06-01");
        return client;
    }

    private static string RequestId(HttpResponseMessage response) => response.Headers.GetValues("request-id").Single();

    /// <summary>lovelace:chat as OpenAI's list shows it: its <c>created</c> as Anthropic's <c>created_at</c>.</summary>
    private async Task<string> CreatedAtAsync()
    {
        using var openAi = gateway.DevClient();
        var model = JsonNode.Parse(await openAi.GetStringAsync("/v1/models/lovelace:chat"))!;
        return DateTimeOffset.FromUnixTimeSeconds(model["created"]!.GetValue<long>()).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task The_list_is_anthropics_page_newest_first()
    {
        using var client = AnthropicClient();
        using var response = await client.GetAsync("/v1/models?limit=1000");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var page = JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject();

        Assert.Equal(["data", "has_more", "first_id", "last_id"], page.Select(p => p.Key));
        var data = page["data"]!.AsArray();
        Assert.False(page["has_more"]!.GetValue<bool>());
        Assert.Equal(data[0]!["id"]!.GetValue<string>(), page["first_id"]!.GetValue<string>());
        Assert.Equal(data[^1]!["id"]!.GetValue<string>(), page["last_id"]!.GetValue<string>());
        var chat = data.Single(m => m!["id"]!.GetValue<string>() == "lovelace:chat")!;
        Assert.Equal($$"""{"type":"model","id":"lovelace:chat","display_name":"lovelace:chat","created_at":"{{await CreatedAtAsync()}}"}""", chat.ToJsonString());
        var created = data.Select(m => DateTimeOffset.Parse(m!["created_at"]!.GetValue<string>(), CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(created.OrderDescending(), created);
    }

    [Fact]
    public async Task One_model_is_anthropics_model_object()
    {
        using var client = AnthropicClient();
        using var response = await client.GetAsync("/v1/models/lovelace:chat");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(
            $$"""{"type":"model","id":"lovelace:chat","display_name":"lovelace:chat","created_at":"{{await CreatedAtAsync()}}"}""",
            await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Without_anthropic_version_the_list_is_openais()
    {
        using var client = gateway.DevClient();
        var list = JsonNode.Parse(await client.GetStringAsync("/v1/models"))!;
        Assert.Equal("list", list["object"]!.GetValue<string>());
        var chat = list["data"]!.AsArray().Single(m => m!["id"]!.GetValue<string>() == "lovelace:chat")!.AsObject();
        Assert.Equal(["id", "object", "created", "owned_by"], chat.Select(p => p.Key));
    }

    public static TheoryData<string, int, string, string> Refusals => new()
    {
        { "/v1/models/lovelace:nope", 404, "not_found_error", "The model 'lovelace:nope' does not exist or you do not have access to it." },
        { "/v1/models/lattice:personal:rt_nobody", 404, "not_found_error", "The model 'lattice:personal:rt_nobody' does not exist or you do not have access to it." },
        { "/v1/models?limit=0", 400, "invalid_request_error", "limit: must be an integer from 1 to 1000." },
        { "/v1/models?limit=1001", 400, "invalid_request_error", "limit: must be an integer from 1 to 1000." },
        { "/v1/models?limit=ten", 400, "invalid_request_error", "limit: must be an integer from 1 to 1000." },
        { "/v1/models?after_id=lovelace:nope", 400, "invalid_request_error", "after_id: no model 'lovelace:nope' is listed." },
        { "/v1/models?after_id=lovelace:chat&before_id=lovelace:chat", 400, "invalid_request_error", "before_id, after_id: give at most one of them." },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task A_refusal_is_anthropics_error_envelope(string path, int status, string type, string message)
    {
        using var client = AnthropicClient();
        using var response = await client.GetAsync(path);
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal(
            $$"""{"type":"error","error":{"type":"{{type}}","message":"{{message}}"},"request_id":"{{RequestId(response)}}"}""",
            await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task A_bad_key_is_an_authentication_error_in_anthropics_envelope()
    {
        using var client = AnthropicClient("sk_not_a_real_key");
        using var response = await client.GetAsync("/v1/models");
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.Equal("error", error["type"]!.GetValue<string>());
        Assert.Equal("authentication_error", error["error"]!["type"]!.GetValue<string>());
    }

    private static readonly ListedModel[] Five = new[] { "e", "d", "c", "b", "a" }.Select(id => new ListedModel(id, DateTimeOffset.UnixEpoch, "tests")).ToArray();

    [Theory]
    [InlineData(2, null, null, 0, 2, true)]
    [InlineData(2, "d", null, 2, 4, true)]
    [InlineData(2, "b", null, 4, 5, false)]
    [InlineData(2, "a", null, 5, 5, false)]
    [InlineData(20, null, null, 0, 5, false)]
    [InlineData(2, null, "a", 2, 4, true)]
    [InlineData(2, null, "c", 0, 2, false)]
    [InlineData(2, null, "d", 0, 1, false)]
    [InlineData(2, null, "e", 0, 0, false)]
    public void Pages_follow_after_id_forwards_and_before_id_backwards(int limit, string? afterId, string? beforeId, int start, int end, bool hasMore)
    {
        var (s, e, more, error) = AnthropicModels.Page(Five, limit, afterId, beforeId);
        Assert.Null(error);
        Assert.Equal((start, end, hasMore), (s, e, more));
    }
}
