using System.Security.Cryptography;
using System.Text;
using Lattice.Protocol.Runtime;
using Lattice.Protocol.Sealing;

namespace Lattice.Protocol.Tests.Sealing;

/// <summary>
/// The sealed dispatch's wire beyond the envelope (docs/sealed-dispatch.md, "Test vectors"): the answer's records, the
/// canonical usage and its signature (made independently with Python's <c>cryptography</c>), and the link's fields.
/// </summary>
public sealed class SealedWireTests
{
    private const string WorkPrivate = "0101010101010101010101010101010101010101010101010101010101010101";
    private const string ExpectedChunk0 = "0300a1a2a3a4a5a6a7a8eacf35772de84ac0d24f04a24c73b36fca8eade232c3f33dd5";
    private const string ExpectedCanonicalUsage =
        "6c617474696365207365616c65642076332075736167650300087265715f3030303100086c61745f74657374"
        + "000000000000000c0000000000000022000000000000000500000000000005dc00";
    private const string VectorSignature = "Ge7aWdud1Nk030atzzBdCf_tEdNLCqts3AQJuvkdo2cahW1Nnofi6-aahUzk26bDhVwgSRiwTFYV-AHK6UWQTg";

    private static readonly DispatchEnd VectorUsage = new(PromptTokens: 12, CompletionTokens: 34, AudioSeconds: 1.5, CachedTokens: 5);

    private static ECDiffieHellman WorkKey() => ECDiffieHellman.Create(new ECParameters
    {
        Curve = ECCurve.NamedCurves.nistP256,
        D = Convert.FromHexString(WorkPrivate),
    });

    [Fact]
    public void The_usage_vector_is_canonical_byte_for_byte_and_its_signature_verifies()
    {
        Assert.Equal(ExpectedCanonicalUsage, Convert.ToHexStringLower(SealedUsage.Canonical(VectorUsage, "req_0001", "lat_test")));
        using var work = WorkKey();
        var workPublic = SealedFormat.PublicKeyOf(work);
        Assert.True(SealedUsage.Verify(VectorUsage with { Signature = VectorSignature }, workPublic, "req_0001", "lat_test"));
    }

    [Fact]
    public void A_signature_holds_only_for_its_counts_request_runtime_and_key()
    {
        using var work = WorkKey();
        var workPublic = SealedFormat.PublicKeyOf(work);
        var signed = SealedUsage.Sign(VectorUsage, work, "req_0001", "lat_test");
        Assert.Equal(SealedUsage.SignatureBytes, System.Buffers.Text.Base64Url.DecodeFromChars(signed.Signature!).Length);
        Assert.True(SealedUsage.Verify(signed, workPublic, "req_0001", "lat_test"));

        Assert.False(SealedUsage.Verify(signed with { CompletionTokens = 35 }, workPublic, "req_0001", "lat_test"));
        Assert.False(SealedUsage.Verify(signed with { Estimated = true }, workPublic, "req_0001", "lat_test"));
        Assert.False(SealedUsage.Verify(signed with { Cancelled = true }, workPublic, "req_0001", "lat_test"));
        Assert.False(SealedUsage.Verify(signed with { AudioSeconds = 1.501 }, workPublic, "req_0001", "lat_test"));
        Assert.False(SealedUsage.Verify(signed, workPublic, "req_0002", "lat_test"));
        Assert.False(SealedUsage.Verify(signed, workPublic, "req_0001", "lat_other"));
        using var other = SealedFormat.NewKey();
        Assert.False(SealedUsage.Verify(signed, SealedFormat.PublicKeyOf(other), "req_0001", "lat_test"));
        Assert.False(SealedUsage.Verify(signed with { Signature = null }, workPublic, "req_0001", "lat_test"));
        Assert.False(SealedUsage.Verify(signed with { Signature = "not base64url!" }, workPublic, "req_0001", "lat_test"));
        Assert.False(SealedUsage.Verify(signed with { Signature = signed.Signature![..^4] }, workPublic, "req_0001", "lat_test"));
    }

    [Fact]
    public void Keys_imported_once_sign_and_verify_as_the_one_shot_calls_do()
    {
        using var work = WorkKey();
        var workPublic = SealedFormat.PublicKeyOf(work);
        using var verifier = SealedUsage.Verifier(workPublic)!;
        Assert.True(SealedUsage.Verify(VectorUsage with { Signature = VectorSignature }, verifier, "req_0001", "lat_test"));
        Assert.False(SealedUsage.Verify(VectorUsage with { Signature = VectorSignature }, verifier, "req_0002", "lat_test"));
        using var signer = System.Security.Cryptography.ECDsa.Create(work.ExportParameters(includePrivateParameters: true));
        var signed = SealedUsage.Sign(VectorUsage, signer, "req_0001", "lat_test");
        Assert.True(SealedUsage.Verify(signed, workPublic, "req_0001", "lat_test"));
        Assert.False(SealedUsage.Verify(signed with { PromptTokens = 13 }, verifier, "req_0001", "lat_test"));
        Assert.Null(SealedUsage.Verifier(new byte[SealedFormat.PublicKeyBytes]));
    }

    private const string LinkPrivate = "0303030303030303030303030303030303030303030303030303030303030303";
    private const string ExpectedLinkPublic =
        "04591ab771ebbcfd6d9cb9094d106528add1a69d44c2c1f627f089ec58b9c61adf9f4e6abf0d045c0c693a3c68ad7c97ca72be64def4a26fecd263dd98a92780f0";
    private const string ExpectedUsageTag = "ih_3Y6XITkt5zyGwUb48Xma2Jg54cbSfb8nkIQQXJDQ";

    [Fact]
    public void The_link_usage_key_tags_the_usage_vector_byte_for_byte_on_both_sides()
    {
        using var work = WorkKey();
        var workPublic = SealedFormat.PublicKeyOf(work);
        using var linkKey = ECDiffieHellman.Create(new ECParameters { Curve = ECCurve.NamedCurves.nistP256, D = Convert.FromHexString(LinkPrivate) });
        using var gatewaySide = UsageKey.ForGateway(workPublic, linkKey, out var linkPublic);
        Assert.Equal(ExpectedLinkPublic, Convert.ToHexStringLower(linkPublic));
        using var daemonSide = UsageKey.ForDaemon(work, linkPublic);

        var tagged = daemonSide.Tag(VectorUsage, "req_0001", "lat_test");
        Assert.Equal(ExpectedUsageTag, tagged.Signature);
        Assert.Equal(VectorUsage, tagged with { Signature = null });
        Assert.True(gatewaySide.Verify(tagged, "req_0001", "lat_test"));

        // Only for its counts, request and runtime, and only under this link's key.
        Assert.False(gatewaySide.Verify(tagged with { CompletionTokens = 35 }, "req_0001", "lat_test"));
        Assert.False(gatewaySide.Verify(tagged with { Estimated = true }, "req_0001", "lat_test"));
        Assert.False(gatewaySide.Verify(tagged with { Cancelled = true }, "req_0001", "lat_test"));
        Assert.False(gatewaySide.Verify(tagged, "req_0002", "lat_test"));
        Assert.False(gatewaySide.Verify(tagged, "req_0001", "lat_other"));
        Assert.False(gatewaySide.Verify(tagged with { Signature = null }, "req_0001", "lat_test"));
        Assert.False(gatewaySide.Verify(tagged with { Signature = "not base64url!" }, "req_0001", "lat_test"));
        Assert.False(gatewaySide.Verify(tagged with { Signature = tagged.Signature![..^2] }, "req_0001", "lat_test"));
        // An ECDSA signature is no tag, and another link's key (a fresh link key pair) agrees another key.
        Assert.False(gatewaySide.Verify(VectorUsage with { Signature = VectorSignature }, "req_0001", "lat_test"));
        using var otherLink = UsageKey.ForGateway(workPublic, out var otherLinkPublic);
        Assert.NotEqual(linkPublic, otherLinkPublic);
        Assert.False(otherLink.Verify(tagged, "req_0001", "lat_test"));
        // Without the work key, a link key agrees nothing the gateway's side shares.
        using var impostor = SealedFormat.NewKey();
        using var impostorSide = UsageKey.ForDaemon(impostor, linkPublic);
        Assert.False(gatewaySide.Verify(impostorSide.Tag(VectorUsage, "req_0001", "lat_test"), "req_0001", "lat_test"));
        Assert.Throws<SealedMessageException>(() => UsageKey.ForDaemon(work, new byte[SealedFormat.PublicKeyBytes]));

        // Forgotten, the key's tags no longer verify.
        gatewaySide.Dispose();
        Assert.False(gatewaySide.Verify(tagged, "req_0001", "lat_test"));
    }

    [Fact]
    public async Task Answer_records_are_a_length_then_the_chunk_and_a_cut_short_record_is_refused()
    {
        var chunk0 = Convert.FromHexString(ExpectedChunk0);
        var record = SealedHttp.Record(chunk0);
        Assert.Equal("00000023" + ExpectedChunk0, Convert.ToHexStringLower(record));

        using var two = new MemoryStream([.. record, .. SealedHttp.Record([])]);
        Assert.Equal(chunk0, await SealedHttp.ReadRecordAsync(two, CancellationToken.None));
        Assert.Empty((await SealedHttp.ReadRecordAsync(two, CancellationToken.None))!);
        Assert.Null(await SealedHttp.ReadRecordAsync(two, CancellationToken.None));

        await Assert.ThrowsAsync<SealedMessageException>(async () => await SealedHttp.ReadRecordAsync(new MemoryStream(record[..^1]), CancellationToken.None));
        await Assert.ThrowsAsync<SealedMessageException>(async () => await SealedHttp.ReadRecordAsync(new MemoryStream(record[..2]), CancellationToken.None));
        await Assert.ThrowsAsync<SealedMessageException>(async () => await SealedHttp.ReadRecordAsync(new MemoryStream([0xff, 0xff, 0xff, 0xff]), CancellationToken.None));
    }

    [Fact]
    public void The_link_says_a_dispatch_is_sealed_and_carries_the_signature_and_plain_ones_are_unchanged()
    {
        static string Json<T>(T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> info) => Encoding.UTF8.GetString(System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(value, info));

        Assert.Equal("""{"task":"chat.completions","model":"m","content_type":"application/json","stream":true}""",
            Json(new DispatchHeader("chat.completions", "m", "application/json", true), ProtocolJsonContext.Default.DispatchHeader));
        var sealedHeader = new DispatchHeader("chat.completions", "m", "application/json", true, "sreq_1");
        Assert.Equal("""{"task":"chat.completions","model":"m","content_type":"application/json","stream":true,"sealed_request_id":"sreq_1"}""",
            Json(sealedHeader, ProtocolJsonContext.Default.DispatchHeader));
        Assert.True(Frame.TryReadDispatch(Frame.Dispatch(7, sealedHeader, [1, 2, 3]).AsMemory(Frame.HeaderSize), out var read, out var body));
        Assert.Equal(sealedHeader, read);
        Assert.Equal([1, 2, 3], body.ToArray());

        Assert.Equal("""{"prompt_tokens":1,"completion_tokens":2,"audio_seconds":0}""", Json(new DispatchEnd(1, 2, 0), ProtocolJsonContext.Default.DispatchEnd));
        Assert.Equal("""{"prompt_tokens":1,"completion_tokens":2,"audio_seconds":0,"signature":"c2ln"}""",
            Json(new DispatchEnd(1, 2, 0, Signature: "c2ln"), ProtocolJsonContext.Default.DispatchEnd));

        Assert.Equal("""{"lattice_id":"lat_1","heartbeat_seconds":5}""", Json(new WelcomeMessage("lat_1", 5), ProtocolJsonContext.Default.WelcomeMessage));
        Assert.Equal("""{"lattice_id":"lat_1","heartbeat_seconds":5,"usage_link_key":"BFka"}""",
            Json(new WelcomeMessage("lat_1", 5, UsageLinkKey: "BFka"), ProtocolJsonContext.Default.WelcomeMessage));
    }

    [Theory]
    [InlineData("application/vnd.lattice.sealed", true)]
    [InlineData("application/vnd.lattice.sealed; v=1", true)]
    [InlineData("APPLICATION/VND.LATTICE.SEALED", true)]
    [InlineData("application/vnd.lattice.sealedx", false)]
    [InlineData("application/json", false)]
    [InlineData(null, false)]
    public void A_sealed_body_is_known_by_its_content_type(string? contentType, bool expected) =>
        Assert.Equal(expected, SealedHttp.IsSealed(contentType));

    [Theory]
    [InlineData("sreq_0123abcdef", true)]
    [InlineData("a-b_C9", true)]
    [InlineData("", false)]
    [InlineData("has space", false)]
    [InlineData("ünïcode", false)]
    public void Request_ids_are_short_and_plain(string id, bool expected) => Assert.Equal(expected, SealedHttp.IsValidRequestId(id));
}
