using System.Net;
using System.Text;
using System.Text.Json;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Metering;

/// <summary>
/// Metering against an upstream whose answers are fixed bytes: the gateway's own usage request leaves the client's
/// stream byte for byte as it would have been, and an answer without usage is counted by the gateway.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class UsageBytesTests(GatewayFixture gateway) : IAsyncLifetime
{
    // OpenAI's shape: with include_usage every chunk carries "usage":null and a last chunk carries the usage.
    private static string Chunk(string delta, string? finish, bool usageNull) =>
        "data: {\"id\":\"chatcmpl-fixed\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"system_fingerprint\":\"fp\","
        + "\"choices\":[{\"index\":0,\"delta\":" + delta + ",\"logprobs\":null,\"finish_reason\":" + (finish is null ? "null" : $"\"{finish}\"") + "}]"
        + (usageNull ? ",\"usage\":null" : "") + "}\n\n";

    private static string Stream(bool includeUsage) =>
        Chunk("{\"role\":\"assistant\",\"content\":\"\"}", null, includeUsage)
        + Chunk("{\"content\":\"Hi\"}", null, includeUsage)
        + Chunk("{\"content\":\" there\"}", null, includeUsage)
        + Chunk("{}", "stop", includeUsage)
        + (includeUsage
            ? "data: {\"id\":\"chatcmpl-fixed\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"system_fingerprint\":\"fp\",\"choices\":[],"
              + "\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":2,\"total_tokens\":13,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n"
            : "")
        + "data: [DONE]\n\n";

    private const string Unmetered = """{"id":"chatcmpl-fixed","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there, friend"},"finish_reason":"stop"}]}""";

    /// <summary>The upstream's bytes as the client gets them: naming the model it asked for, not the upstream's "m".</summary>
    private static string AsAsked(string answer, string model) => answer.Replace("\"model\":\"m\"", $"\"model\":\"{model}\"", StringComparison.Ordinal);

    private WebApplication? _upstream;
    private string _model = "";
    private string _silentModel = "";

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        _upstream = builder.Build();
        _upstream.MapPost("/v1/chat/completions", async (HttpContext context) =>
        {
            using var body = await JsonDocument.ParseAsync(context.Request.Body);
            var root = body.RootElement;
            if (root.GetProperty("model").GetString() == "silent")
            {
                // An OpenAI-compatible server that reports no usage at all.
                context.Response.ContentType = "application/json";
                await context.Response.WriteAsync(Unmetered);
                return;
            }
            var includeUsage = root.TryGetProperty("stream_options", out var so) && so.TryGetProperty("include_usage", out var iu) && iu.GetBoolean();
            context.Response.ContentType = "text/event-stream";
            // Sent in uneven pieces, so events straddle reads.
            var bytes = Encoding.UTF8.GetBytes(Stream(includeUsage));
            for (var at = 0; at < bytes.Length; at += 97)
            {
                await context.Response.Body.WriteAsync(bytes.AsMemory(at, Math.Min(97, bytes.Length - at)));
                await context.Response.Body.FlushAsync();
            }
        });
        await _upstream.StartAsync();
        var url = _upstream.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First() + "/v1";
        var suffix = Guid.NewGuid().ToString("N")[..8];
        _model = "lovelace:fixed-usage-" + suffix;
        _silentModel = "lovelace:silent-" + suffix;
        await gateway.AddModelAsync(_model, GatewayFixture.Offer(url, "m"));
        await gateway.AddModelAsync(_silentModel, GatewayFixture.Offer(url, "silent"));
    }

    public async Task DisposeAsync()
    {
        if (_upstream is not null)
        {
            await _upstream.DisposeAsync();
        }
    }

    private async Task<(byte[] Body, UsageRecord Record)> PostAsync(string json)
    {
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/v1/chat/completions", new StringContent(json, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.Content.ReadAsByteArrayAsync();
        return (body, await Ledger.RecordAsync(gateway.Factory.Services, response.Headers.GetValues("x-request-id").Single()));
    }

    [Fact]
    public async Task The_gateways_own_usage_request_leaves_the_clients_bytes_exactly_as_they_would_have_been()
    {
        var (body, record) = await PostAsync($$"""{"model":"{{_model}}","messages":[{"role":"user","content":"hi"}],"stream":true}""");
        Assert.Equal(AsAsked(Stream(includeUsage: false), _model), Encoding.UTF8.GetString(body));
        Assert.Equal(new Lattice.Protocol.Metering.Usage(11, 2, 13, 4), record.Usage);
    }

    [Fact]
    public async Task A_client_that_asked_for_usage_gets_the_upstreams_bytes_with_only_the_model_as_asked()
    {
        var (body, record) = await PostAsync($$$"""{"model":"{{{_model}}}","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}""");
        Assert.Equal(AsAsked(Stream(includeUsage: true), _model), Encoding.UTF8.GetString(body));
        Assert.Equal(new Lattice.Protocol.Metering.Usage(11, 2, 13, 4), record.Usage);
    }

    [Fact]
    public async Task An_answer_without_usage_is_counted_by_the_gateway_and_marked_estimated()
    {
        var (body, record) = await PostAsync($$"""{"model":"{{_silentModel}}","messages":[{"role":"user","content":"Say hi to my friend"}]}""");
        Assert.Equal(AsAsked(Unmetered, _silentModel), Encoding.UTF8.GetString(body));
        var estimator = gateway.Factory.Services.GetRequiredService<TokenEstimator>();
        Assert.True(record.Usage.Estimated);
        Assert.Equal(estimator.CountTokens("Hi there, friend", _silentModel), record.Usage.CompletionTokens);
        // OpenAI's rule: 3 per message + its role and content, 3 to prime the answer.
        Assert.Equal(3 + estimator.CountTokens("user", _silentModel) + estimator.CountTokens("Say hi to my friend", _silentModel) + 3, record.Usage.PromptTokens);
        Assert.Equal(record.Usage.PromptTokens + record.Usage.CompletionTokens, record.Usage.TotalTokens);
    }
}
