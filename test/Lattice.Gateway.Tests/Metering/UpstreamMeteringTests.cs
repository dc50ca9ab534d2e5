using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Tests.Infrastructure;

namespace Lattice.Gateway.Tests.Metering;

/// <summary>Every request that reaches dispatch through an upstream offer leaves exactly one record, counted by the upstream.</summary>
[Collection(GatewayCollection.Name)]
public sealed class UpstreamMeteringTests(GatewayFixture gateway)
{
    // The stand-in counts words: three prompt words, and "You said: one two three" is five.
    private const string Words = "one two three";

    private static StringContent Chat(string model, bool stream = false, bool? includeUsage = null) => new(
        $$"""{"model":"{{model}}","messages":[{"role":"user","content":"{{Words}}"}],"stream":{{(stream ? "true" : "false")}}{{(includeUsage is { } iu ? $$""","stream_options":{"include_usage":{{(iu ? "true" : "false")}}}""" : "")}}}""",
        Encoding.UTF8, "application/json");

    private static string RequestId(HttpResponseMessage response) => response.Headers.GetValues("x-request-id").Single();

    private async Task<(UsageRecord Record, string Body)> SendAsync(HttpContent content, string path = "/v1/chat/completions")
    {
        using var client = gateway.DevClient();
        using var response = await client.PostAsync(path, content);
        var body = await response.Content.ReadAsStringAsync();
        return (await Ledger.RecordAsync(gateway.Factory.Services, RequestId(response)), body);
    }

    [Fact]
    public async Task A_non_streamed_answer_is_recorded_with_the_upstreams_counts()
    {
        var (record, _) = await SendAsync(Chat("lovelace:chat"));
        Assert.Equal(UsageStatuses.Ok, record.Status);
        Assert.Equal(200, record.HttpStatus);
        Assert.Equal("chat.completions", record.Task);
        Assert.Equal(Surfaces.OpenAi, record.Surface);
        Assert.Equal("lovelace:chat", record.Model);
        Assert.Equal(gateway.WorkspaceId, record.WorkspaceId);
        Assert.StartsWith("key_", record.KeyId);
        Assert.Null(record.GrantId);
        Assert.Equal(ServedByKinds.Upstream, record.ServedBy);
        Assert.NotNull(record.ServedById);
        Assert.Equal(CapacityClasses.Hosted, record.Capacity);
        Assert.False(record.Stream);
        Assert.Equal(new Lattice.Protocol.Metering.Usage(3, 5, 8), record.Usage);
        Assert.NotNull(record.TimeToFirstByteMicroseconds);
        Assert.True(record.DurationMicroseconds >= record.TimeToFirstByteMicroseconds);
    }

    [Theory]
    [InlineData(null)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_streamed_answer_is_counted_like_the_same_answer_unstreamed(bool? includeUsage)
    {
        var (record, body) = await SendAsync(Chat("lovelace:chat", stream: true, includeUsage));
        Assert.Equal(UsageStatuses.Ok, record.Status);
        Assert.True(record.Stream);
        Assert.Equal(new Lattice.Protocol.Metering.Usage(3, 5, 8), record.Usage);

        var events = Sse.DataEvents(body);
        Assert.Equal("[DONE]", events[^1]);
        if (includeUsage == true)
        {
            // The client asked: it gets the usage chunk.
            Assert.Contains(events, e => e.Contains("\"usage\":{", StringComparison.Ordinal));
        }
        else
        {
            // The gateway asked for itself; the client sees none of it, not even the nulls.
            Assert.DoesNotContain(events, e => e.Contains("\"usage\"", StringComparison.Ordinal));
            var sent = await gateway.LastUpstreamRequestAsync("/v1/chat/completions");
            using var upstream = JsonDocument.Parse(Convert.FromBase64String(sent["body_base64"]!.GetValue<string>()));
            Assert.True(upstream.RootElement.GetProperty("stream_options").GetProperty("include_usage").GetBoolean());
        }
    }

    [Fact]
    public async Task Failover_inside_one_request_is_one_record_naming_the_offer_that_served()
    {
        var (record, body) = await SendAsync(Chat("lovelace:fail-500-then-ok"));
        Assert.Contains("You said: one two three", body, StringComparison.Ordinal);
        var models = (await gateway.Admin.GetFromJsonAsync<JsonObject>("/admin/v1/models"))!["data"]!.AsArray();
        var offers = models.Single(m => m!["id"]!.GetValue<string>() == "lovelace:fail-500-then-ok")!["offers"]!.AsArray();
        var second = offers.Single(o => o!["upstream_model"]!.GetValue<string>() == "standin-chat")!["id"]!.GetValue<string>();
        Assert.Equal(UsageStatuses.Ok, record.Status);
        Assert.Equal(second, record.ServedById);
        Assert.Equal(1, await Ledger.CountAsync(gateway.Factory.Services, record.RequestId));
    }

    [Fact]
    public async Task A_request_that_nothing_could_serve_is_recorded_with_its_error_and_costs_nothing()
    {
        var (record, _) = await SendAsync(Chat("lovelace:dead"));
        Assert.Equal("upstream_error", record.Status);
        Assert.Equal(502, record.HttpStatus);
        Assert.Equal(0, record.CostPicoUsd);
        Assert.Equal(default, record.Usage);

        var (unknown, _) = await SendAsync(Chat("lovelace:no-such-model"));
        Assert.Equal("model_not_found", unknown.Status);
        Assert.Equal(404, unknown.HttpStatus);
        Assert.Null(unknown.ServedBy);
    }

    [Fact]
    public async Task A_relayed_upstream_4xx_is_recorded_with_the_upstreams_code()
    {
        var (record, _) = await SendAsync(Chat("lovelace:bad-request"));
        Assert.Equal("standin_bad", record.Status);
        Assert.Equal(400, record.HttpStatus);
        Assert.Equal(0, record.CostPicoUsd);
    }

    [Fact]
    public async Task A_client_that_leaves_mid_stream_is_metered_for_what_reached_it()
    {
        using var client = gateway.DevClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat("lovelace:drip", stream: true) };
        string id;
        using (var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            id = RequestId(response);
            await using var stream = await response.Content.ReadAsStreamAsync();
            using var reader = new StreamReader(stream);
            // The role chunk, then the first word ("You") after the stand-in's pause.
            while (await reader.ReadLineAsync() is { } line && !line.Contains("\"content\":\"You\"", StringComparison.Ordinal))
            {
            }
        }
        var record = await Ledger.RecordAsync(gateway.Factory.Services, id);
        Assert.Equal(UsageStatuses.Cancelled, record.Status);
        Assert.True(record.Usage.Estimated);
        Assert.True(record.Usage.CompletionTokens >= 1, $"completion tokens {record.Usage.CompletionTokens}");
        Assert.True(record.Usage.CompletionTokens < 5, $"completion tokens {record.Usage.CompletionTokens}");
        Assert.True(record.Usage.PromptTokens > 0);
    }

    [Fact]
    public async Task Embeddings_and_transcriptions_are_metered_in_their_units()
    {
        var (embeddings, _) = await SendAsync(new StringContent("""{"model":"lovelace:embed","input":["alpha beta","gamma"]}""", Encoding.UTF8, "application/json"), "/v1/embeddings");
        Assert.Equal(UsageStatuses.Ok, embeddings.Status);
        Assert.Equal(3, embeddings.Usage.PromptTokens);
        Assert.Equal(3, embeddings.Usage.TotalTokens);

        using var form = new MultipartFormDataContent
        {
            { new StringContent("lovelace:whisper"), "model" },
            { new ByteArrayContent(new byte[64]), "file", "a.wav" },
        };
        var (transcription, _) = await SendAsync(form, "/v1/audio/transcriptions");
        Assert.Equal(UsageStatuses.Ok, transcription.Status);
        Assert.Equal(2000, transcription.Usage.AudioMilliseconds);
    }

    [Fact]
    public async Task An_admin_added_task_class_is_metered_through_its_usage_path()
    {
        var name = "metered" + Guid.NewGuid().ToString("N")[..8];
        await GatewayFixture.PostAsync(gateway.Admin, "/admin/v1/task-classes", JsonNode.Parse("""
            {"name":"NAME","streams":false,"content_type":"application/json","upstream_path":"custom/NAME",
             "usage_path":"body.meta.billed_units","metering_unit":"tokens",
             "input_schema":{"type":"object","required":["model"],"properties":{"model":{"type":"string"}}}}
            """.Replace("NAME", name, StringComparison.Ordinal))!);
        await gateway.AddModelAsync("lovelace:" + name, GatewayFixture.Offer(gateway.StandInUrl + "/v1", "standin-" + name, task: name));

        // The stand-in echoes the body, so the answer carries this usage at body.meta.billed_units.
        var (record, _) = await SendAsync(new StringContent(
            $$$$"""{"model":"lovelace:{{{{name}}}}","query":"q","meta":{"billed_units":{"input_tokens":7,"output_tokens":2}}}""", Encoding.UTF8, "application/json"),
            $"/v1/tasks/{name}");
        Assert.Equal(UsageStatuses.Ok, record.Status);
        Assert.Equal(name, record.Task);
        Assert.Equal(new Lattice.Protocol.Metering.Usage(7, 2, 9), record.Usage);
    }

    [Fact]
    public async Task A_record_costs_exactly_what_its_prices_say()
    {
        var model = "lovelace:priced-" + Guid.NewGuid().ToString("N")[..8];
        await GatewayFixture.PostAsync(gateway.Admin, "/admin/v1/models", new JsonObject
        {
            ["id"] = model,
            ["owned_by"] = "tests",
            ["prices"] = new JsonObject { ["input_per_mtok"] = 2.5m, ["output_per_mtok"] = 10, ["per_request"] = 0.001m },
            ["offers"] = new JsonArray(GatewayFixture.Offer(gateway.StandInUrl + "/v1", "standin-chat")),
        });
        var (record, _) = await SendAsync(Chat(model));
        Assert.Equal(new Lattice.Protocol.Metering.Usage(3, 5, 8), record.Usage);
        // 3 × $2.50/M + 5 × $10/M + $0.001 = $0.0010575, in pico-USD.
        Assert.Equal(1_057_500_000, record.CostPicoUsd);

        var (failed, _) = await SendAsync(Chat("lovelace:bad-request"));
        Assert.Equal(0, failed.CostPicoUsd);
    }
}
