using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using System.Text.Json.Nodes;
using Lattice.Client.Tests.Infrastructure;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using OpenAI;

namespace Lattice.Client.Tests.Chat;

/// <summary>
/// The SDK against a real gateway (in-process, its clock the test's) in front of the OpenAI stand-in: the same answers
/// as OpenAI's own SDK, typed errors with request ids, retries that honour retry-after and are charged once.
/// </summary>
public sealed class SdkAgainstGatewayTests(GatewayFixture gateway) : IClassFixture<GatewayFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private LatticeClient Lattice(string key, TimeProvider? clock = null, LatticeRetryOptions? retry = null, HttpMessageHandler? transport = null) => new(new LatticeClientOptions
    {
        Endpoint = new Uri("http://localhost"),
        TokenProvider = new DeveloperKeyTokenProvider(key),
        Transport = transport ?? gateway.Factory.Server.CreateHandler(),
        TimeProvider = clock ?? gateway.Time,
        Retry = retry ?? new LatticeRetryOptions(),
    });

    private OpenAI.Chat.ChatClient OpenAiChat(string model) => new OpenAIClient(new ApiKeyCredential(gateway.ApiKey), new OpenAIClientOptions
    {
        Endpoint = new Uri("http://localhost/v1"),
        Transport = new HttpClientPipelineTransport(gateway.Factory.CreateClient()),
    }).GetChatClient(model);

    [Fact]
    public async Task The_same_chat_through_IChatClient_and_through_the_OpenAI_SDK_gives_the_same_text()
    {
        using var lattice = Lattice(gateway.ApiKey);
        IChatClient chat = lattice.GetChatClient("lovelace:chat");
        var prompt = "the quick brown fox";

        var ours = await chat.GetResponseAsync(prompt);
        var theirs = await OpenAiChat("lovelace:chat").CompleteChatAsync(new OpenAI.Chat.UserChatMessage(prompt));
        Assert.Equal("You said: the quick brown fox", ours.Text);
        Assert.Equal(theirs.Value.Content[0].Text, ours.Text);
        Assert.Equal("lovelace:chat", ours.ModelId);
        Assert.Equal(ChatFinishReason.Stop, ours.FinishReason);
        Assert.Equal(theirs.Value.Usage.InputTokenCount, ours.Usage!.InputTokenCount);
        Assert.Equal(theirs.Value.Usage.OutputTokenCount, ours.Usage.OutputTokenCount);
        Assert.StartsWith("req_", (string)ours.AdditionalProperties!["x-request-id"]!);

        var streamed = new List<ChatResponseUpdate>();
        await foreach (var update in chat.GetStreamingResponseAsync(prompt))
        {
            streamed.Add(update);
        }
        var theirStream = new System.Text.StringBuilder();
        await foreach (var update in OpenAiChat("lovelace:chat").CompleteChatStreamingAsync(new OpenAI.Chat.UserChatMessage(prompt)))
        {
            foreach (var part in update.ContentUpdate)
            {
                theirStream.Append(part.Text);
            }
        }
        var whole = streamed.ToChatResponse();
        Assert.Equal(theirStream.ToString(), whole.Text);
        Assert.Equal(ours.Text, whole.Text);
        Assert.True(streamed.Count > 3, "the answer arrived in several updates");
        Assert.Equal(ours.Usage.TotalTokenCount, whole.Usage!.TotalTokenCount);
    }

    [Fact]
    public async Task Tool_calls_round_trip_through_the_abstraction()
    {
        using var lattice = Lattice(gateway.ApiKey);
        var tool = AIFunctionFactory.Create((string echo) => echo, "echo_tool", "Echoes.");
        var options = new ChatOptions { Tools = [tool], ToolMode = ChatToolMode.RequireSpecific("echo_tool") };
        var answer = await lattice.GetChatClient("lovelace:chat").GetResponseAsync("ping", options);
        var call = Assert.Single(answer.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        Assert.Equal("call_standin_1", call.CallId);
        Assert.Equal("echo_tool", call.Name);
        Assert.Equal("ping", call.Arguments!["echo"]!.ToString());
        Assert.Equal(ChatFinishReason.ToolCalls, answer.FinishReason);

        var streamed = new List<ChatResponseUpdate>();
        await foreach (var update in lattice.GetChatClient("lovelace:chat").GetStreamingResponseAsync("ping", options))
        {
            streamed.Add(update);
        }
        var streamedCall = Assert.Single(streamed.SelectMany(u => u.Contents).OfType<FunctionCallContent>());
        Assert.Equal("ping", streamedCall.Arguments!["echo"]!.ToString());
    }

    [Fact]
    public async Task Embeddings_and_transcriptions_through_the_abstractions()
    {
        using var lattice = Lattice(gateway.ApiKey);
        IEmbeddingGenerator<string, Embedding<float>> embeddings = lattice.GetEmbeddingGenerator("lovelace:embed");
        var vectors = await embeddings.GenerateAsync(["one", "two words"]);
        Assert.Equal(2, vectors.Count);
        Assert.Equal(StandIn.OpenAi.StandInEmbeddings.Vector("one", 8), vectors[0].Vector.ToArray());
        Assert.Equal(StandIn.OpenAi.StandInEmbeddings.Vector("two words", 8), vectors[1].Vector.ToArray());

        ISpeechToTextClient speech = lattice.GetSpeechToTextClient("lovelace:whisper");
        using var audio = new MemoryStream(new byte[4096]);
        var text = await speech.GetTextAsync(audio);
        Assert.Equal("Hello from the stand-in.", text.Text);
    }

    [Fact]
    public async Task A_task_is_invoked_on_the_generic_task_route()
    {
        using var lattice = Lattice(gateway.ApiKey);
        var answer = await lattice.InvokeAsync("chat.completions", new JsonObject
        {
            ["model"] = "lovelace:chat",
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "via tasks" }),
        });
        Assert.Equal("You said: via tasks", answer.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());

        var events = new List<System.Text.Json.JsonElement>();
        await foreach (var chunk in lattice.InvokeStreamingAsync("chat.completions", new JsonObject
        {
            ["model"] = "lovelace:chat",
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "streamed" }),
        }))
        {
            events.Add(chunk);
        }
        Assert.Contains(events, e => e.GetProperty("choices").GetArrayLength() > 0 && e.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("content", out var c) && c.GetString() == " streamed");
    }

    [Fact]
    public async Task The_gateways_errors_arrive_as_their_exception_types_with_the_request_id()
    {
        using var lattice = Lattice(gateway.ApiKey, retry: new LatticeRetryOptions { MaxRetries = 0 });
        using var stranger = Lattice("sk_not_a_real_key_0123456789", retry: new LatticeRetryOptions { MaxRetries = 0 });
        var noUsageScope = await gateway.CreateKeyAsync(new JsonObject { ["name"] = "no-usage", ["scopes"] = new JsonArray("lattice:compute:inference") });
        using var narrow = Lattice(noUsageScope, retry: new LatticeRetryOptions { MaxRetries = 0 });
        var chat = lattice.GetChatClient();

        async Task<T> Refused<T>(Func<Task> call) where T : LatticeException
        {
            var refused = await Assert.ThrowsAsync<T>(call);
            Assert.StartsWith("req_", refused.RequestId);
            return refused;
        }

        await Refused<InvalidApiKeyException>(() => stranger.Catalog.ListModelsAsync());
        await Refused<ModelNotFoundException>(() => chat.GetResponseAsync("hi", new ChatOptions { ModelId = "lovelace:no-such-model" }));
        await Refused<PersonalLatticeNotFoundException>(() => chat.GetResponseAsync("hi", new ChatOptions { ModelId = "lattice:personal:lat_nosuchruntime" }));
        await Refused<PersonalLatticeNotFoundException>(() => lattice.Runtimes.GetAsync("lat_nosuchruntime"));
        await Refused<TaskNotFoundException>(() => lattice.InvokeAsync("no.such.task", new JsonObject { ["model"] = "lovelace:chat" }));
        await Refused<ModelNotSupportedException>(() => chat.GetResponseAsync("hi", new ChatOptions { ModelId = "lovelace:embed" }));
        var invalid = await Refused<InvalidValueException>(() => chat.GetResponseAsync("hi", new ChatOptions { ModelId = "lovelace:chat", MaxOutputTokens = -1 }));
        Assert.Equal("max_tokens", invalid.Error.Param);
        await Refused<InvalidTypeException>(() => lattice.InvokeAsync("chat.completions", new JsonObject { ["model"] = "lovelace:chat", ["messages"] = "not a list" }));
        Assert.Equal("upstream_error", (await Refused<UpstreamErrorException>(() => chat.GetResponseAsync("hi", new ChatOptions { ModelId = "lovelace:dead" }))).Code);
        // The upstream's own envelope, relayed with 502, keeps its code and is still an upstream failure.
        var relayed = await Refused<UpstreamErrorException>(() => chat.GetResponseAsync("hi", new ChatOptions { ModelId = "lovelace:fail-500" }));
        Assert.Equal(HttpStatusCode.BadGateway, relayed.StatusCode);
        var scope = await Refused<InsufficientScopesException>(() => narrow.Usage.ListRequestsAsync());
        Assert.Equal("lattice:compute:usage:read", scope.RequiredScope);

        // A runtime that never paired is not connected: the request names it, so it is never rerouted.
        var created = await lattice.Runtimes.CreateAsync("never paired");
        Assert.Equal(RuntimeStatus.Unpaired, created.Runtime.State);
        await Refused<RuntimeUnreachableException>(() => chat.GetResponseAsync("hi", new ChatOptions { ModelId = created.Runtime.ModelId }));

        // The same idempotency key with another body.
        var key = "reuse-" + Guid.NewGuid().ToString("N");
        using var stamped = Lattice(gateway.ApiKey, retry: new LatticeRetryOptions { MaxRetries = 0 }, transport: new KeyStamp(key, gateway.Factory.Server.CreateHandler()));
        Assert.Equal("You said: first", (await stamped.GetChatClient("lovelace:chat").GetResponseAsync("first")).Text);
        await Refused<IdempotencyKeyReusedException>(() => stamped.GetChatClient("lovelace:chat").GetResponseAsync("second"));
    }

    [Fact]
    public async Task A_rate_limited_call_waits_out_retry_after_on_the_clock_then_succeeds()
    {
        var created = await GatewayFixture.PostAsync(gateway.Admin, $"/admin/v1/workspaces/{gateway.WorkspaceId}/keys", new JsonObject
        {
            ["name"] = "limited", ["limits"] = new JsonObject { ["requests_per_minute"] = 1 },
        });
        var clock = new WatchedClock(gateway.Time);
        var retries = new List<LatticeRetry>();
        using var lattice = Lattice(created["key"]!.GetValue<string>(), clock, new LatticeRetryOptions { OnRetry = retries.Add });
        var chat = lattice.GetChatClient("lovelace:chat");
        Assert.Equal("You said: first", (await chat.GetResponseAsync("first")).Text);

        var second = chat.GetResponseAsync("second");
        var wait = await clock.ElapseNextWaitAsync();
        Assert.Equal("You said: second", (await second.WaitAsync(Timeout)).Text);
        var retry = Assert.Single(retries);
        var refused = Assert.IsType<RateLimitExceededException>(retry.Failure);
        Assert.Equal(refused.RetryAfter, wait);
        Assert.InRange(wait, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(60));
        Assert.StartsWith("req_", refused.RequestId);
    }

    [Fact]
    public async Task A_call_whose_answer_was_lost_is_retried_with_its_key_and_charged_once()
    {
        var created = await GatewayFixture.PostAsync(gateway.Admin, $"/admin/v1/workspaces/{gateway.WorkspaceId}/keys", new JsonObject
        {
            ["name"] = "lossy", ["scopes"] = new JsonArray("lattice:compute:inference", "lattice:compute:usage:read"),
        });
        var keyId = created["id"]!.GetValue<string>();
        var clock = new WatchedClock(gateway.Time);
        var lossy = new LoseFirstAnswer(gateway.Factory.Server.CreateHandler());
        using var lattice = Lattice(created["key"]!.GetValue<string>(), clock, transport: lossy);

        var call = lattice.GetChatClient("lovelace:chat").GetResponseAsync("charge me once");
        await clock.ElapseNextWaitAsync();
        var answer = await call.WaitAsync(Timeout);

        Assert.Equal("You said: charge me once", answer.Text);
        Assert.Equal(2, lossy.Attempts.Count);
        Assert.Equal(lossy.Attempts[0].Key, lossy.Attempts[1].Key);
        Assert.Equal("true", lossy.Attempts[1].Replayed);
        var requestId = (string)answer.AdditionalProperties!["x-request-id"]!;
        Assert.Equal(lossy.Attempts[0].RequestId, requestId);

        await gateway.Factory.Services.GetRequiredService<UsageLedger>().FlushAsync();
        var records = await lattice.Usage.ListRequestsAsync(new UsageRequestQuery { KeyId = keyId });
        var record = Assert.Single(records.Data);
        Assert.Equal(requestId, record.RequestId);
        Assert.Equal("ok", record.Status);
        Assert.Equal(record, await lattice.Usage.FindRequestAsync(requestId));
    }

    /// <summary>Lets the gateway answer the first attempt in full, then drops that answer as a broken connection would.</summary>
    private sealed class LoseFirstAnswer(HttpMessageHandler inner) : DelegatingHandler(inner)
    {
        public List<(string? Key, string? RequestId, string? Replayed)> Attempts { get; } = [];

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var response = await base.SendAsync(request, cancellationToken);
            if (request.Method != HttpMethod.Post)
            {
                return response;
            }
            await response.Content.LoadIntoBufferAsync(cancellationToken);
            Attempts.Add((request.Headers.GetValues("Idempotency-Key").Single(), response.Headers.GetValues("x-request-id").Single(),
                response.Headers.TryGetValues("idempotent-replayed", out var replayed) ? replayed.Single() : null));
            if (Attempts.Count == 1)
            {
                response.Dispose();
                throw new HttpRequestException("The connection was reset before the answer arrived.");
            }
            return response;
        }
    }

    /// <summary>Sends every request with one fixed idempotency key, as a caller reusing a key would.</summary>
    private sealed class KeyStamp(string key, HttpMessageHandler inner) : DelegatingHandler(inner)
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            request.Headers.Remove("Idempotency-Key");
            request.Headers.Add("Idempotency-Key", key);
            return base.SendAsync(request, cancellationToken);
        }
    }
}
