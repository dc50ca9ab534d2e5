using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Lattice.Bench;

internal enum SoakKind
{
    Chat,
    Stream,
    Embeddings,
    Transcription,
}

/// <summary>One kind of request: a task through one path (or to a fault's model).</summary>
internal sealed record SoakOp(string Name, SoakKind Kind, string Model, bool Runtime, int MaxTokens = 16);

/// <summary>How a request ended, seen from the client.</summary>
internal enum OutcomeClass
{
    /// <summary>The expected answer, checked.</summary>
    Ok,
    /// <summary>An error status with an OpenAI error envelope (code or type), or a stream that ends with an error event.</summary>
    ClearError,
    /// <summary>A 500: the gateway's own failure, a bug.</summary>
    ServerError,
    /// <summary>Anything else: a broken connection, a truncated or unparseable body, a stream that just stops.</summary>
    Unclear,
    /// <summary>No end before the client-side deadline.</summary>
    Hang,
}

internal sealed record Outcome(SoakOp Op, string Phase, int Status, string? RequestId, OutcomeClass Class, string Detail, double Seconds);

/// <summary>
/// Closed-loop mixed load over HTTP/1.1 keep-alive connections (SocketsHttpHandler, one connection per worker): each
/// worker cycles through its operations, every request has a client-side deadline, and every response is checked —
/// status, <c>x-request-id</c>, the body parses as JSON (each SSE <c>data:</c> too) with the fields the task promises.
/// </summary>
internal sealed class SoakLoad : IDisposable
{
    private static readonly byte[] Audio = MakeWav(seconds: 3);
    private const string Boundary = "soak-7f3a9c1e";
    private readonly HttpClient _http;
    private readonly Uri _v1;
    private readonly TimeSpan _deadline;
    private readonly ConcurrentQueue<Outcome> _outcomes = new();
    private long _started;
    private long _finished;
    private long _failed;

    public SoakLoad(Uri baseUrl, int maxConnections, TimeSpan deadline)
    {
        _http = new HttpClient(new SocketsHttpHandler
        {
            UseProxy = false,
            MaxConnectionsPerServer = maxConnections,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(10),
            AutomaticDecompression = System.Net.DecompressionMethods.None,
        })
        { Timeout = Timeout.InfiniteTimeSpan };
        _v1 = new Uri(baseUrl.ToString().TrimEnd('/') + "/");
        _deadline = deadline;
    }

    /// <summary>What phase new requests are tagged with (the fault mode switches it).</summary>
    public string Phase { get; set; } = "load";

    public IReadOnlyCollection<Outcome> Outcomes => _outcomes;
    public long Finished => Interlocked.Read(ref _finished);
    public long Failed => Interlocked.Read(ref _failed);
    public long InFlight => Interlocked.Read(ref _started) - Interlocked.Read(ref _finished);

    /// <summary>
    /// The mix: chat, streamed chat, embeddings and transcription, as two groups — the upstream path and the runtime
    /// path — so that workers on the fast upstream path are not held to the pace of the engines.
    /// </summary>
    public static SoakOp[][] Mix(string runtimeModel) =>
    [
        [
            new("upstream chat", SoakKind.Chat, SoakStack.UpstreamModel, false),
            new("upstream stream", SoakKind.Stream, SoakStack.UpstreamModel, false),
            new("upstream embeddings", SoakKind.Embeddings, SoakStack.UpstreamModel, false),
            new("upstream transcription", SoakKind.Transcription, SoakStack.UpstreamModel, false),
        ],
        [
            new("runtime chat", SoakKind.Chat, runtimeModel, true),
            new("runtime stream", SoakKind.Stream, runtimeModel, true),
            new("runtime embeddings", SoakKind.Embeddings, runtimeModel, true),
            new("runtime transcription", SoakKind.Transcription, runtimeModel, true),
        ],
    ];

    /// <summary>
    /// Runs <paramref name="workers"/> closed loops (numbered from <paramref name="firstWorker"/>) until
    /// <paramref name="stop"/>; worker w takes group w mod groups and cycles through its operations. The task ends when
    /// the last request has.
    /// </summary>
    public Task RunAsync(int workers, SoakOp[][] groups, Func<int, string> keyFor, int firstWorker, CancellationToken stop) =>
        Task.WhenAll(Enumerable.Range(firstWorker, workers).Select(w => Task.Run(async () =>
        {
            var ops = groups[w % groups.Length];
            for (var n = w / groups.Length; !stop.IsCancellationRequested; n++)
            {
                await SendAsync(ops[n % ops.Length], keyFor(w));
            }
        }, CancellationToken.None)));

    /// <summary>One request, checked; recorded and returned.</summary>
    public async Task<Outcome> SendAsync(SoakOp op, string key)
    {
        Interlocked.Increment(ref _started);
        var started = Stopwatch.GetTimestamp();
        using var deadline = new CancellationTokenSource(_deadline);
        int status = 0;
        string? requestId = null;
        Outcome outcome;
        // Tagged with the phase it ended in: a request that starts before a fault and ends in it is the fault's.
        string phase;
        try
        {
            using var request = Build(op, key);
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, deadline.Token);
            status = (int)response.StatusCode;
            requestId = response.Headers.TryGetValues("x-request-id", out var ids) ? ids.FirstOrDefault() : null;
            var body = await response.Content.ReadAsByteArrayAsync(deadline.Token);
            var (cls, detail) = Check(op, status, response.Content.Headers.ContentType?.MediaType, body);
            phase = Phase;
            if (requestId is null && cls == OutcomeClass.Ok)
            {
                (cls, detail) = (OutcomeClass.Unclear, "no x-request-id");
            }
            outcome = new Outcome(op, phase, status, requestId, cls, detail, Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested)
        {
            phase = Phase;
            outcome = new Outcome(op, phase, status, requestId, OutcomeClass.Hang, $"no end within {_deadline.TotalSeconds:0} s", Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException)
        {
            phase = Phase;
            var inner = ex.InnerException is { } i ? $" ({i.GetType().Name}: {i.Message})" : "";
            outcome = new Outcome(op, phase, status, requestId, OutcomeClass.Unclear, $"{ex.GetType().Name}: {ex.Message}{inner}", Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
        _outcomes.Enqueue(outcome);
        Interlocked.Increment(ref _finished);
        if (outcome.Class != OutcomeClass.Ok)
        {
            Interlocked.Increment(ref _failed);
        }
        return outcome;
    }

    private HttpRequestMessage Build(SoakOp op, string key)
    {
        var ci = CultureInfo.InvariantCulture;
        var (path, content) = op.Kind switch
        {
            SoakKind.Chat or SoakKind.Stream => ("chat/completions", Json(op.Runtime
                ? string.Create(ci, $$"""{"model":"{{op.Model}}","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":{{op.MaxTokens}},"temperature":0{{(op.Kind == SoakKind.Stream ? ",\"stream\":true" : "")}}}""")
                : $$"""{"model":"{{op.Model}}","messages":[{"role":"user","content":"hello"}]{{(op.Kind == SoakKind.Stream ? ",\"stream\":true" : "")}}}""")),
            SoakKind.Embeddings => ("embeddings", Json($$"""{"model":"{{op.Model}}","input":"The quick brown fox jumps over the lazy dog."}""")),
            _ => ("audio/transcriptions", Multipart(op.Model)),
        };
        var request = new HttpRequestMessage(HttpMethod.Post, new Uri(_v1, path)) { Content = content };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return request;
    }

    private static ByteArrayContent Json(string body)
    {
        var content = new ByteArrayContent(Encoding.UTF8.GetBytes(body));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return content;
    }

    private static ByteArrayContent Multipart(string model)
    {
        var head = Encoding.ASCII.GetBytes(
            $"--{Boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n" +
            $"--{Boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"tone.wav\"\r\nContent-Type: audio/wav\r\n\r\n");
        var tail = Encoding.ASCII.GetBytes($"\r\n--{Boundary}--\r\n");
        var content = new ByteArrayContent([.. head, .. Audio, .. tail]);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse($"multipart/form-data; boundary={Boundary}");
        return content;
    }

    /// <summary>Classifies a whole response.</summary>
    internal static (OutcomeClass, string) Check(SoakOp op, int status, string? mediaType, byte[] body)
    {
        if (status == 200 && op.Kind == SoakKind.Stream)
        {
            return CheckStream(body);
        }
        if (status != 200)
        {
            return ErrorEnvelope(body) is { } code
                ? (status == 500 ? OutcomeClass.ServerError : OutcomeClass.ClearError, $"{status} {code}")
                : (status == 500 ? OutcomeClass.ServerError : OutcomeClass.Unclear, $"{status} without an error envelope: {Verify.Preview(body)}");
        }
        try
        {
            using var doc = JsonDocument.Parse(body);
            var root = doc.RootElement;
            var ok = op.Kind switch
            {
                SoakKind.Chat => root.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString() is { Length: > 0 } text
                    && (op.Runtime || text == "You said: hello"),
                SoakKind.Embeddings => root.GetProperty("data")[0].GetProperty("embedding").GetArrayLength() > 0,
                _ => root.GetProperty("text").GetString() is { } t
                    && (op.Runtime ? t.Trim() == "Hello world." : t == "Hello from the stand-in."),
            };
            return ok ? (OutcomeClass.Ok, "ok") : (OutcomeClass.Unclear, "unexpected answer: " + Verify.Preview(body));
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or IndexOutOfRangeException)
        {
            return (OutcomeClass.Unclear, $"200 body does not parse as the task's answer ({ex.GetType().Name}): {Verify.Preview(body)}");
        }
    }

    /// <summary>Every <c>data:</c> must parse; a good stream has content deltas and ends with [DONE]; a clear failure ends with an error event and no [DONE].</summary>
    private static (OutcomeClass, string) CheckStream(byte[] body)
    {
        var text = Encoding.UTF8.GetString(body);
        var data = text.Split('\n').Where(l => l.StartsWith("data:", StringComparison.Ordinal)).Select(l => l[5..].Trim()).ToList();
        if (data.Count == 0)
        {
            return (OutcomeClass.Unclear, "stream without data: " + Verify.Preview(body));
        }
        var content = 0;
        string? error = null;
        for (var i = 0; i < data.Count; i++)
        {
            if (data[i] == "[DONE]")
            {
                if (i != data.Count - 1)
                {
                    return (OutcomeClass.Unclear, "[DONE] before the end");
                }
                continue;
            }
            try
            {
                using var doc = JsonDocument.Parse(data[i]);
                if (doc.RootElement.TryGetProperty("error", out var e))
                {
                    if (i != data.Count - 1)
                    {
                        return (OutcomeClass.Unclear, "error event before the end");
                    }
                    error = e.TryGetProperty("code", out var c) && c.GetString() is { Length: > 0 } code ? code
                        : e.TryGetProperty("type", out var t) && t.GetString() is { Length: > 0 } type ? type : null;
                    if (error is null)
                    {
                        return (OutcomeClass.Unclear, "error event without code or type: " + data[i]);
                    }
                }
                else if (doc.RootElement.GetProperty("choices") is { ValueKind: JsonValueKind.Array } choices && choices.GetArrayLength() > 0
                    && choices[0].GetProperty("delta").TryGetProperty("content", out var piece) && piece.GetString() is { Length: > 0 })
                {
                    content++;
                }
            }
            catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                return (OutcomeClass.Unclear, $"unparseable SSE data ({ex.GetType().Name}): {data[i][..Math.Min(200, data[i].Length)]}");
            }
        }
        if (error is not null)
        {
            return (OutcomeClass.ClearError, "stream error " + error);
        }
        if (data[^1] != "[DONE]")
        {
            return (OutcomeClass.Unclear, "stream ends without [DONE] or an error event");
        }
        return content > 0 ? (OutcomeClass.Ok, "ok") : (OutcomeClass.Unclear, "stream without content");
    }

    /// <summary>The envelope's <c>error.code</c> (else <c>error.type</c>), or null when the body is not OpenAI's error envelope.</summary>
    private static string? ErrorEnvelope(byte[] body)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            if (doc.RootElement.TryGetProperty("error", out var e) && e.ValueKind == JsonValueKind.Object
                && e.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String)
            {
                return e.TryGetProperty("code", out var c) && c.GetString() is { Length: > 0 } code ? code
                    : e.TryGetProperty("type", out var t) && t.GetString() is { Length: > 0 } type ? type : null;
            }
        }
        catch (JsonException)
        {
        }
        return null;
    }

    /// <summary>A 16 kHz mono 16-bit PCM WAV: a 440 Hz tone.</summary>
    private static byte[] MakeWav(int seconds)
    {
        const int rate = 16_000;
        var samples = rate * seconds;
        using var ms = new MemoryStream();
        using var w = new BinaryWriter(ms);
        w.Write("RIFF"u8);
        w.Write(36 + samples * 2);
        w.Write("WAVEfmt "u8);
        w.Write(16);
        w.Write((short)1);
        w.Write((short)1);
        w.Write(rate);
        w.Write(rate * 2);
        w.Write((short)2);
        w.Write((short)16);
        w.Write("data"u8);
        w.Write(samples * 2);
        for (var i = 0; i < samples; i++)
        {
            w.Write((short)(Math.Sin(2 * Math.PI * 440 * i / rate) * 8000));
        }
        w.Flush();
        return ms.ToArray();
    }

    public void Dispose() => _http.Dispose();
}
