using System.Buffers.Binary;
using CsCheck;
using Lattice.Protocol.Runtime;
using Lattice.Testing;

namespace Lattice.Protocol.Tests.Fuzz;

/// <summary>
/// The runtime link's frame parser (<see cref="Frame.TryRead"/>, <see cref="Frame.TryReadDispatch"/>,
/// <see cref="Frame.ReadJson{T}"/>) on arbitrary bytes, on mutations of real frames, and round trips through the writer.
/// Both ends of the link read frames from the other side, so no input may throw or allocate beyond its size.
/// </summary>
[Trait("Category", Fuzzing.Category)]
public sealed class FrameFuzzTests
{
    private const string Project = "Lattice.Protocol.Tests";

    private static readonly DispatchHeader ChatHeader = new("chat.completions", "stories", "application/json", true);

    /// <summary>Frames as the writer makes them, plus the corpus (real frames and the inputs that once broke something).</summary>
    private static readonly byte[][] Seeds =
    [
        Frame.Dispatch(1, ChatHeader, """{"model":"stories","messages":[{"role":"user","content":"hi"}]}"""u8),
        Frame.Json(FrameType.Hello, 0, new HelloMessage("0.1.0", 4, [new CapabilityInfo("embeddings", "minilm", "onnx-embeddings", null)], [LinkFeatures.EndAfterCancel]), ProtocolJsonContext.Default.HelloMessage),
        Frame.Json(FrameType.End, 9, new DispatchEnd(3, 5, 1.5, CachedTokens: 1, Estimated: true), ProtocolJsonContext.Default.DispatchEnd),
        Frame.Json(FrameType.Error, 9, new DispatchError("engine_failed", "boom"), ProtocolJsonContext.Default.DispatchError),
        Frame.Raw(FrameType.Ping, 0, new byte[8]),
        Frame.Credit(3, 64 * 1024),
        .. Fuzzing.Corpus(Project, "frame").Select(f => f.Bytes),
        .. Fuzzing.Corpus(Project, "dispatch").Select(f => f.Bytes),
    ];

    private static readonly Gen<byte[]> Inputs = Gen.Frequency((1, Fuzzing.Bytes(64)), (4, Fuzzing.Mutations(Seeds)));

    [Fact]
    public void Any_bytes_split_into_header_and_payload_or_are_refused_when_shorter_than_a_header() =>
        Fuzzing.Check(Inputs, bytes =>
        {
            var ok = Frame.TryRead(bytes, out var type, out var id, out var payload);
            Assert.Equal(bytes.Length >= Frame.HeaderSize, ok);
            if (ok)
            {
                Assert.Equal(bytes[0], (byte)type);
                Assert.Equal(BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(1)), id);
                Assert.True(payload.Span.SequenceEqual(bytes.AsSpan(Frame.HeaderSize)));
            }
        }, iterations: 50_000, print: Fuzzing.Describe);

    [Fact]
    public void A_dispatch_payload_is_read_whole_or_refused_without_throwing() =>
        Fuzzing.Check(Inputs, CheckDispatch, iterations: 30_000, print: Fuzzing.Describe);

    [Theory]
    [MemberData(nameof(CorpusFiles))]
    public void The_corpus_replays(string name)
    {
        var bytes = Fuzzing.Corpus(Project, "frame").Concat(Fuzzing.Corpus(Project, "dispatch")).Single(f => f.Name == name).Bytes;
        CheckDispatch(bytes);
        CheckControlMessages(bytes);
    }

    public static TheoryData<string> CorpusFiles =>
        new(Fuzzing.Corpus(Project, "frame").Concat(Fuzzing.Corpus(Project, "dispatch")).Select(f => f.Name));

    [Fact]
    public void Control_messages_read_as_a_value_or_null_without_throwing() =>
        Fuzzing.Check(Inputs, CheckControlMessages, iterations: 10_000, print: Fuzzing.Describe);

    [Fact]
    public void A_written_dispatch_frame_reads_back_as_written()
    {
        var text = Gen.String[0, 40];
        var gen = Gen.Select(Gen.UInt, text, text, text, Gen.Bool, Fuzzing.Bytes(200));
        Fuzzing.Check(gen, t =>
        {
            var (id, task, model, contentType, stream, body) = t;
            var header = new DispatchHeader(task, model, contentType, stream);
            var frame = Frame.Dispatch(id, header, body);

            Assert.True(Frame.TryRead(frame, out var type, out var readId, out var payload));
            Assert.Equal(FrameType.Dispatch, type);
            Assert.Equal(id, readId);
            Assert.True(Frame.TryReadDispatch(payload, out var read, out var readBody));
            Assert.Equal(header, read);
            Assert.True(readBody.Span.SequenceEqual(body));
        }, iterations: 20_000);
    }

    [Fact]
    public void Written_control_messages_read_back_as_written()
    {
        var gen = Gen.Select(Gen.UInt, Gen.Long[0, long.MaxValue], Gen.Long[0, long.MaxValue], Gen.Double[0, 1e9], Gen.Bool, Gen.String[0, 60]);
        Fuzzing.Check(gen, t =>
        {
            var (id, prompt, completion, seconds, cancelled, message) = t;
            var end = new DispatchEnd(prompt, completion, seconds, CachedTokens: prompt / 2, Cancelled: cancelled);
            Assert.True(Frame.TryRead(Frame.Json(FrameType.End, id, end, ProtocolJsonContext.Default.DispatchEnd), out _, out var readId, out var payload));
            Assert.Equal(id, readId);
            Assert.Equal(end, Frame.ReadJson(payload, ProtocolJsonContext.Default.DispatchEnd));

            var error = new DispatchError("engine_failed", message);
            Assert.True(Frame.TryRead(Frame.Json(FrameType.Error, id, error, ProtocolJsonContext.Default.DispatchError), out _, out _, out payload));
            Assert.Equal(error, Frame.ReadJson(payload, ProtocolJsonContext.Default.DispatchError));
        }, iterations: 10_000);
    }

    static FrameFuzzTests()
    {
        // The first read initialises the serializer's metadata; warm it up so the allocation bound measures the input.
        _ = Frame.TryReadDispatch(Seeds[0].AsMemory(Frame.HeaderSize), out _, out _);
    }

    private static void CheckDispatch(byte[] bytes)
    {
        // As the daemon reads it: the frame first, then the dispatch payload inside.
        var payload = Frame.TryRead(bytes, out _, out _, out var p) ? p : bytes;
        var before = GC.GetAllocatedBytesForCurrentThread();
        var ok = Frame.TryReadDispatch(payload, out var header, out var body);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        // The header's declared length is at most 64 KiB and is checked against the bytes present; reading it costs
        // its strings (two bytes a character) and a few small objects, or a refusal's JsonException (a few KiB).
        Assert.True(allocated <= (4L * payload.Length) + (16 * 1024), $"{allocated} bytes allocated for a {payload.Length}-byte payload");
        if (!ok)
        {
            return;
        }
        Assert.NotNull(header);
        // The daemon looks the task and model up and forwards the content type: a header without them is malformed.
        Assert.NotNull(header.Task);
        Assert.NotNull(header.Model);
        Assert.NotNull(header.ContentType);
        var length = BinaryPrimitives.ReadUInt16LittleEndian(payload.Span);
        Assert.True(body.Span.SequenceEqual(payload.Span[(2 + length)..]));
    }

    private static void CheckControlMessages(byte[] bytes)
    {
        var payload = Frame.TryRead(bytes, out _, out _, out var p) ? p : bytes;
        _ = Frame.ReadJson(payload, ProtocolJsonContext.Default.HelloMessage);
        _ = Frame.ReadJson(payload, ProtocolJsonContext.Default.WelcomeMessage);
        _ = Frame.ReadJson(payload, ProtocolJsonContext.Default.ResponseStart);
        _ = Frame.ReadJson(payload, ProtocolJsonContext.Default.DispatchEnd);
        _ = Frame.ReadJson(payload, ProtocolJsonContext.Default.DispatchError);
    }
}
