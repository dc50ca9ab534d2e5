using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Tasks;
using Lattice.Protocol;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Tests.Tasks;

/// <summary>
/// How request bodies are received (issue 11 §2), in process: memory follows the bytes that arrived, not the declared
/// length; one credential's concurrent uploads are capped; each task class has its own limit; Kestrel's refusals become
/// errors in the gateway's terms. Bodies are streams the test controls, so nothing waits on the clock.
/// </summary>
public sealed class RequestBodyTests
{
    private static readonly Caller Alice = new(CredentialKind.ApiKey, "ws_a", "key_alice", [Scopes.Inference]);
    private static readonly Caller Bob = new(CredentialKind.ApiKey, "ws_b", "key_bob", [Scopes.Inference]);

    [Fact]
    public async Task A_declared_length_is_not_allocated_before_the_bytes_arrive()
    {
        // Declares 30 MB, sends 10 bytes, then stalls: what the reader has allocated by then is all a liar costs.
        var body = new StallingStream(new byte[10]);
        var request = Request(body, contentLength: 30_000_000);
        using var cancel = new CancellationTokenSource();

        var before = GC.GetAllocatedBytesForCurrentThread();
        var reading = TaskInputReader.ReadBodyAsync(request, 32L * 1024 * 1024, cancel.Token);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.False(reading.IsCompleted);
        Assert.Equal(2, body.Reads);
        Assert.True(allocated < 256 * 1024, $"allocated {allocated} bytes for a body that has sent 10");

        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await reading);
    }

    [Theory]
    [InlineData(true, 300_000, 7_001)]
    [InlineData(false, 300_000, 7_001)]
    [InlineData(false, 1_000, 1_000)]
    [InlineData(true, 65_536, 65_536)]
    [InlineData(true, 65_537, 4_096)]
    [InlineData(false, 3 * 1024 * 1024 + 5, 100_000)]
    public async Task A_body_arriving_in_pieces_is_read_whole_and_exact(bool declared, int size, int piece)
    {
        var bytes = new byte[size];
        new Random(size).NextBytes(bytes);
        var request = Request(new PieceStream(bytes, piece), declared ? size : null);

        var (body, length, tooLarge) = await TaskInputReader.ReadBodyAsync(request, 32L * 1024 * 1024, CancellationToken.None);

        Assert.False(tooLarge);
        Assert.Equal(size, length);
        Assert.True(bytes.AsSpan().SequenceEqual(body.AsSpan(0, length)));
    }

    [Fact]
    public async Task An_endless_undeclared_body_is_refused_once_it_passes_the_limit()
    {
        var endless = new EndlessStream();
        var request = Request(endless, contentLength: null);

        var (_, length, tooLarge) = await TaskInputReader.ReadBodyAsync(request, 100_000, CancellationToken.None);

        Assert.True(tooLarge);
        Assert.Equal(0, length);
        // Read no further than the segment that crossed the limit.
        Assert.InRange(endless.Served, 100_001, 100_000 + 64 * 1024);
    }

    [Fact]
    public void Task_classes_have_body_limits_by_content_kind_and_by_name()
    {
        var bodies = Bodies(new GatewayOptions { BodyLimits = { ["embeddings"] = 1000, ["huge"] = 1L << 30 } });

        Assert.Equal(4L * 1024 * 1024, bodies.LimitFor(Task("chat.completions", TaskContentKind.Json)));
        Assert.Equal(25L * 1024 * 1024, bodies.LimitFor(Task("audio.transcriptions", TaskContentKind.Multipart)));
        Assert.Equal(1000, bodies.LimitFor(Task("embeddings", TaskContentKind.Json)));
        // Never past the gateway's own ceiling, which Kestrel enforces.
        Assert.Equal(32L * 1024 * 1024, bodies.LimitFor(Task("huge", TaskContentKind.Json)));
    }

    [Fact]
    public async Task A_body_over_its_task_limit_is_413_naming_the_limit_and_the_task()
    {
        var bodies = Bodies(new GatewayOptions());
        var context = Context(new PieceStream(new byte[2000], 2000), contentLength: null);

        var (_, _, error) = await bodies.ReadAsync(context, Alice, 1000, "embeddings");

        Assert.Equal(new GatewayError(413, ErrorTypes.InvalidRequest, "request_too_large",
            "The request body is larger than the limit of 1000 bytes for the task 'embeddings'."), error);
    }

    [Fact]
    public async Task One_upload_past_the_per_caller_limit_is_429_before_its_body_is_read_and_a_finished_one_frees_a_place()
    {
        var bodies = Bodies(new GatewayOptions { MaxConcurrentUploadsPerCaller = 3 });
        var held = Enumerable.Range(0, 3).Select(_ => new StallingStream(new byte[10])).ToList();
        var reads = held.Select(s => bodies.ReadAsync(Context(s, contentLength: 100_000), Alice, 1_000_000)).ToList();
        Assert.All(reads, r => Assert.False(r.IsCompleted));
        Assert.Equal(3, bodies.UploadsInFlight(Alice.CredentialId));

        var refusedBody = new StallingStream(new byte[10]);
        var refused = await bodies.ReadAsync(Context(refusedBody, contentLength: 100_000), Alice, 1_000_000);
        Assert.Equal(new GatewayError(429, ErrorTypes.RateLimit, "rate_limit_exceeded",
            "Too many uploads at once: this credential already has 3 request bodies being received. Retry when one has finished."), refused.Error);
        Assert.Equal(0, refusedBody.Reads);

        // Another credential is not counted with Alice.
        var bobs = bodies.ReadAsync(Context(new PieceStream(new byte[100], 100), contentLength: 100), Bob, 1_000_000);
        Assert.Null((await bobs).Error);

        held[0].Finish();
        var (_, length, error) = await reads[0];
        Assert.Null(error);
        Assert.Equal(10, length);
        Assert.Equal(2, bodies.UploadsInFlight(Alice.CredentialId));

        var next = bodies.ReadAsync(Context(new StallingStream(new byte[10]), contentLength: 100_000), Alice, 1_000_000);
        Assert.False(next.IsCompleted);
        Assert.Equal(3, bodies.UploadsInFlight(Alice.CredentialId));
    }

    [Fact]
    public async Task Slots_are_given_back_when_a_read_fails_and_the_table_forgets_idle_callers()
    {
        var bodies = Bodies(new GatewayOptions { MaxConcurrentUploadsPerCaller = 1 });
        var failing = new ThrowingStream(new BadHttpRequestException("Reading the request body timed out due to data arriving too slowly. See MinRequestBodyDataRate.", 408));

        var (_, _, error) = await bodies.ReadAsync(Context(failing, contentLength: 100_000), Alice, 1_000_000);

        Assert.Equal(new GatewayError(408, ErrorTypes.InvalidRequest, "request_timeout",
            "The request body arrived too slowly (below the minimum data rate) and was cut off."), error);
        Assert.Equal(0, bodies.UploadsInFlight(Alice.CredentialId));
        var (_, length, again) = await bodies.ReadAsync(Context(new PieceStream(new byte[5], 5), contentLength: 5), Alice, 1_000_000);
        Assert.Null(again);
        Assert.Equal(5, length);
    }

    [Fact]
    public async Task Bad_framing_that_Kestrel_reports_is_400_in_the_gateways_terms_not_a_500()
    {
        var bodies = Bodies(new GatewayOptions());
        var failing = new ThrowingStream(new BadHttpRequestException("Bad chunk size data.", 400));

        var (_, _, error) = await bodies.ReadAsync(Context(failing, contentLength: null), Alice, 1_000_000);

        Assert.Equal(new GatewayError(400, ErrorTypes.InvalidRequest, "invalid_value", "The request could not be read: Bad chunk size data."), error);
    }

    private static RequestBodies Bodies(GatewayOptions options) => new(Options.Create(options));

    private static TaskClass Task(string name, TaskContentKind kind) =>
        new(name, InputSchema.TryCreate("""{"type":"object"}""", out _)!, false, kind, name, null, true, DateTimeOffset.UnixEpoch);

    private static HttpRequest Request(Stream body, long? contentLength) => Context(body, contentLength).Request;

    private static DefaultHttpContext Context(Stream body, long? contentLength)
    {
        var context = new DefaultHttpContext();
        context.Request.Method = "POST";
        context.Request.Body = body;
        context.Request.ContentLength = contentLength;
        return context;
    }

    /// <summary>Serves its bytes on the first read, then leaves every further read pending until <see cref="Finish"/> (end of body) or cancellation.</summary>
    private sealed class StallingStream(byte[] first) : ReadOnlyStream
    {
        private readonly TaskCompletionSource _finished = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private bool _served;

        public int Reads { get; private set; }

        public void Finish() => _finished.TrySetResult();

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Reads++;
            if (!_served)
            {
                _served = true;
                first.CopyTo(buffer);
                return first.Length;
            }
            await _finished.Task.WaitAsync(cancellationToken);
            return 0;
        }
    }

    /// <summary>Serves its bytes at most <c>piece</c> at a time, completing synchronously.</summary>
    private sealed class PieceStream(byte[] data, int piece) : ReadOnlyStream
    {
        private int _offset;

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var n = Math.Min(Math.Min(piece, buffer.Length), data.Length - _offset);
            data.AsSpan(_offset, n).CopyTo(buffer.Span);
            _offset += n;
            return ValueTask.FromResult(n);
        }
    }

    private sealed class EndlessStream : ReadOnlyStream
    {
        public long Served { get; private set; }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            buffer.Span.Fill((byte)'a');
            Served += buffer.Length;
            return ValueTask.FromResult(buffer.Length);
        }
    }

    private sealed class ThrowingStream(Exception exception) : ReadOnlyStream
    {
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            ValueTask.FromException<int>(exception);
    }

    private abstract class ReadOnlyStream : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
        public abstract override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default);
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
