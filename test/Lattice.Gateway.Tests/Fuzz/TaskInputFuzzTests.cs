using System.Text;
using System.Text.Json;
using CsCheck;
using Json.Schema;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Tasks;
using Lattice.Testing;
using Microsoft.AspNetCore.Http;

namespace Lattice.Gateway.Tests.Fuzz;

/// <summary>
/// The request readers of the task surface on bodies nobody vouches for: the multipart reader (mutations of real
/// forms, delivered whole or in arbitrary pieces) and the JSON reader with its schema check (mutations of real bodies;
/// <see cref="SchemaPrecheck"/> must never contradict JsonSchema.Net). Every body is read, or refused with a 4xx
/// <see cref="GatewayError"/>; nothing throws.
/// </summary>
[Trait("Category", Fuzzing.Category)]
public sealed class TaskInputFuzzTests
{
    private const string Project = "Lattice.Gateway.Tests";
    private const string Boundary = "lattice-fuzz";
    private const long MaxBytes = 1024 * 1024;
    private static readonly RequestBodies Bodies = new(Microsoft.Extensions.Options.Options.Create(new Lattice.Gateway.Hosting.GatewayOptions
    {
        MaxMultipartBodyBytes = MaxBytes,
        MaxConcurrentUploadsPerCaller = int.MaxValue,
    }));
    private static readonly Lattice.Gateway.Auth.Caller FuzzCaller =
        new(Lattice.Gateway.Auth.CredentialKind.ApiKey, "ws_fuzz", "key_fuzz", [Lattice.Gateway.Auth.Scopes.Inference]);

    private static readonly EvaluationOptions Flag = new() { OutputFormat = OutputFormat.Flag };

    private static TaskClass Task(string name)
    {
        var entity = BuiltInTaskClasses.All(DateTimeOffset.UnixEpoch).Single(t => t.Name == name);
        var kind = entity.ContentType.StartsWith("multipart/", StringComparison.Ordinal) ? TaskContentKind.Multipart : TaskContentKind.Json;
        return new TaskClass(name, InputSchema.TryCreate(entity.InputSchema, out _)!, entity.Streams, kind, entity.UpstreamPath, entity.UsagePath, true, DateTimeOffset.UnixEpoch);
    }

    private static readonly TaskClass Transcriptions = Task("audio.transcriptions");
    private static readonly TaskClass[] JsonTasks = [Task("chat.completions"), Task("embeddings")];

    private static readonly byte[][] MultipartSeeds =
    [
        .. Fuzzing.Corpus(Project, "multipart").Select(f => f.Bytes),
        OfficialClientForm(),
    ];

    private static readonly byte[][] JsonSeeds = [.. Fuzzing.Corpus(Project, "json-body").Select(f => f.Bytes)];

    /// <summary>A form as .NET's own writer lays it out (quoting, header order), with a WAV head as the file.</summary>
    private static byte[] OfficialClientForm()
    {
        using var form = new MultipartFormDataContent(Boundary);
        form.Add(new ByteArrayContent(Encoding.ASCII.GetBytes("RIFF\0\0\0\0WAVEfmt ")) { Headers = { ContentType = new("audio/wav") } }, "file", "speech.wav");
        form.Add(new StringContent("whisper-base"), "model");
        form.Add(new StringContent("0"), "temperature");
        form.Add(new StringContent("en"), "language");
        return form.ReadAsByteArrayAsync().GetAwaiter().GetResult();
    }

    public static TheoryData<string> MultipartFiles => new(Fuzzing.Corpus(Project, "multipart").Select(f => f.Name));

    public static TheoryData<string> JsonFiles => new(Fuzzing.Corpus(Project, "json-body").Select(f => f.Name));

    [Fact]
    public void Any_multipart_body_is_read_or_refused_with_a_4xx_whole_or_in_pieces() =>
        Fuzzing.Check(Gen.Select(Fuzzing.Mutations(MultipartSeeds), Gen.Int[1, 64], Gen.Int[0, int.MaxValue]),
            t => CheckMultipart(t.Item1, t.Item2, t.Item3), iterations: 3_000, print: t => Fuzzing.Describe(t.Item1) + $" in pieces of up to {t.Item2}");

    [Theory]
    [MemberData(nameof(MultipartFiles))]
    public void The_multipart_corpus_replays(string name) =>
        CheckMultipart(Fuzzing.Corpus(Project, "multipart").Single(f => f.Name == name).Bytes, 7, 1);

    [Fact]
    public void Any_json_body_is_read_or_refused_with_a_4xx_and_the_precheck_agrees_with_the_library() =>
        Fuzzing.Check(Gen.Select(Gen.Frequency((1, Fuzzing.Bytes(64)), (6, Fuzzing.Mutations(JsonSeeds))), Gen.Int[0, JsonTasks.Length - 1]),
            t => CheckJson(t.Item1, JsonTasks[t.Item2]), iterations: 20_000, print: t => Fuzzing.Describe(t.Item1) + " for " + JsonTasks[t.Item2].Name);

    [Theory]
    [MemberData(nameof(JsonFiles))]
    public void The_json_corpus_replays(string name)
    {
        var bytes = Fuzzing.Corpus(Project, "json-body").Single(f => f.Name == name).Bytes;
        foreach (var task in JsonTasks)
        {
            CheckJson(bytes, task);
        }
    }

    private static void CheckMultipart(byte[] body, int piece, int seed)
    {
        var whole = Read(body, pieceSize: null, seed);
        var pieces = Read(body, piece, seed);
        AssertReadOrRefused(whole);
        // How the body arrives (one buffer with a Content-Length, or chunks of any size) does not change the answer.
        Assert.Equal(whole.Error, pieces.Error);
        Assert.Equal(whole.Input?.Model, pieces.Input?.Model);
        Assert.Equal(whole.Input?.Parts?.Count, pieces.Input?.Parts?.Count);
        if (whole.Input is { Parts: { } parts })
        {
            for (var i = 0; i < parts.Count; i++)
            {
                Assert.Equal(parts[i].Name, pieces.Input!.Parts![i].Name);
                Assert.Equal(parts[i].Content, pieces.Input.Parts[i].Content);
            }
        }
    }

    private static (TaskInput? Input, GatewayError Error) Read(byte[] body, int? pieceSize, int seed)
    {
        var context = new DefaultHttpContext();
        context.Request.ContentType = $"multipart/form-data; boundary={Boundary}";
        if (pieceSize is { } size)
        {
            context.Request.Body = new PiecewiseStream(body, size, seed);
        }
        else
        {
            context.Request.Body = new MemoryStream(body);
            context.Request.ContentLength = body.Length;
        }
        // Nothing here waits on I/O: both streams complete synchronously.
        return TaskInputReader.ReadAsync(context, Bodies, FuzzCaller, Transcriptions).AsTask().GetAwaiter().GetResult();
    }

    private static void CheckJson(byte[] body, TaskClass task)
    {
        AssertReadOrRefused(TaskInputReader.ReadJson(task, body, body.Length));

        // The reader refuses invalid UTF-8 and unpaired surrogate escapes ("\ud800") before any schema sees them; only
        // what it would pass on is compared.
        if (!System.Text.Unicode.Utf8.IsValid(body) || TaskInputReader.HasUnpairedSurrogateEscape(body))
        {
            return;
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body);
        }
        catch (JsonException)
        {
            return;
        }
        using (document)
        {
            var precheck = SchemaPrecheck.TryCompile(JsonDocument.Parse(task.Schema.Text).RootElement)!;
            var verdict = precheck.Check(document.RootElement);
            if (verdict != PrecheckVerdict.Unknown)
            {
                var library = JsonSchema.FromText(task.Schema.Text, new BuildOptions { SchemaRegistry = new SchemaRegistry() });
                Assert.Equal(library.Evaluate(document.RootElement, Flag).IsValid, verdict == PrecheckVerdict.Valid);
            }
        }
    }

    private static void AssertReadOrRefused((TaskInput? Input, GatewayError Error) result)
    {
        if (result.Input is { } input)
        {
            Assert.Equal(default, result.Error);
            Assert.False(string.IsNullOrEmpty(input.Model));
        }
        else
        {
            Assert.InRange(result.Error.Status, 400, 499);
            Assert.False(string.IsNullOrWhiteSpace(result.Error.Message));
        }
    }

    /// <summary>A request body that arrives in pieces of 1 to <c>maxPiece</c> bytes, as a slow client's would.</summary>
    private sealed class PiecewiseStream(byte[] data, int maxPiece, int seed) : Stream
    {
        private readonly Random _random = new(seed);
        private int _position;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _position; set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var n = Math.Min(Math.Min(buffer.Length, _random.Next(1, maxPiece + 1)), data.Length - _position);
            data.AsSpan(_position, n).CopyTo(buffer);
            _position += n;
            return n;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => new(Read(buffer.Span));

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            System.Threading.Tasks.Task.FromResult(Read(buffer, offset, count));

        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
