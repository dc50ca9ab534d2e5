using System.Buffers;

namespace Lattice.Gateway.Dispatch;

/// <summary>
/// Where a surface wants the answer's bytes: the relay starts it, writes to it and flushes it, and knows nothing
/// else of the client. The OpenAI surface writes straight to the HTTP response; a translating surface rewrites.
/// </summary>
public interface IResponseSink
{
    /// <summary>
    /// Called once, before anything else, when admission has decided: <paramref name="limits"/> is what a limited
    /// caller is told (null when no limit applies to it), <paramref name="admitted"/> whether the request goes on —
    /// from then it is executing.
    /// </summary>
    void Admission(Billing.RateLimitReport? limits, bool admitted);

    /// <summary>Sets the status and content type; called once, before the first write.</summary>
    void Start(int status, string contentType, long? contentLength, bool sse);

    /// <summary>
    /// As <see cref="Start(int, string, long?, bool)"/>; <paramref name="native"/>: the answer is already in the surface's
    /// own API (<see cref="TargetResponse.Native"/>), so a translating sink passes it through unchanged.
    /// </summary>
    void Start(int status, string contentType, long? contentLength, bool sse, bool native) => Start(status, contentType, contentLength, sse);

    /// <summary>The answer's bytes go here; they leave at the next flush.</summary>
    IBufferWriter<byte> Writer { get; }

    /// <summary>Sends what was written; false when the client has gone.</summary>
    ValueTask<bool> FlushAsync(CancellationToken cancellationToken);
}
