using System.Buffers;

namespace Lattice.Gateway.Dispatch;

/// <summary>The relay writing straight into the HTTP response (Kestrel's pipe): the pass-through surfaces' sink.</summary>
public sealed class HttpResponseSink(HttpResponse response) : IResponseSink
{
    public void Admission(Billing.RateLimitReport? limits, bool admitted)
    {
        if (limits is { } report)
        {
            OpenAi.OpenAiRateLimitHeaders.Write(response.Headers, report);
        }
        if (admitted)
        {
            // From here the request executes, so an idempotent retry gets this answer rather than a second run.
            response.HttpContext.Features.Get<Billing.Idempotency.IdempotencyFeature>()?.MarkExecuting();
        }
    }

    public void Start(int status, string contentType, long? contentLength, bool sse, bool native)
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
