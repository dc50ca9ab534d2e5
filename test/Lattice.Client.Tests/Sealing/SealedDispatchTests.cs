using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Tests.Metering;
using Lattice.Gateway.Tests.Runtimes;
using Lattice.Protocol.Sealing;
using Lattice.Runtime.Connection;
using Lattice.Runtime.Engines;
using Lattice.Runtime.Engines.Llama;
using Lattice.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Lattice.Client.Tests.Sealing;

/// <summary>
/// Sealed dispatch end to end (docs/sealed-dispatch.md): the SDK seals to a real daemon's work key over a real runtime
/// link; the gateway routes on headers and relays ciphertext; the daemon opens, runs and seals the answer; the SDK opens it.
/// </summary>
[Trait("Category", "Sealed")]
public sealed class SealedDispatchTests(SealedGateway gateway) : IClassFixture<SealedGateway>, IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private readonly string _keyDir = Directory.CreateTempSubdirectory("lattice-sealed-").FullName;

    public void Dispose() => Directory.Delete(_keyDir, recursive: true);

    private string NewKeyDirectory() => Directory.CreateDirectory(Path.Combine(_keyDir, Guid.NewGuid().ToString("N"))).FullName;

    private LatticeClient Lattice(HttpMessageHandler? transport = null) => new(new LatticeClientOptions
    {
        Endpoint = new Uri(gateway.Origin),
        TokenProvider = new DeveloperKeyTokenProvider(gateway.KeyA),
        Transport = transport,
    });

    /// <summary>A daemon with its own work key (in a fresh data directory), paired and connected.</summary>
    private async Task<(TestRuntimes.Runtime Runtime, WorkKey Key)> ConnectAsync(params IEngine[] engines)
    {
        var (id, token) = await TestRuntimes.CreateAsync(gateway, gateway.KeyA);
        var credentials = await RuntimeCredentials.PairAsync(new Uri(gateway.Origin), token, CancellationToken.None);
        var key = WorkKey.LoadOrCreate(NewKeyDirectory());
        return (await TestRuntimes.StartAsync(credentials, key, engines), key);
    }

    /// <summary>A daemon with the echo engine and a work key, and an SDK client whose wire bytes are captured.</summary>
    private sealed record Echo(TestRuntimes.Runtime Runtime, WorkKey Key, WireCapture Wire, LatticeClient Lattice, PersonalRuntime Record) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            Lattice.Dispose();
            await Runtime.DisposeAsync();
            Key.Dispose();
        }
    }

    private async Task<Echo> EchoAsync()
    {
        var (runtime, key) = await ConnectAsync(new EchoEngine());
        var wire = new WireCapture();
        var lattice = Lattice(wire);
        return new Echo(runtime, key, wire, lattice, await lattice.Runtimes.GetAsync(runtime.LatticeId));
    }

    private static async Task<string> StreamedTextAsync(IChatClient chat, string prompt, ChatOptions? options = null)
    {
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in chat.GetStreamingResponseAsync(prompt, options).WithCancellation(new CancellationTokenSource(Timeout).Token))
        {
            updates.Add(update);
        }
        Assert.True(updates.Count > 2, "the answer arrived in several updates");
        return updates.ToChatResponse().Text;
    }

    [Fact]
    public async Task The_same_greedy_chat_sealed_and_unsealed_gives_the_same_text()
    {
        var llama = new LlamaEngine(new LlamaEngineOptions
        {
            Models = [new LlamaModelOptions { Name = "stories", Path = Path.Combine(RepoPaths.SharedDir, "models", "chat", "stories260K.gguf") }],
        });
        await llama.LoadAsync(null, CancellationToken.None);
        var (runtime, key) = await ConnectAsync(llama);
        await using (runtime)
        using (key)
        using (var lattice = Lattice())
        {
            var record = await lattice.Runtimes.GetAsync(runtime.LatticeId);
            var plain = lattice.WithRuntime(record).GetChatClient();
            var sealedChat = lattice.GetSealedChatClient(record);
            var greedy = new ChatOptions { Temperature = 0, MaxOutputTokens = 24 };
            const string prompt = "Once upon a time";

            var clear = await plain.GetResponseAsync(prompt, greedy);
            var opened = await sealedChat.GetResponseAsync(prompt, greedy);
            Assert.False(string.IsNullOrWhiteSpace(clear.Text));
            Assert.Equal(clear.Text, opened.Text);
            Assert.Equal(clear.FinishReason, opened.FinishReason);
            Assert.Equal(clear.Usage!.TotalTokenCount, opened.Usage!.TotalTokenCount);

            Assert.Equal(clear.Text, await StreamedTextAsync(plain, prompt, greedy));
            Assert.Equal(clear.Text, await StreamedTextAsync(sealedChat, prompt, greedy));
        }
        await llama.DisposeAsync();
    }

    [Fact]
    public async Task A_canary_in_a_sealed_prompt_and_answer_never_reaches_the_gateway_in_clear_while_the_unsealed_one_does()
    {
        await using var echo = await EchoAsync();
        var (runtime, wire, lattice, record) = (echo.Runtime, echo.Wire, echo.Lattice, echo.Record);
        var sealedCanary = "sealedcanary" + Guid.NewGuid().ToString("N");
        var plainCanary = "plaincanary" + Guid.NewGuid().ToString("N");

        var sealedChat = lattice.GetSealedChatClient(record);
        var whole = await sealedChat.GetResponseAsync("whole " + sealedCanary);
        Assert.Equal("You said: whole " + sealedCanary, whole.Text);
        Assert.Equal("You said: streamed " + sealedCanary, await StreamedTextAsync(sealedChat, "streamed " + sealedCanary));

        var plain = lattice.WithRuntime(record).GetChatClient();
        Assert.Equal("You said: whole " + plainCanary, (await plain.GetResponseAsync("whole " + plainCanary)).Text);
        Assert.Equal("You said: streamed " + plainCanary, await StreamedTextAsync(plain, "streamed " + plainCanary));

        // Metered from the daemon's signed report: exactly one record, the engine's counts, not estimated.
        var sealedRecord = await Ledger.RecordAsync(gateway.Services, (string)whole.AdditionalProperties!["x-request-id"]!);
        Assert.Equal(1, await Ledger.CountAsync(gateway.Services, sealedRecord.RequestId));
        Assert.Equal(UsageStatuses.Ok, sealedRecord.Status);
        Assert.Equal("lattice:personal:" + runtime.LatticeId, sealedRecord.Model);
        Assert.Equal(ServedByKinds.PersonalRuntime, sealedRecord.ServedBy);
        Assert.Equal(2, sealedRecord.Usage.PromptTokens);
        Assert.Equal(4, sealedRecord.Usage.CompletionTokens);
        Assert.False(sealedRecord.Usage.Estimated);

        // The wire: the unsealed canary crossed it in clear, the sealed one never did.
        Assert.True(wire.Contains(plainCanary), "the positive control: an unsealed prompt crosses the wire in clear");
        Assert.False(wire.Contains(sealedCanary));

        // The logs at Trace, every category: the sealed canary is in none.
        Assert.Contains(gateway.Logs.Entries, e => e.Level == LogLevel.Trace);
        Assert.DoesNotContain(gateway.Logs.Entries, e => e.Text.Contains(sealedCanary, StringComparison.Ordinal));

        // Everything the gateway wrote to disk (its database included): the unsealed answer is kept for idempotent
        // replay in clear; the sealed one only as ciphertext.
        await gateway.Services.GetRequiredService<UsageLedger>().FlushAsync();
        Assert.True(DataDirectoryContains(plainCanary), "the positive control: an unsealed answer is stored in clear");
        Assert.False(DataDirectoryContains(sealedCanary));
    }

    /// <summary>
    /// Whether any file in the gateway's data directory holds <paramref name="text"/>: its SQLite database and
    /// write-ahead log among them. The usage journal, which the gateway holds open exclusively, is the one file skipped
    /// (it holds usage records' binary form: counts and ids, no bodies).
    /// </summary>
    private bool DataDirectoryContains(string text)
    {
        var needle = Encoding.UTF8.GetBytes(text);
        var databases = 0;
        foreach (var file in Directory.EnumerateFiles(gateway.DataDirectory, "*", SearchOption.AllDirectories))
        {
            FileStream stream;
            try
            {
                stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            }
            catch (IOException) when (Path.GetFileName(file) == "usage-journal.bin")
            {
                continue;
            }
            databases += file.EndsWith(".db", StringComparison.Ordinal) ? 1 : 0;
            using var _ = stream;
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            if (copy.GetBuffer().AsSpan(0, (int)copy.Length).IndexOf(needle) >= 0)
            {
                return true;
            }
        }
        Assert.True(databases > 0, "the database was read");
        return false;
    }

    [Fact]
    public async Task A_work_key_swapped_in_the_gateways_record_is_refused_until_accepted()
    {
        await using var echo = await EchoAsync();
        var (runtime, key, wire, lattice, record) = (echo.Runtime, echo.Key, echo.Wire, echo.Lattice, echo.Record);
        Assert.Equal(key.PublicKeyText, record.PublicWorkKey);
        Assert.Equal("You said: first", (await lattice.GetSealedChatClient(record).GetResponseAsync("first")).Text); // pinned now

        // Someone with the database's ear publishes their own key for the runtime.
        using var impostor = WorkKey.LoadOrCreate(NewKeyDirectory());
        await using (var scope = gateway.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<LatticeDbContext>();
            Assert.Equal(1, await db.Runtimes.Where(r => r.LatticeId == runtime.LatticeId)
                .ExecuteUpdateAsync(u => u.SetProperty(r => r.PublicWorkKey, impostor.PublicKeyText)));
        }
        var swapped = await lattice.Runtimes.GetAsync(runtime.LatticeId);
        Assert.Equal(impostor.PublicKeyText, swapped.PublicWorkKey);
        var requests = wire.Requests;
        var refused = await Assert.ThrowsAsync<RuntimeKeyChangedException>(() => lattice.GetSealedChatClient(swapped).GetResponseAsync("secret"));
        Assert.Equal(key.Fingerprint, refused.PinnedFingerprint);
        Assert.Equal(impostor.Fingerprint, refused.PresentedFingerprint);
        Assert.Equal(runtime.LatticeId, refused.LatticeId);
        Assert.Equal(requests, wire.Requests); // refused before anything was sent

        // Told to accept it, the client seals to the impostor's key, which the real daemon cannot open: a clear error.
        await lattice.AcceptRuntimeKeyAsync(swapped);
        var unreadable = await Assert.ThrowsAsync<SealedRequestUnreadableException>(() => lattice.GetSealedChatClient(swapped).GetResponseAsync("secret"));
        Assert.Equal(HttpStatusCode.BadRequest, unreadable.StatusCode);
        Assert.StartsWith("req_", unreadable.RequestId);

        // The daemon is unharmed: the right key, accepted again, works.
        await lattice.AcceptRuntimeKeyAsync(record);
        Assert.Equal("You said: again", (await lattice.GetSealedChatClient(record).GetResponseAsync("again")).Text);
    }

    [Fact]
    public async Task A_sealed_client_seals_its_calls_in_one_session_and_the_daemon_keeps_it()
    {
        await using var echo = await EchoAsync();
        var (key, wire, lattice, record) = (echo.Key, echo.Wire, echo.Lattice, echo.Record);
        using var sealedChat = lattice.GetSealedChatClient(record);
        Assert.Equal("You said: one", (await sealedChat.GetResponseAsync("one")).Text);
        Assert.Equal("You said: two", await StreamedTextAsync(sealedChat, "two"));
        Assert.Equal("You said: three", (await sealedChat.GetResponseAsync("three")).Text);
        using var another = lattice.GetSealedChatClient(record);
        Assert.Equal("You said: four", (await another.GetResponseAsync("four")).Text);

        // Format v3; the first client's three calls carry one ephemeral key (one ECDH for the three), the other client its own.
        var bodies = wire.SealedBodies.ToArray();
        Assert.Equal(4, bodies.Length);
        Assert.All(bodies, b => Assert.Equal(SealedFormat.Version, b[0]));
        static string Ephemeral(byte[] body) => Convert.ToHexString(body.AsSpan(1, SealedFormat.PublicKeyBytes));
        Assert.Single(bodies[..3].Select(Ephemeral).Distinct());
        Assert.NotEqual(Ephemeral(bodies[0]), Ephemeral(bodies[3]));
        // Each call's nonce is its number in the session: 0, 1, 2 for the first client, 0 for the other.
        static ulong Number(byte[] body) => System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(body.AsSpan(1 + SealedFormat.PublicKeyBytes + 4, 8));
        Assert.Equal([0UL, 1UL, 2UL, 0UL], bodies.Select(Number));
        // The daemon derived each session's keys once: two sessions kept.
        Assert.Equal(2, key.Opener.Sessions);

        // Disposed, the sealed client forgets its session and seals nothing more.
        sealedChat.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => sealedChat.GetResponseAsync("five"));
    }

    [Fact]
    public async Task A_sealed_streams_end_marker_is_its_final_chunk_with_no_empty_chunk_after_it()
    {
        await using var echo = await EchoAsync();
        var (runtime, key) = (echo.Runtime, echo.Key);
        var body = SealedRequest.Seal("""{"messages":[{"role":"user","content":"one two"}],"stream":true}"""u8, key.PublicKey, "sreq_done", runtime.LatticeId, out var reply);
        using (reply)
        {
            using var http = gateway.Client(gateway.KeyA);
            using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = new ByteArrayContent(body) };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue(SealedHttp.ContentType);
            request.Headers.Add(SealedHttp.ModelHeader, "lattice:personal:" + runtime.LatticeId);
            request.Headers.Add(SealedHttp.RequestIdHeader, "sreq_done");
            request.Headers.Add(SealedHttp.StreamHeader, "true");
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            await using var answer = await response.Content.ReadAsStreamAsync();

            // One chunk per engine write: "You", "said:", "one", "two", the finish event, and the end marker — final.
            var events = new List<string>();
            while (await SealedHttp.ReadRecordAsync(answer, CancellationToken.None) is { } chunk)
            {
                Assert.False(reply.Complete, "nothing comes after the final chunk");
                events.Add(Encoding.UTF8.GetString(reply.Open(chunk)));
            }
            Assert.True(reply.Complete);
            Assert.Equal(6, events.Count);
            Assert.Equal("data: [DONE]\n\n", events[^1]);
            Assert.All(events, e => Assert.StartsWith("data: ", e, StringComparison.Ordinal));
        }
    }

    private async Task<(HttpStatusCode Status, JsonObject Body)> PostSealedAsync(byte[] body, string? model, string? requestId = "sreq_test", string? stream = null)
    {
        using var http = gateway.Client(gateway.KeyA);
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue(SealedHttp.ContentType);
        if (model is not null)
        {
            request.Headers.Add(SealedHttp.ModelHeader, model);
        }
        if (requestId is not null)
        {
            request.Headers.Add(SealedHttp.RequestIdHeader, requestId);
        }
        if (stream is not null)
        {
            request.Headers.Add(SealedHttp.StreamHeader, stream);
        }
        using var response = await http.SendAsync(request);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject());
    }

    private static void AssertError(HttpStatusCode expected, string code, string? param, (HttpStatusCode Status, JsonObject Body) answer)
    {
        Assert.Equal(expected, answer.Status);
        var error = answer.Body["error"]!;
        Assert.Equal(code, error["code"]!.GetValue<string>());
        Assert.Equal("invalid_request_error", error["type"]!.GetValue<string>());
        Assert.Equal(param, error["param"]?.GetValue<string>());
        Assert.False(string.IsNullOrEmpty(error["message"]!.GetValue<string>()));
    }

    [Fact]
    public async Task Sealed_requests_are_routed_on_headers_only_to_personal_runtimes_and_malformed_ones_get_clear_errors()
    {
        await using var echo = await EchoAsync();
        var (runtime, key, lattice, record) = (echo.Runtime, echo.Key, echo.Lattice, echo.Record);
        await using var keyless = await TestRuntimes.ConnectAsync(gateway, gateway.KeyA, new EchoEngine());
        var personal = "lattice:personal:" + runtime.LatticeId;
        var body = SealedRequest.Seal("""{"messages":[{"role":"user","content":"hi"}]}"""u8, key.PublicKey, "sreq_test", runtime.LatticeId, out var reply);
        reply.Dispose();

        AssertError(HttpStatusCode.BadRequest, "sealed_dispatch_unsupported", SealedHttp.ModelHeader, await PostSealedAsync(body, "lovelace:chat"));
        AssertError(HttpStatusCode.BadRequest, "missing_required_parameter", SealedHttp.ModelHeader, await PostSealedAsync(body, null));
        AssertError(HttpStatusCode.BadRequest, "missing_required_parameter", SealedHttp.RequestIdHeader, await PostSealedAsync(body, personal, requestId: null));
        AssertError(HttpStatusCode.BadRequest, "invalid_value", SealedHttp.RequestIdHeader, await PostSealedAsync(body, personal, requestId: "not ok!"));
        AssertError(HttpStatusCode.BadRequest, "invalid_value", SealedHttp.StreamHeader, await PostSealedAsync(body, personal, stream: "yes"));
        AssertError(HttpStatusCode.BadRequest, "invalid_value", null, await PostSealedAsync([1, 2, 3], personal));
        // Formats v1 (one ECDH per request) and v2 (keys expanded per request) are refused by their first byte, before
        // they reach the daemon.
        foreach (var version in new byte[] { 0x01, 0x02 })
        {
            var earlier = (byte[])body.Clone();
            earlier[0] = version;
            AssertError(HttpStatusCode.BadRequest, "invalid_value", null, await PostSealedAsync(earlier, personal));
        }
        // A daemon that announced no work key cannot open it.
        AssertError(HttpStatusCode.BadRequest, "sealed_dispatch_unsupported", "model", await PostSealedAsync(body, "lattice:personal:" + keyless.LatticeId));
        // Bound to another request id: the daemon cannot open it, says so, and goes on serving.
        AssertError(HttpStatusCode.BadRequest, "sealed_request_unreadable", null, await PostSealedAsync(body, personal, requestId: "sreq_other"));
        var garbage = new byte[200];
        garbage[0] = SealedFormat.Version;
        AssertError(HttpStatusCode.BadRequest, "sealed_request_unreadable", null, await PostSealedAsync(garbage, personal));

        Assert.Equal("You said: still here", (await lattice.GetSealedChatClient(record).GetResponseAsync("still here")).Text);
        Assert.Throws<SealedDispatchUnsupportedException>(() => lattice.GetSealedChatClient(lattice.Runtimes.GetAsync(keyless.LatticeId).Result));
    }
}
