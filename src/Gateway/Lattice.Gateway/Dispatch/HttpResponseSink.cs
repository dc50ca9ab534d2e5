using System.Buffers;

namespace Lattice.Gateway.Dispatch;

/// <summary>The relay writing straight into the HTTP response (Kestrel's pipe): the pass-through surfaces' sink.</summary>
public sealed class HttpResponseSink(HttpResponse response) : IResponseSink
{
    public void Start(int status, string contentType, long? contentLength, bool sse)
    {
        response.StatusCode = status;
        response.ContentType = contentType;
        if (sse)
        {
            response.Headers.CacheControl = "no-cache";
        }
        else if (contentLength is { } length)
        {
            response.ContentLength = length;
        }
    }

    public IBufferWriter<byte> Writer => response.BodyWriter;

    public async ValueTask<bool> FlushAsync(CancellationToken cancellationToken)
    {
        var flushed = await response.BodyWriter.FlushAsync(cancellationToken);
        return !flushed.IsCanceled && !flushed.IsCompleted;
    }
}
