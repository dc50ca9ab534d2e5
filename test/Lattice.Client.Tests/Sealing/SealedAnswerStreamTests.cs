using System.Security.Cryptography;
using System.Text;
using Lattice.Client.Sealing;
using Lattice.Protocol.Sealing;

namespace Lattice.Client.Tests.Sealing;

/// <summary>
/// How the SDK reads a sealed answer off the network: the final chunk reaches the reader as soon as it opens, and a
/// reader that reads on still finds any record after it.
/// </summary>
public sealed class SealedAnswerStreamTests
{
    [Fact]
    public async Task The_final_chunk_is_handed_over_without_reading_past_it()
    {
        var (sealer, opener) = Pair();
        using (sealer)
        {
            var records = Records(sealer.Seal("data: {\"a\":1}\n\n"u8), sealer.Seal("data: [DONE]\n\n"u8, final: true));
            // A network stream whose answer has not ended yet: reading past the records fails the test at once.
            await using var answer = new SealedAnswerStream(new GuardedStream(records), opener, "sreq_x");

            var buffer = new byte[256];
            var text = new StringBuilder();
            while (!text.ToString().EndsWith("data: [DONE]\n\n", StringComparison.Ordinal))
            {
                var n = await answer.ReadAsync(buffer);
                Assert.NotEqual(0, n);
                text.Append(Encoding.UTF8.GetString(buffer, 0, n));
            }
            Assert.Equal("data: {\"a\":1}\n\ndata: [DONE]\n\n", text.ToString());
        }
    }

    [Fact]
    public async Task A_record_after_the_final_chunk_fails_the_reader_that_reads_on()
    {
        var (sealer, opener) = Pair();
        using (sealer)
        {
            var stray = SealedHttp.Record(new byte[SealedFormat.ChunkOverhead]);
            var records = Records(sealer.Seal("{\"ok\":true}"u8, final: true)).Concat(stray).ToArray();
            await using var answer = new SealedAnswerStream(new MemoryStream(records), opener, "sreq_y");

            var buffer = new byte[256];
            var n = await answer.ReadAsync(buffer);
            Assert.Equal("{\"ok\":true}", Encoding.UTF8.GetString(buffer, 0, n));
            var e = await Assert.ThrowsAsync<SealedAnswerException>(async () => _ = await answer.ReadAsync(buffer));
            Assert.Contains("a chunk came after the final chunk", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task An_answer_cut_short_before_its_final_chunk_fails()
    {
        var (sealer, opener) = Pair();
        using (sealer)
        {
            await using var answer = new SealedAnswerStream(new MemoryStream(Records(sealer.Seal("data: {}\n\n"u8))), opener, "sreq_z");
            var buffer = new byte[256];
            Assert.Equal(10, await answer.ReadAsync(buffer));
            var e = await Assert.ThrowsAsync<SealedAnswerException>(async () => _ = await answer.ReadAsync(buffer));
            Assert.Contains("ended without its final chunk", e.Message, StringComparison.Ordinal);
        }
    }

    private static (SealedChunkSealer Sealer, SealedChunkOpener Opener) Pair()
    {
        using var work = ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);
        var body = SealedRequest.Seal("{}"u8, SealedFormat.PublicKeyOf(work), "sreq_t", "lat_t", out var opener);
        SealedRequest.Open(body, work, "sreq_t", "lat_t", out var sealer);
        return (sealer, opener);
    }

    private static byte[] Records(params byte[][] chunks) => chunks.SelectMany(c => SealedHttp.Record(c)).ToArray();

    /// <summary>Serves its bytes, then throws instead of waiting for more: the reader must not need the answer's end.</summary>
    private sealed class GuardedStream(byte[] bytes) : MemoryStream(bytes)
    {
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            Position < Length ? base.ReadAsync(buffer, cancellationToken) : throw new InvalidOperationException("read past the last record before handing it over");
    }
}
