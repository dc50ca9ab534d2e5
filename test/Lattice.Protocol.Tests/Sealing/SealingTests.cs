using System.Security.Cryptography;
using System.Text;
using Lattice.Protocol.Sealing;

namespace Lattice.Protocol.Tests.Sealing;

/// <summary>The sealed-dispatch format v1: the test vectors of docs/sealed-dispatch.md, byte for byte, and every way a sealed message must fail to open.</summary>
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
    private const string ExpectedSealedRequest = "0104550f471003f3df97c3df506ac797f6721fb1a1fb7b8f6f83d224498a65c88e24136093d7012e509a73715cbd0b00a3cc0ff4b5c01b3ffa196ab1fb327036b8e69e710638a2b5ac9c6a29ed022c6b575c2acb5a96350df7e980f996753049069adb5bdcf5fa7d3ef64f5f5713d1bba66a";
    private const string ExpectedChunk0 = "010072e4d38684136d110cbd3fedf24927c2a8f8118f6324592064";
    private const string ExpectedChunk1 = "010186a50633c88a2b9d88d321e0e191913e58f50b7fa7363eb922";

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

        var body = SealedRequest.Open(sealedRequest, work, RequestId, RuntimeId, out var sealer);
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
