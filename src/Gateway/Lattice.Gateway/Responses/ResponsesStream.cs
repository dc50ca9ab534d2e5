namespace Lattice.Gateway.Responses;

/// <summary>
/// What the relay needs to know of a Responses event stream passed through from an upstream that serves the API:
/// it has no <c>[DONE]</c> — it ends with <c>response.completed</c>, <c>response.incomplete</c> or
/// <c>response.failed</c> — and its usage (<c>input_tokens</c> / <c>output_tokens</c>) is the final response's.
/// </summary>
public static class ResponsesStream
{
    public const string UsagePath = "response.usage";

    /// <summary>The event is one of the three that end a Responses stream (its data's top-level <c>type</c>).</summary>
    public static bool IsEnd(ReadOnlySpan<byte> sseEvent)
    {
        // Nested objects' types are item and part kinds, never these; a text containing the words has its quotes escaped.
        return sseEvent.IndexOf("\"type\":\"response.completed\""u8) >= 0
            || sseEvent.IndexOf("\"type\":\"response.incomplete\""u8) >= 0
            || sseEvent.IndexOf("\"type\":\"response.failed\""u8) >= 0;
    }
}
