using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Lattice.Gateway.Responses;
using Lattice.Gateway.Tests.Infrastructure;
using Lattice.Gateway.Tests.Metering;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Lattice.Gateway.Tests.Responses;

/// <summary>
/// <c>/v1/responses</c> over the stand-in's <c>lovelace:chat</c> (it echoes "You said: …" and counts words as tokens):
/// the Response and its stream exactly as the client gets them, metering, kept responses (GET, DELETE, input items,
/// <c>previous_response_id</c>, retention), the refusals, and the pass-through to an upstream that serves Responses.
/// </summary>
[Collection(GatewayCollection.Name)]
public sealed class ResponsesTests(GatewayFixture gateway)
{
    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    private static string RequestId(HttpResponseMessage response) => response.Headers.GetValues("x-request-id").Single();

    private static string ResponseId(HttpResponseMessage response) => "resp_" + RequestId(response)["req_".Length..];

    private static string Usage(int input, int output) =>
        $$$"""{"input_tokens":{{{input}}},"input_tokens_details":{"cached_tokens":0,"cache_write_tokens":0},"output_tokens":{{{output}}},"output_tokens_details":{"reasoning_tokens":0},"total_tokens":{{{input + output}}}}""";

    private static string Response(string id, long created, string status, string output, string usage, string store = "true", string previous = "null") =>
        $$$"""{"id":"{{{id}}}","object":"response","created_at":{{{created}}},"status":"{{{status}}}","completed_at":{{{(status == "in_progress" ? "null" : created.ToString(System.Globalization.CultureInfo.InvariantCulture))}}},"error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"model":"lovelace:chat","output":{{{output}}},"parallel_tool_calls":true,"previous_response_id":{{{previous}}},"reasoning":{"effort":null,"summary":null},"store":{{{store}}},"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":{{{usage}}},"user":null,"metadata":{}}""";

    private static string Message(string id, string text) =>
        $$"""{"id":"{{id}}","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","annotations":[],"logprobs":[],"text":"{{text}}"}]}""";

    [Fact]
    public async Task A_response_is_the_chat_answer_as_a_response_object_and_is_metered_on_the_responses_surface()
    {
        using var client = gateway.DevClient();
        var created = gateway.Time.GetUtcNow().ToUnixTimeSeconds();
        using var response = await client.PostAsync("/v1/responses", Json("""{"model":"lovelace:chat","input":"hello there"}"""));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType!.MediaType);
        var id = ResponseId(response);
        Assert.Equal(
            Response(id, created, "completed", "[" + Message("msg_" + id[5..], "You said: hello there") + "]", Usage(2, 4)),
            await response.Content.ReadAsStringAsync());

        var record = await Ledger.RecordAsync(gateway.Factory.Services, RequestId(response));
        Assert.Equal("responses", record.Surface);
        Assert.Equal("chat.completions", record.Task);
        Assert.False(record.Stream);
        Assert.Equal(2, record.Usage.PromptTokens);
        Assert.Equal(4, record.Usage.CompletionTokens);
    }

    [Fact]
    public async Task A_stream_is_the_responses_event_grammar_byte_for_byte_and_metered_the_same()
    {
        using var client = gateway.DevClient();
        var created = gateway.Time.GetUtcNow().ToUnixTimeSeconds();
        using var response = await client.PostAsync("/v1/responses", Json("""{"model":"lovelace:chat","input":"hello there","stream":true}"""));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var id = ResponseId(response);
        var item = "msg_" + id[5..];
        var progress = Response(id, created, "in_progress", "[]", "null");
        var expected = new StringBuilder();
        var sequence = 0;
        void Event(string type, string fields) =>
            expected.Append("event: ").Append(type).Append("\ndata: {\"type\":\"").Append(type).Append("\",\"sequence_number\":").Append(sequence++).Append(fields).Append("}\n\n");
        Event("response.created", ",\"response\":" + progress);
        Event("response.in_progress", ",\"response\":" + progress);
        Event("response.output_item.added", $$""","output_index":0,"item":{"id":"{{item}}","type":"message","status":"in_progress","role":"assistant","content":[]}""");
        Event("response.content_part.added", $$""","item_id":"{{item}}","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"logprobs":[],"text":""}""");
        foreach (var delta in new[] { "You", " said:", " hello", " there" })
        {
            Event("response.output_text.delta", $$""","item_id":"{{item}}","output_index":0,"content_index":0,"delta":"{{delta}}","logprobs":[]""");
        }
        Event("response.output_text.done", $$""","item_id":"{{item}}","output_index":0,"content_index":0,"text":"You said: hello there","logprobs":[]""");
        Event("response.content_part.done", $$""","item_id":"{{item}}","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"logprobs":[],"text":"You said: hello there"}""");
        Event("response.output_item.done", ",\"output_index\":0,\"item\":" + Message(item, "You said: hello there"));
        Event("response.completed", ",\"response\":" + Response(id, created, "completed", "[" + Message(item, "You said: hello there") + "]", Usage(2, 4)));
        Assert.Equal(expected.ToString(), await response.Content.ReadAsStringAsync());

        var record = await Ledger.RecordAsync(gateway.Factory.Services, RequestId(response));
        Assert.Equal("responses", record.Surface);
        Assert.True(record.Stream);
        Assert.Equal(2, record.Usage.PromptTokens);
        Assert.Equal(4, record.Usage.CompletionTokens);
    }

    [Fact]
    public async Task A_stream_that_breaks_ends_with_response_failed()
    {
        var (model, gate) = await MidStreamBreak.ModelAsync(gateway);
        using var client = gateway.DevClient();
        var (response, body) = await MidStreamBreak.ReadAsync(client, new HttpRequestMessage(HttpMethod.Post, "/v1/responses")
        {
            Content = Json($$"""{"model":"{{model}}","input":"hello there","stream":true}"""),
        }, gate, "output_text.delta");
        using var _ = response;

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = GoldenTranslationTests.Events(body);
        Assert.Equal("response.created", events[0]!["event"]!.GetValue<string>());
        var last = events[^1]!;
        Assert.Equal("response.failed", last["event"]!.GetValue<string>());
        Assert.Equal("failed", last["data"]!["response"]!["status"]!.GetValue<string>());
        Assert.Equal("""{"code":"server_error","message":"The upstream provider failed in the middle of the response."}""", last["data"]!["response"]!["error"]!.ToJsonString());
        Assert.DoesNotContain(events, e => e!["event"]!.GetValue<string>() == "response.completed");
    }

    [Fact]
    public async Task A_kept_response_is_read_listed_continued_and_deleted_in_its_workspace_only()
    {
        using var client = gateway.DevClient();
        using var first = await client.PostAsync("/v1/responses",
            Json("""{"model":"lovelace:chat","instructions":"Be brief.","input":[{"role":"user","content":"hello there"}]}"""));
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        var firstBody = await first.Content.ReadAsStringAsync();
        var id = ResponseId(first);

        // GET gives back exactly what the client got.
        using (var got = await client.GetAsync($"/v1/responses/{id}"))
        {
            Assert.Equal(HttpStatusCode.OK, got.StatusCode);
            Assert.Equal(firstBody, await got.Content.ReadAsStringAsync());
        }

        // Continuing: the stored input and output come first; the first request's instructions do not.
        using var second = await client.PostAsync("/v1/responses",
            Json($$"""{"model":"lovelace:chat","previous_response_id":"{{id}}","input":"and now?"}"""));
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        var secondJson = JsonNode.Parse(await second.Content.ReadAsStringAsync())!;
        Assert.Equal(id, secondJson["previous_response_id"]!.GetValue<string>());
        Assert.Equal("You said: and now?", secondJson["output"]![0]!["content"]![0]!["text"]!.GetValue<string>());
        var upstream = await gateway.LastUpstreamRequestAsync("/v1/chat/completions");
        Assert.Equal(
            """{"model":"standin-chat","messages":[{"role":"user","content":"hello there"},{"role":"assistant","content":"You said: hello there"},{"role":"user","content":"and now?"}]}""",
            Encoding.UTF8.GetString(Convert.FromBase64String(upstream["body_base64"]!.GetValue<string>())));

        // The second response's input items: the whole conversation up to it, newest first.
        using (var items = await client.GetAsync($"/v1/responses/{ResponseId(second)}/input_items"))
        {
            Assert.Equal(HttpStatusCode.OK, items.StatusCode);
            var list = JsonNode.Parse(await items.Content.ReadAsStringAsync())!;
            Assert.Equal("list", list["object"]!.GetValue<string>());
            Assert.Equal(
                $$"""[{"type":"message","role":"user","content":"and now?"},{{Message("msg_" + id[5..], "You said: hello there")}},{"role":"user","content":"hello there"}]""",
                list["data"]!.ToJsonString(new System.Text.Json.JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
            Assert.False(list["has_more"]!.GetValue<bool>());
        }

        // Another workspace sees none of it.
        using var stranger = gateway.Client(await StrangerKeyAsync());
        foreach (var path in new[] { $"/v1/responses/{id}", $"/v1/responses/{id}/input_items" })
        {
            using var hidden = await stranger.GetAsync(path);
            Assert.Equal(HttpStatusCode.NotFound, hidden.StatusCode);
        }
        using (var hiddenDelete = await stranger.DeleteAsync($"/v1/responses/{id}"))
        {
            Assert.Equal(HttpStatusCode.NotFound, hiddenDelete.StatusCode);
        }
        using (var continued = await stranger.PostAsync("/v1/responses", Json($$"""{"model":"lovelace:chat","previous_response_id":"{{id}}","input":"x"}""")))
        {
            Assert.Equal(HttpStatusCode.BadRequest, continued.StatusCode);
            Assert.Equal(
                $$$"""{"error":{"message":"Previous response with id '{{{id}}}' not found.","type":"invalid_request_error","param":"previous_response_id","code":"previous_response_not_found"}}""",
                await continued.Content.ReadAsStringAsync());
        }

        // DELETE in OpenAI's shape; then it is gone.
        using (var deleted = await client.DeleteAsync($"/v1/responses/{id}"))
        {
            Assert.Equal(HttpStatusCode.OK, deleted.StatusCode);
            Assert.Equal($$"""{"id":"{{id}}","object":"response","deleted":true}""", await deleted.Content.ReadAsStringAsync());
        }
        using (var gone = await client.GetAsync($"/v1/responses/{id}"))
        {
            Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
            Assert.Equal(
                $$$"""{"error":{"message":"Response with id '{{{id}}}' not found.","type":"invalid_request_error","param":"response_id","code":"not_found"}}""",
                await gone.Content.ReadAsStringAsync());
        }
    }

    [Fact]
    public async Task Store_false_keeps_nothing()
    {
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/v1/responses", Json("""{"model":"lovelace:chat","input":"hi","store":false}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.False(JsonNode.Parse(await response.Content.ReadAsStringAsync())!["store"]!.GetValue<bool>());
        using var got = await client.GetAsync($"/v1/responses/{ResponseId(response)}");
        Assert.Equal(HttpStatusCode.NotFound, got.StatusCode);
    }

    [Fact]
    public async Task A_kept_response_expires_after_the_retention_and_the_pruner_deletes_it()
    {
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/v1/responses", Json("""{"model":"lovelace:chat","input":"remember me"}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var id = ResponseId(response);
        var store = gateway.Factory.Services.GetRequiredService<ResponseStore>();
        Assert.NotNull(await store.FindAsync(gateway.WorkspaceId, id, CancellationToken.None));

        gateway.Time.Advance(TimeSpan.FromDays(30) + TimeSpan.FromSeconds(1));
        using (var expired = await client.GetAsync($"/v1/responses/{id}"))
        {
            Assert.Equal(HttpStatusCode.NotFound, expired.StatusCode);
        }
        // Advancing the clock may have let the hosted pruner's timer run already; a pass now finishes the job either way.
        var pruner = gateway.Factory.Services.GetServices<IHostedService>().OfType<ResponsePruner>().Single();
        await pruner.PruneAsync(CancellationToken.None);
        await using var scope = gateway.Factory.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<Lattice.Gateway.Persistence.LatticeDbContext>();
        Assert.False(db.StoredResponses.Any(r => r.Id == id));
    }

    public static TheoryData<string, int, string?, string> Refusals => new()
    {
        { """{"input":"hi"}""", 400, "model", "model: a non-empty string is required." },
        { """{"model":"lovelace:chat"}""", 400, "input", "input: a string or an array of input items is required." },
        { """{"model":"lovelace:chat","input":"hi","tools":[{"type":"web_search"}]}""", 400, "tools[0].type", "tools[0].type: built-in tools ('web_search') are not supported by the chat-completions targets this model is served by." },
        { """{"model":"lovelace:chat","input":"hi","reasoning":{"effort":"high"}}""", 400, "reasoning", "reasoning: not supported by the chat-completions targets this model is served by." },
        { """{"model":"lovelace:chat","input":"hi","background":true}""", 400, "background", "background: not supported by the chat-completions targets this model is served by." },
        { """{"model":"lovelace:chat","input":"hi","include":["file_search_call.results"]}""", 400, "include", "include: not supported by the chat-completions targets this model is served by." },
        { """{"model":"lovelace:chat","input":"hi","service_tier":"flex"}""", 400, "service_tier", "service_tier: not supported by the chat-completions targets this model is served by." },
        { """{"model":"lovelace:chat","input":"hi","truncation":"auto"}""", 400, "truncation", "truncation: only 'disabled' is supported by the chat-completions targets this model is served by." },
        { """{"model":"lovelace:chat","input":"hi","frequency_penalty":1}""", 400, "frequency_penalty", "frequency_penalty: unknown parameter." },
        { """{"model":"lovelace:chat","input":[{"type":"reasoning","summary":[]}]}""", 400, "input[0].type", "input[0].type: items of type 'reasoning' are not supported by the chat-completions targets this model is served by." },
        { """{"model":"lovelace:chat","input":[{"role":"user","content":[{"type":"input_file","file_id":"file_1"}]}]}""", 400, "input[0].content[0].type", "input[0].content[0].type: content parts of type 'input_file' are not supported by the chat-completions targets this model is served by." },
        { """{"model":"lovelace:chat","input":[{"type":"function_call_output","output":"x"}]}""", 400, "input[0].call_id", "input[0].call_id: a string is required." },
        { """{"model":"lovelace:chat","input":"hi","text":{"format":{"type":"json_schema","schema":{}}}}""", 400, "text.format.name", "text.format.name: a non-empty string is required." },
        { """{"model":"lovelace:chat","input":"hi","max_output_tokens":0}""", 400, "max_output_tokens", "max_output_tokens: must be an integer of at least 1." },
        { """{"model":"lovelace:chat","input":"hi","temperature":3}""", 400, "temperature", "temperature: must be a number from 0 to 2." },
        { """{"model":"lovelace:chat","input":"hi","tool_choice":{"type":"file_search"}}""", 400, "tool_choice.type", "tool_choice.type: 'file_search' is not supported by the chat-completions targets this model is served by." },
        { """{"model":"lovelace:chat","input":"hi","previous_response_id":"resp_nope"}""", 400, "previous_response_id", "Previous response with id 'resp_nope' not found." },
        { """{"model":"lovelace:nope","input":"hi"}""", 404, "model", "The model 'lovelace:nope' does not exist or you do not have access to it." },
        { """{"model":"lovelace:chat","input":"hi",""", 400, null, "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.) (line 1, position 37)" },
        // An escaped surrogate without its pair is not text: refused before any field is read, in a name or a value.
        { """{"model":"lovelace:chat","input":"hi","x\ud800":1}""", 400, null, "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.) A string holds an escaped UTF-16 surrogate (\\uD800–\\uDFFF) without its pair." },
        { """{"model":"lovelace:chat","input":"\udc00"}""", 400, null, "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.) A string holds an escaped UTF-16 surrogate (\\uD800–\\uDFFF) without its pair." },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task A_request_the_chat_targets_cannot_serve_is_refused_naming_the_field(string body, int status, string? param, string message)
    {
        using var client = gateway.DevClient();
        using var response = await client.PostAsync("/v1/responses", Json(body));
        Assert.Equal(status, (int)response.StatusCode);
        var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
        Assert.Equal(message, error["message"]!.GetValue<string>());
        Assert.Equal(param, error["param"]?.GetValue<string>());
    }

    [Fact]
    public async Task An_upstream_that_serves_responses_gets_the_clients_bytes_and_its_answer_passes_through()
    {
        await gateway.AddModelAsync("lovelace:native-responses", new JsonObject
        {
            ["base_url"] = gateway.StandInUrl + "/v1",
            ["upstream_model"] = "standin-responses",
            ["credential"] = "standin",
            ["serves_responses"] = true,
        });
        using var client = gateway.DevClient();
        const string sent = """{ "model" : "lovelace:native-responses", "input":"hello there", "store": false }""";
        using var response = await client.PostAsync("/v1/responses", Json(sent));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var answer = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.StartsWith("resp_standin_", answer["id"]!.GetValue<string>(), StringComparison.Ordinal);
        // The upstream's own Response (its id), naming the model the client asked for.
        Assert.Equal("lovelace:native-responses", answer["model"]!.GetValue<string>());
        Assert.Equal("You said: hello there", answer["output"]![0]!["content"]![0]!["text"]!.GetValue<string>());

        // The upstream got the client's bytes with only the model replaced.
        var upstream = await gateway.LastUpstreamRequestAsync("/v1/responses");
        Assert.Equal(sent.Replace("lovelace:native-responses", "standin-responses", StringComparison.Ordinal),
            Encoding.UTF8.GetString(Convert.FromBase64String(upstream["body_base64"]!.GetValue<string>())));
        var record = await Ledger.RecordAsync(gateway.Factory.Services, RequestId(response));
        Assert.Equal("responses", record.Surface);
        Assert.Equal(2, record.Usage.PromptTokens);
        Assert.Equal(4, record.Usage.CompletionTokens);

        // Streamed: the upstream's events as they were, ending with response.completed; metered from its usage.
        using var streamed = await client.PostAsync("/v1/responses", Json("""{"model":"lovelace:native-responses","input":"hello there","stream":true}"""));
        Assert.Equal(HttpStatusCode.OK, streamed.StatusCode);
        var events = GoldenTranslationTests.Events(await streamed.Content.ReadAsStringAsync());
        Assert.Equal(
            ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
             "response.output_text.delta", "response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
             "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"],
            events.Select(e => e!["event"]!.GetValue<string>()));
        Assert.Equal("lovelace:native-responses", events[^1]!["data"]!["response"]!["model"]!.GetValue<string>());
        var streamedRecord = await Ledger.RecordAsync(gateway.Factory.Services, RequestId(streamed));
        Assert.Equal("ok", streamedRecord.Status);
        Assert.Equal(2, streamedRecord.Usage.PromptTokens);
        Assert.Equal(4, streamedRecord.Usage.CompletionTokens);
    }

    [Fact]
    public async Task The_admin_api_shows_serves_responses_and_refuses_it_on_a_runtime_offer()
    {
        await gateway.AddModelAsync("lovelace:serves-responses-admin", new JsonObject
        {
            ["base_url"] = gateway.StandInUrl + "/v1",
            ["upstream_model"] = "standin-chat",
            ["serves_responses"] = true,
        });
        using var got = await gateway.Admin.GetAsync("/admin/v1/models");
        Assert.Equal(HttpStatusCode.OK, got.StatusCode);
        var models = JsonNode.Parse(await got.Content.ReadAsStringAsync())!["data"]!.AsArray();
        var offer = models.Single(m => m!["id"]!.GetValue<string>() == "lovelace:serves-responses-admin")!["offers"]![0]!;
        Assert.False(models.Single(m => m!["id"]!.GetValue<string>() == "lovelace:chat")!["offers"]![0]!["serves_responses"]!.GetValue<bool>());
        Assert.True(offer["serves_responses"]!.GetValue<bool>());

        using var refused = await gateway.Admin.PostAsync("/admin/v1/models", Json(
            """{"id":"lovelace:runtime-responses","offers":[{"runtime":"rt_00000000000000000000","upstream_model":"m","serves_responses":true}]}"""));
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Equal("offers[0].serves_responses", JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!["param"]!.GetValue<string>());
    }

    /// <summary>A key of a second workspace.</summary>
    private async Task<string> StrangerKeyAsync()
    {
        var ws = await GatewayFixture.PostAsync(gateway.Admin, "/admin/v1/workspaces", new JsonObject { ["name"] = "stranger-" + Guid.NewGuid().ToString("N")[..8] });
        var key = await GatewayFixture.PostAsync(gateway.Admin, $"/admin/v1/workspaces/{ws["id"]!.GetValue<string>()}/keys", new JsonObject { ["name"] = "stranger" });
        return key["key"]!.GetValue<string>();
    }
}
