using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;

namespace Lattice.StandIn.OpenAi;

/// <summary>The fully buffered body of a /v1 request (and its recording, when recording is on).</summary>
internal sealed class BufferedRequest(byte[] body, RecordedRequest? record)
{
    public byte[] Body { get; } = body;

    public RecordedRequest? Record { get; } = record;
}

/// <summary>Details of a file uploaded to /v1/audio/transcriptions.</summary>
internal sealed record UploadInfo(string Field, string? FileName, string? ContentType, long Length, string Sha256);

/// <summary>One recorded request. The body array is the same array the handlers parse (no extra copy).</summary>
internal sealed class RecordedRequest(string path, string method, KeyValuePair<string, string>[] headers, byte[] body)
{
    private volatile UploadInfo? _upload;

    public string Path { get; } = path;

    public string Method { get; } = method;

    public KeyValuePair<string, string>[] Headers { get; } = headers;

    public byte[] Body { get; } = body;

    public UploadInfo? Upload
    {
        get => _upload;
        set => _upload = value;
    }
}

/// <summary>Keeps the last request seen for every /v1 path.</summary>
internal sealed class RequestRecorder(bool enabled)
{
    private readonly ConcurrentDictionary<string, RecordedRequest> _last = new(StringComparer.Ordinal);

    public bool Enabled { get; } = enabled;

    public RecordedRequest Record(HttpRequest request, byte[] body)
    {
        var headers = new KeyValuePair<string, string>[request.Headers.Count];
        int i = 0;
        foreach (var h in request.Headers)
        {
            if (i == headers.Length)
            {
                Array.Resize(ref headers, headers.Length * 2 + 1);
            }

            headers[i++] = new KeyValuePair<string, string>(h.Key, h.Value.ToString());
        }

        if (i != headers.Length)
        {
            Array.Resize(ref headers, i);
        }

        string path = request.Path.Value ?? "/";
        var record = new RecordedRequest(path, request.Method, headers, body);
        _last[path] = record;
        return record;
    }

    public bool TryGet(string path, out RecordedRequest? record) => _last.TryGetValue(path, out record);

    public void Clear() => _last.Clear();
}

internal static class RequestBody
{
    public static BufferedRequest Get(HttpContext ctx) =>
        ctx.Features.Get<BufferedRequest>() ?? throw new InvalidOperationException("The /v1 middleware did not run.");

    /// <summary>Reads the whole request body into one exactly-sized array.</summary>
    public static async ValueTask<byte[]> ReadAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        long? length = request.ContentLength;
        if (length == 0)
        {
            return [];
        }

        if (length is long known && known <= int.MaxValue)
        {
            byte[] buffer = GC.AllocateUninitializedArray<byte>((int)known);
            await request.Body.ReadExactlyAsync(buffer, cancellationToken);
            return buffer;
        }

        PipeReader reader = request.BodyReader;
        while (true)
        {
            ReadResult result = await reader.ReadAsync(cancellationToken);
            ReadOnlySequence<byte> data = result.Buffer;
            if (result.IsCompleted || result.IsCanceled)
            {
                byte[] all = data.IsEmpty ? [] : data.ToArray();
                reader.AdvanceTo(data.End);
                return all;
            }

            reader.AdvanceTo(data.Start, data.End);
        }
    }
}

internal static class Introspection
{
    private static readonly byte[] s_ok = "ok"u8.ToArray();

    public static Task HandleHealth(HttpContext ctx)
    {
        ctx.Response.ContentType = "text/plain";
        ctx.Response.ContentLength = s_ok.Length;
        ctx.Response.BodyWriter.Write(s_ok);
        return Task.CompletedTask;
    }

    /// <summary>GET /_standin/last?path=/v1/... → the last request recorded for that path.</summary>
    public static Task HandleLast(HttpContext ctx)
    {
        var recorder = ctx.RequestServices.GetRequiredService<RequestRecorder>();
        string? path = ctx.Request.Query["path"];
        if (string.IsNullOrEmpty(path))
        {
            return JsonOut.Error(ctx, StatusCodes.Status400BadRequest,
                "Missing required query parameter: 'path'.", "invalid_request_error", "path", "missing_required_parameter");
        }

        if (!recorder.TryGet(path, out var record) || record is null)
        {
            string message = recorder.Enabled
                ? $"No request has been recorded for '{path}'."
                : "Request recording is disabled (--no-record).";
            return JsonOut.Error(ctx, StatusCodes.Status404NotFound, message, "invalid_request_error", "path", "not_found");
        }

        var w = JsonOut.Begin();
        w.WriteStartObject();
        w.WriteString("path", record.Path);
        w.WriteString("method", record.Method);
        w.WriteStartObject("headers");
        foreach (var h in record.Headers)
        {
            w.WriteString(h.Key, h.Value);
        }

        w.WriteEndObject();
        w.WriteBase64String("body_base64", record.Body);
        var upload = record.Upload;
        if (upload is not null)
        {
            w.WriteStartObject("upload");
            w.WriteString("field", upload.Field);
            w.WriteString("filename", upload.FileName);
            w.WriteString("content_type", upload.ContentType);
            w.WriteNumber("length", upload.Length);
            w.WriteString("sha256", upload.Sha256);
            w.WriteEndObject();
        }

        w.WriteEndObject();
        return JsonOut.Send(ctx, StatusCodes.Status200OK, w);
    }
}
