using System.Net;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using Lattice.Gateway.Tests.Metering;
using Lattice.Protocol.Runtime;
using Lattice.Protocol.Sealing;
using Lattice.Runtime.Connection;

namespace Lattice.Gateway.Tests.Runtimes;

/// <summary>
/// The gateway's half of sealed dispatch, seen from a daemon the test plays itself: the sealed body reaches the link
/// byte for byte and marked sealed, the answer's bytes reach the client untouched, and the usage is metered as the
/// runtime's count only when its work key signed it.
/// </summary>
[Trait("Category", "Sealed")]
public sealed class SealedRelayTests(LiveGateway gateway) : IClassFixture<LiveGateway>, IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly string _keyDir = Directory.CreateTempSubdirectory("lattice-sealed-relay-").FullName;

    public void Dispose() => Directory.Delete(_keyDir, recursive: true);

    private sealed class FakeDaemon(ClientWebSocket socket, string latticeId) : IDisposable
    {
        public string LatticeId => latticeId;

        public async Task<byte[]> ReceiveAsync(CancellationToken cancellationToken)
        {
            var buffer = new byte[1 << 16];
            var length = 0;
            ValueWebSocketReceiveResult result;
            do
            {
                result = await socket.ReceiveAsync(buffer.AsMemory(length), cancellationToken);
                length += result.Count;
            }
            while (!result.EndOfMessage);
            return buffer[..length];
        }

        /// <summary>The next dispatch frame (pings and credit on the way are skipped).</summary>
        public async Task<(uint Id, DispatchHeader Header, byte[] Body)> NextDispatchAsync(CancellationToken cancellationToken)
        {
            while (true)
            {
                var frame = await ReceiveAsync(cancellationToken);
                Assert.True(Frame.TryRead(frame, out var type, out var id, out var payload));
                if (type == FrameType.Dispatch)
                {
                    Assert.True(Frame.TryReadDispatch(payload, out var header, out var body));
                    return (id, header!, body.ToArray());
                }
            }
        }

        public Task SendAsync(byte[] frame, CancellationToken cancellationToken) =>
            socket.SendAsync(frame, WebSocketMessageType.Binary, true, cancellationToken);

        public void Dispose() => socket.Dispose();
    }

    private async Task<FakeDaemon> ConnectAsync(WorkKey key, CancellationToken cancellationToken, string feature = LinkFeatures.SealedDispatch)
    {
        var (daemon, welcome) = await ConnectWelcomedAsync(key, cancellationToken, feature);
        // A daemon that does not take a link key is sent none: it signs its usage.
        Assert.Null(welcome.UsageLinkKey);
        return daemon;
    }

    private async Task<(FakeDaemon Daemon, WelcomeMessage Welcome)> ConnectWelcomedAsync(WorkKey key, CancellationToken cancellationToken, params string[] features)
    {
        var (id, token) = await TestRuntimes.CreateAsync(gateway, gateway.KeyA);
        var credentials = await RuntimeCredentials.PairAsync(new Uri(gateway.Origin), token, CancellationToken.None);
        var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("Authorization", "Bearer " + credentials.Credential);
        await socket.ConnectAsync(new Uri("ws" + gateway.Origin["http".Length..] + RuntimeLink.ConnectPath), cancellationToken);
        var daemon = new FakeDaemon(socket, id);
        await daemon.SendAsync(Frame.Json(FrameType.Hello, 0, new HelloMessage("test", 4, [new CapabilityInfo("chat.completions", "raw", "fake", null)],
            features, PublicWorkKey: key.PublicKeyText), ProtocolJsonContext.Default.HelloMessage), cancellationToken);
        Assert.True(Frame.TryRead(await daemon.ReceiveAsync(cancellationToken), out var type, out _, out var payload));
        Assert.Equal(FrameType.Welcome, type);
        return (daemon, Frame.ReadJson(payload, ProtocolJsonContext.Default.WelcomeMessage)!);
    }

    /// <summary>
    /// One sealed request through the gateway to the fake daemon, answered with <paramref name="answer"/> and an end frame
    /// made by <paramref name="sign"/>; returns the gateway's request id and the answer's bytes as the client got them.
    /// </summary>
    private async Task<(string RequestId, byte[] Relayed)> RoundTripAsync(HttpClient http, FakeDaemon daemon, byte[] body, byte[] answer, string requestId,
        Func<DispatchEnd, DispatchEnd> sign, CancellationToken cancellationToken)
    {
        var posting = PostSealedAsync(http, daemon.LatticeId, body, requestId);
        var (id, header, relayed) = await daemon.NextDispatchAsync(cancellationToken);
        Assert.Equal(requestId, header.SealedRequestId);
        Assert.Equal("raw", header.Model);
        Assert.True(header.Stream);
        Assert.Equal(body, relayed);
        await daemon.SendAsync(Frame.Json(FrameType.ResponseStart, id, new ResponseStart(200, SealedHttp.ContentType), ProtocolJsonContext.Default.ResponseStart), cancellationToken);
        await daemon.SendAsync(Frame.Raw(FrameType.Data, id, answer), cancellationToken);
        await daemon.SendAsync(Frame.Json(FrameType.End, id, sign(new DispatchEnd(7, 11, 0)), ProtocolJsonContext.Default.DispatchEnd), cancellationToken);
        using var response = await posting.WaitAsync(cancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(SealedHttp.ContentType, response.Content.Headers.ContentType?.MediaType);
        return (response.Headers.GetValues("x-request-id").Single(), await response.Content.ReadAsByteArrayAsync(cancellationToken));
    }

    private Task<HttpResponseMessage> PostSealedAsync(HttpClient http, string latticeId, byte[] body, string requestId)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue(SealedHttp.ContentType);
        request.Headers.Add(SealedHttp.ModelHeader, "lattice:personal:" + latticeId);
        request.Headers.Add(SealedHttp.RequestIdHeader, requestId);
        request.Headers.Add(SealedHttp.StreamHeader, "true");
        return http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
    }

    [Fact]
    public async Task Ciphertext_is_relayed_untouched_both_ways_and_only_signed_usage_is_the_runtimes_count()
    {
        using var timeout = new CancellationTokenSource(Timeout);
        using var key = WorkKey.LoadOrCreate(_keyDir);
        using var daemon = await ConnectAsync(key, timeout.Token);
        using var http = gateway.Client(gateway.KeyA);
        // Not a request sealed to anything: the gateway must not care, only relay.
        var body = new byte[300];
        Random.Shared.NextBytes(body);
        body[0] = SealedFormat.Version;
        // Bytes that would be rewritten or filtered if the gateway read them as an OpenAI answer.
        var answer = "data: {\"model\":\"engine-name\",\"usage\":{\"total_tokens\":99}}\n\n"u8.ToArray();

        Task<(string RequestId, byte[] Relayed)> RunAsync(string requestId, Func<DispatchEnd, DispatchEnd> sign) =>
            RoundTripAsync(http, daemon, body, answer, requestId, sign, timeout.Token);

        var (signedId, signedAnswer) = await RunAsync("sreq_signed", end => SealedUsage.Sign(end, key.Key, "sreq_signed", daemon.LatticeId));
        Assert.Equal(answer, signedAnswer);
        var signed = await Ledger.RecordAsync(gateway.Services, signedId);
        Assert.Equal(new Protocol.Metering.Usage(7, 11, 18), signed.Usage);
        Assert.Equal(1, await Ledger.CountAsync(gateway.Services, signedId));

        // Signed for another request: the counts are kept, marked estimated (the runtime's word is not proven).
        var (replayedId, _) = await RunAsync("sreq_replayed", end => SealedUsage.Sign(end, key.Key, "sreq_signed", daemon.LatticeId));
        Assert.Equal(new Protocol.Metering.Usage(7, 11, 18, Estimated: true), (await Ledger.RecordAsync(gateway.Services, replayedId)).Usage);

        var (unsignedId, unsignedAnswer) = await RunAsync("sreq_unsigned", end => end);
        Assert.Equal(answer, unsignedAnswer);
        Assert.Equal(new Protocol.Metering.Usage(7, 11, 18, Estimated: true), (await Ledger.RecordAsync(gateway.Services, unsignedId)).Usage);
        Assert.Equal(1, await Ledger.CountAsync(gateway.Services, unsignedId));
    }

    [Fact]
    public async Task A_daemon_that_takes_a_link_key_tags_its_usage_and_on_its_link_only_the_tag_counts()
    {
        using var timeout = new CancellationTokenSource(Timeout);
        using var key = WorkKey.LoadOrCreate(_keyDir);
        var (daemon, welcome) = await ConnectWelcomedAsync(key, timeout.Token, LinkFeatures.SealedDispatch, LinkFeatures.UsageLinkKey);
        using var connected = daemon;
        // The welcome carries this link's key; the daemon agrees the usage key from it and its work key.
        var linkPublic = System.Buffers.Text.Base64Url.DecodeFromChars(Assert.IsType<string>(welcome.UsageLinkKey));
        Assert.Equal(SealedFormat.PublicKeyBytes, linkPublic.Length);
        using var usageKey = UsageKey.ForDaemon(key.Key, linkPublic);
        using var http = gateway.Client(gateway.KeyA);
        var body = new byte[300];
        Random.Shared.NextBytes(body);
        body[0] = SealedFormat.Version;
        var answer = "data: {\"usage\":{\"total_tokens\":99}}\n\n"u8.ToArray();

        var (taggedId, taggedAnswer) = await RoundTripAsync(http, daemon, body, answer, "sreq_tagged", end => usageKey.Tag(end, "sreq_tagged", daemon.LatticeId), timeout.Token);
        Assert.Equal(answer, taggedAnswer);
        Assert.Equal(new Protocol.Metering.Usage(7, 11, 18), (await Ledger.RecordAsync(gateway.Services, taggedId)).Usage);
        Assert.Equal(1, await Ledger.CountAsync(gateway.Services, taggedId));

        // A tag for another request, and on this link even a valid ECDSA signature: the counts kept, marked estimated.
        var (otherId, _) = await RoundTripAsync(http, daemon, body, answer, "sreq_other", end => usageKey.Tag(end, "sreq_tagged", daemon.LatticeId), timeout.Token);
        Assert.Equal(new Protocol.Metering.Usage(7, 11, 18, Estimated: true), (await Ledger.RecordAsync(gateway.Services, otherId)).Usage);
        var (signedId, _) = await RoundTripAsync(http, daemon, body, answer, "sreq_signed", end => SealedUsage.Sign(end, key.Key, "sreq_signed", daemon.LatticeId), timeout.Token);
        Assert.Equal(new Protocol.Metering.Usage(7, 11, 18, Estimated: true), (await Ledger.RecordAsync(gateway.Services, signedId)).Usage);
    }

    [Theory]
    [InlineData("sealed_dispatch")]
    [InlineData("sealed_dispatch_v2")]
    public async Task A_daemon_of_an_earlier_sealed_format_is_sent_no_sealed_request(string feature)
    {
        using var timeout = new CancellationTokenSource(Timeout);
        using var key = WorkKey.LoadOrCreate(_keyDir);
        // v1 daemons listed "sealed_dispatch", v2 daemons "sealed_dispatch_v2": neither opens a v3 request, so neither is offered one.
        using var daemon = await ConnectAsync(key, timeout.Token, feature: feature);
        using var http = gateway.Client(gateway.KeyA);
        var body = new byte[300];
        body[0] = SealedFormat.Version;
        using var response = await PostSealedAsync(http, daemon.LatticeId, body, "sreq_v1daemon").WaitAsync(timeout.Token);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = System.Text.Json.Nodes.JsonNode.Parse(await response.Content.ReadAsStringAsync(timeout.Token))!["error"]!;
        Assert.Equal("sealed_dispatch_unsupported", error["code"]!.GetValue<string>());
        Assert.Equal("model", error["param"]!.GetValue<string>());
    }
}
