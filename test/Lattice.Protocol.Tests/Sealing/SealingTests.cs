using System.Security.Cryptography;
using System.Text;
using Lattice.Protocol.Sealing;

namespace Lattice.Protocol.Tests.Sealing;

/// <summary>
/// The sealed-dispatch format v3: the test vectors of docs/sealed-dispatch.md, byte for byte, sessions (one ECDH and one
/// key derivation for many requests, each with a nonce of its own), answers salted apart, and every way a sealed message
/// must fail to open.
/// </summary>
public sealed class SealingTests
{
    // docs/sealed-dispatch.md, "Test vectors".
    private const string WorkPrivate = "0101010101010101010101010101010101010101010101010101010101010101";
    private const string EphemeralPrivate = "0202020202020202020202020202020202020202020202020202020202020202";
    private const string RequestId = "req_0001";
    private const string RuntimeId = "lat_test";
    private const string Body = "{\"prompt\":\"hello, sealed world\"}";
    private const string ExpectedWorkPublic = "046ff03b949241ce1dadd43519e6960e0a85b41a69a05c328103aa2bce1594ca163c4f753a55bf01dc53f6c0b0c7eee78b40c6ff7d25a96e2282b989cef71c144a";
    private const string ExpectedFingerprint = "256b-1be3-2745-d1d1-c9d4-9121-cc87-bc45";
    private const string EphemeralPublic = "04550f471003f3df97c3df506ac797f6721fb1a1fb7b8f6f83d224498a65c88e24136093d7012e509a73715cbd0b00a3cc0ff4b5c01b3ffa196ab1fb327036b8e6";
    private const string ExpectedSealedRequest = "03" + EphemeralPublic + "000000000000000000000000"
        + "89152b2bcaa85cb1305cf9673bb0c4f6c75313dde6724bb04e9c05d6957e0902a4f96741167f89d0d59ec72bca05ecd1";
    // The answer's salt of the vectors (a daemon draws one at random for each answer).
    private const string AnswerSalt = "a1a2a3a4a5a6a7a8";
    private const string ExpectedChunk0 = "0300" + AnswerSalt + "eacf35772de84ac0d24f04a24c73b36fca8eade232c3f33dd5";
    private const string ExpectedChunk1 = "03019ec200a7608470a84b21b3a1e503ce3a5bce62ef16ffc204fe";
    // The same session's second request: the same ephemeral key and keys, the next nonce.
    private const string SecondRequestId = "req_0002";
    private const string SecondBody = "{\"prompt\":\"and again\"}";
    private const string ExpectedSecondRequest = "03" + EphemeralPublic + "000000000000000000000001"
        + "3317a554029ec3cc6dd28973d5477ad141a2f933c29d13b23019439904ab7ea7b6b458f4b06d";
    // Requests sealed in formats v1 (the vector of the v1 docs) and v2 (of the v2 docs): v3 refuses them by their first byte.
    private const string V1SealedRequest = "01" + EphemeralPublic + "9e710638a2b5ac9c6a29ed022c6b575c2acb5a96350df7e980f996753049069adb5bdcf5fa7d3ef64f5f5713d1bba66a";
    private const string V2SealedRequest = "02" + EphemeralPublic + "abaef56b1042290f1ec1fc350d8e130d4ad3ecf0d4819ad9f842a1dcbcc0c9166aa579fb939d1b78a75b9981b9602f2c";

    private static ECDiffieHellman Key(string privateHex) => ECDiffieHellman.Create(new ECParameters
    {
        Curve = ECCurve.NamedCurves.nistP256,
        D = Convert.FromHexString(privateHex),
    });

    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    [Fact]
    public void Vectors_match_byte_for_byte()
    {
        using var work = Key(WorkPrivate);
        using var ephemeral = Key(EphemeralPrivate);
        var workPublic = SealedFormat.PublicKeyOf(work);
        Assert.Equal(ExpectedWorkPublic, Convert.ToHexStringLower(workPublic));
        Assert.Equal(ExpectedFingerprint, SealedFormat.Fingerprint(workPublic));

        var sealedRequest = SealedRequest.Seal(Utf8(Body), workPublic, RequestId, RuntimeId, ephemeral, out var opener);
        Assert.Equal(ExpectedSealedRequest, Convert.ToHexStringLower(sealedRequest));

        var body = SealedRequest.Open(sealedRequest, work, RequestId, RuntimeId, Convert.FromHexString(AnswerSalt), out var sealer);
        Assert.Equal(Body, Encoding.UTF8.GetString(body));
        var chunk0 = sealer.Seal(Utf8("chunk one"));
        var chunk1 = sealer.Seal(Utf8("chunk two"), final: true);
        Assert.Equal(ExpectedChunk0, Convert.ToHexStringLower(chunk0));
        Assert.Equal(ExpectedChunk1, Convert.ToHexStringLower(chunk1));

        Assert.Equal("chunk one", Encoding.UTF8.GetString(opener.Open(chunk0)));
        Assert.False(opener.Complete);
        Assert.Equal("chunk two", Encoding.UTF8.GetString(opener.Open(chunk1)));
        opener.EnsureComplete();
    }

    [Fact]
    public void A_session_seals_many_requests_with_one_ephemeral_key_and_the_daemon_keeps_its_secret()
    {
        using var work = Key(WorkPrivate);
        using var ephemeral = Key(EphemeralPrivate);
        var workPublic = SealedFormat.PublicKeyOf(work);
        using var session = SealingSession.Create(workPublic, ephemeral);
        Assert.Equal(EphemeralPublic, Convert.ToHexStringLower(session.EphemeralPublicKey));
        var first = session.Seal(Utf8(Body), RequestId, RuntimeId, out var firstReply);
        var second = session.Seal(Utf8(SecondBody), SecondRequestId, RuntimeId, out var secondReply);
        Assert.Equal(ExpectedSealedRequest, Convert.ToHexStringLower(first));
        Assert.Equal(ExpectedSecondRequest, Convert.ToHexStringLower(second));
        Assert.Equal(2, session.Sealed);

        using var opener = new SealedRequestOpener(work);
        Assert.Equal(Body, Encoding.UTF8.GetString(opener.Open(first, RequestId, RuntimeId, out var firstSealer)));
        Assert.Equal(1, opener.Sessions);
        Assert.Equal(SecondBody, Encoding.UTF8.GetString(opener.Open(second, SecondRequestId, RuntimeId, out var secondSealer)));
        Assert.Equal(1, opener.Sessions); // the same session: its secret was kept, not derived again

        // Each request's answer is bound to its request (the associated data): one request's chunks do not open as the
        // other's, even with the same salt.
        var salt = Convert.FromHexString(AnswerSalt);
        SealedRequest.Open(first, work, RequestId, RuntimeId, salt, out var vectorSealer);
        Assert.Equal(ExpectedChunk0, Convert.ToHexStringLower(vectorSealer.Seal(Utf8("chunk one"))));
        SealedRequest.Open(second, work, SecondRequestId, RuntimeId, salt, out var secondAlike);
        var alike = secondAlike.Seal(Utf8("chunk one"));
        Assert.NotEqual(ExpectedChunk0, Convert.ToHexStringLower(alike));
        Assert.Throws<SealedMessageException>(() => firstReply.Open(alike));
        var other = secondSealer.Seal(Utf8("chunk one"));
        Assert.Throws<SealedMessageException>(() => firstReply.Open(other));
        Assert.Equal("chunk one", Encoding.UTF8.GetString(secondReply.Open(other)));
        // Bound to its own request id even within the session.
        Assert.Throws<SealedMessageException>(() => opener.Open(second, RequestId, RuntimeId, out _));
    }

    [Fact]
    public void A_session_seals_each_request_id_once_and_nothing_after_it_is_disposed()
    {
        using var work = SealedFormat.NewKey();
        var session = SealingSession.Create(SealedFormat.PublicKeyOf(work));
        session.Seal(Utf8(Body), RequestId, RuntimeId, out _);
        Assert.Throws<InvalidOperationException>(() => session.Seal(Utf8("{}"), RequestId, RuntimeId, out _));
        session.Dispose();
        Assert.Throws<ObjectDisposedException>(() => session.Seal(Utf8(Body), SecondRequestId, RuntimeId, out _));
    }

    [Fact]
    public void The_daemon_keeps_only_sessions_whose_request_opened_and_the_most_recent_ones()
    {
        using var work = SealedFormat.NewKey();
        var workPublic = SealedFormat.PublicKeyOf(work);
        using var opener = new SealedRequestOpener(work, capacity: 2);
        using var a = SealingSession.Create(workPublic);
        using var b = SealingSession.Create(workPublic);
        using var c = SealingSession.Create(workPublic);

        // Sealed for another request id: it does not open, and its key is not kept.
        var misbound = a.Seal(Utf8(Body), "req_a0", RuntimeId, out _);
        Assert.Throws<SealedMessageException>(() => opener.Open(misbound, "req_other", RuntimeId, out _));
        Assert.Equal(0, opener.Sessions);

        opener.Open(a.Seal(Utf8(Body), "req_a1", RuntimeId, out _), "req_a1", RuntimeId, out _);
        opener.Open(b.Seal(Utf8(Body), "req_b1", RuntimeId, out _), "req_b1", RuntimeId, out _);
        opener.Open(c.Seal(Utf8(Body), "req_c1", RuntimeId, out _), "req_c1", RuntimeId, out _);
        Assert.Equal(2, opener.Sessions);
        // The session it let go of still opens (its secret is derived again).
        Assert.Equal(Body, Encoding.UTF8.GetString(opener.Open(a.Seal(Utf8(Body), "req_a2", RuntimeId, out _), "req_a2", RuntimeId, out _)));
        Assert.Equal(2, opener.Sessions);
    }

    [Theory]
    [InlineData(V1SealedRequest)]
    [InlineData(V2SealedRequest)]
    public void A_request_sealed_in_an_earlier_format_is_refused(string sealedHex)
    {
        using var work = Key(WorkPrivate);
        using var opener = new SealedRequestOpener(work);
        var earlier = Convert.FromHexString(sealedHex);
        var refused = Assert.Throws<SealedMessageException>(() => opener.Open(earlier, RequestId, RuntimeId, out _));
        Assert.Contains("version", refused.Message, StringComparison.Ordinal);
        // Relabelled v3, its keys do not open it either.
        earlier[0] = SealedFormat.Version;
        Assert.Throws<SealedMessageException>(() => opener.Open(earlier, RequestId, RuntimeId, out _));
    }

    [Fact]
    public void A_request_the_daemon_is_sent_twice_is_answered_under_two_salts_so_no_nonce_is_used_twice()
    {
        // The gateway can replay a sealed request; the daemon then seals a second answer under the same session key. Each
        // answer draws its own salt, so the two answers' chunks have different nonces — and each opens only as its own.
        using var work = SealedFormat.NewKey();
        using var session = SealingSession.Create(SealedFormat.PublicKeyOf(work));
        var sealedBody = session.Seal(Utf8(Body), RequestId, RuntimeId, out var reply);
        using var opener = new SealedRequestOpener(work);
        opener.Open(sealedBody, RequestId, RuntimeId, out var firstAnswer);
        opener.Open(sealedBody, RequestId, RuntimeId, out var secondAnswer);
        var first = firstAnswer.Seal(Utf8("answer one"), final: true);
        var second = secondAnswer.Seal(Utf8("answer two"), final: true);
        Assert.NotEqual(first.AsSpan(2, SealedFormat.AnswerSaltBytes).ToArray(), second.AsSpan(2, SealedFormat.AnswerSaltBytes).ToArray());
        Assert.Equal("answer two", Encoding.UTF8.GetString(reply.Open(second)));
        Assert.Throws<SealedMessageException>(() => reply.Open(first));
    }

    [Fact]
    public void An_answer_chunk_whose_salt_was_changed_fails_to_open()
    {
        using var work = SealedFormat.NewKey();
        var sealedBody = SealedRequest.Seal(Utf8(Body), SealedFormat.PublicKeyOf(work), RequestId, RuntimeId, out var reply);
        SealedRequest.Open(sealedBody, work, RequestId, RuntimeId, out var sealer);
        var chunk = sealer.Seal(Utf8("chunk one"));
        chunk[2] ^= 1;
        Assert.Throws<SealedMessageException>(() => reply.Open(chunk));
    }

    [Fact]
    public void Keys_outlive_their_session_while_an_answer_is_being_opened_or_sealed()
    {
        using var work = SealedFormat.NewKey();
        var session = SealingSession.Create(SealedFormat.PublicKeyOf(work));
        var sealedBody = session.Seal(Utf8(Body), RequestId, RuntimeId, out var reply);
        var opener = new SealedRequestOpener(work);
        opener.Open(sealedBody, RequestId, RuntimeId, out var sealer);
        // The app's session and the daemon's list of sessions both let go mid-answer; the answer still goes through.
        session.Dispose();
        opener.Dispose();
        Assert.Equal("chunk one", Encoding.UTF8.GetString(reply.Open(sealer.Seal(Utf8("chunk one")))));
        Assert.Equal("chunk two", Encoding.UTF8.GetString(reply.Open(sealer.Seal(Utf8("chunk two"), final: true))));
        reply.EnsureComplete();
        sealer.Dispose();
        reply.Dispose();
        Assert.Throws<ObjectDisposedException>(() => reply.Open(new byte[64]));
    }

    [Fact]
    public void A_fresh_ephemeral_key_round_trips_and_differs_each_time()
    {
        using var work = SealedFormat.NewKey();
        var workPublic = SealedFormat.PublicKeyOf(work);
        var a = SealedRequest.Seal(Utf8(Body), workPublic, RequestId, RuntimeId, out _);
        var b = SealedRequest.Seal(Utf8(Body), workPublic, RequestId, RuntimeId, out _);
        Assert.NotEqual(a, b);
        Assert.Equal(Body, Encoding.UTF8.GetString(SealedRequest.Open(a, work, RequestId, RuntimeId, out _)));
        Assert.Equal(Body, Encoding.UTF8.GetString(SealedRequest.Open(b, work, RequestId, RuntimeId, out _)));
    }

    [Fact]
    public void Tampering_with_any_byte_of_the_request_fails_to_open()
    {
        using var work = Key(WorkPrivate);
        var sealedRequest = SealedRequest.Seal(Utf8(Body), SealedFormat.PublicKeyOf(work), RequestId, RuntimeId, out _);
        for (var i = 0; i < sealedRequest.Length; i++)
        {
            var tampered = (byte[])sealedRequest.Clone();
            tampered[i] ^= 0x01;
            Assert.Throws<SealedMessageException>(() => SealedRequest.Open(tampered, work, RequestId, RuntimeId, out _));
        }
        Assert.Throws<SealedMessageException>(() => SealedRequest.Open(sealedRequest.AsSpan(0, sealedRequest.Length - 1), work, RequestId, RuntimeId, out _));
        Assert.Throws<SealedMessageException>(() => SealedRequest.Open(sealedRequest.AsSpan(0, 10), work, RequestId, RuntimeId, out _));
    }

    [Theory]
    [InlineData("req_0002", RuntimeId)]
    [InlineData(RequestId, "lat_other")]
    [InlineData("req_0001lat", "_test")] // the length prefixes keep the two ids apart
    public void A_wrong_request_or_runtime_id_fails_to_open(string requestId, string runtimeId)
    {
        using var work = Key(WorkPrivate);
        var sealedRequest = SealedRequest.Seal(Utf8(Body), SealedFormat.PublicKeyOf(work), RequestId, RuntimeId, out _);
        Assert.Throws<SealedMessageException>(() => SealedRequest.Open(sealedRequest, work, requestId, runtimeId, out _));
    }

    [Fact]
    public void Another_runtimes_key_fails_to_open()
    {
        using var work = Key(WorkPrivate);
        using var other = SealedFormat.NewKey();
        var sealedRequest = SealedRequest.Seal(Utf8(Body), SealedFormat.PublicKeyOf(work), RequestId, RuntimeId, out _);
        Assert.Throws<SealedMessageException>(() => SealedRequest.Open(sealedRequest, other, RequestId, RuntimeId, out _));
    }

    [Fact]
    public void A_public_key_that_is_not_a_p256_point_is_refused()
    {
        var bad = new byte[SealedFormat.PublicKeyBytes];
        bad[0] = 0x04;
        Assert.Throws<SealedMessageException>(() => SealedRequest.Seal(Utf8(Body), bad, RequestId, RuntimeId, out _));
        Assert.Throws<SealedMessageException>(() => SealedRequest.Seal(Utf8(Body), bad.AsSpan(1), RequestId, RuntimeId, out _));
    }

    private static (SealedChunkOpener Opener, byte[][] Chunks) Answer(int count)
    {
        using var work = Key(WorkPrivate);
        var sealedRequest = SealedRequest.Seal(Utf8(Body), SealedFormat.PublicKeyOf(work), RequestId, RuntimeId, out var opener);
        SealedRequest.Open(sealedRequest, work, RequestId, RuntimeId, out var sealer);
        var chunks = Enumerable.Range(0, count).Select(i => sealer.Seal(Utf8($"chunk {i}"), final: i == count - 1)).ToArray();
        return (opener, chunks);
    }

    [Fact]
    public void Tampering_with_any_byte_of_a_chunk_fails_to_open()
    {
        var (_, chunks) = Answer(1);
        for (var i = 0; i < chunks[0].Length; i++)
        {
            var (opener, _) = Answer(1);
            var tampered = (byte[])chunks[0].Clone();
            tampered[i] ^= 0x01;
            Assert.Throws<SealedMessageException>(() => opener.Open(tampered));
        }
    }

    [Fact]
    public void Reordered_chunks_fail_to_open()
    {
        var (opener, chunks) = Answer(3);
        Assert.Throws<SealedMessageException>(() => opener.Open(chunks[1]));
    }

    [Fact]
    public void A_dropped_chunk_fails_to_open_the_next()
    {
        var (opener, chunks) = Answer(3);
        opener.Open(chunks[0]);
        Assert.Throws<SealedMessageException>(() => opener.Open(chunks[2]));
    }

    [Fact]
    public void A_replayed_chunk_fails_to_open()
    {
        var (opener, chunks) = Answer(3);
        opener.Open(chunks[0]);
        Assert.Throws<SealedMessageException>(() => opener.Open(chunks[0]));
    }

    [Fact]
    public void A_missing_final_chunk_is_detected()
    {
        var (opener, chunks) = Answer(3);
        opener.Open(chunks[0]);
        opener.Open(chunks[1]);
        Assert.False(opener.Complete);
        Assert.Throws<SealedMessageException>(opener.EnsureComplete);
    }

    [Fact]
    public void A_chunk_flipped_to_final_fails_to_open_and_nothing_opens_after_the_final()
    {
        var (opener, chunks) = Answer(2);
        var flipped = (byte[])chunks[0].Clone();
        flipped[1] = SealedFormat.FinalFlag;
        Assert.Throws<SealedMessageException>(() => opener.Open(flipped));
        opener.Open(chunks[0]);
        opener.Open(chunks[1]);
        Assert.Throws<SealedMessageException>(() => opener.Open(chunks[1]));
    }

    [Fact]
    public void Chunks_of_another_request_fail_to_open()
    {
        var (opener, _) = Answer(2);
        var (_, others) = Answer(2);
        Assert.Throws<SealedMessageException>(() => opener.Open(others[0]));
    }
}
