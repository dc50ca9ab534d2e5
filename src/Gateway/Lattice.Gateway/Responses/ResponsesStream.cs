using Lattice.Gateway.Dispatch;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Responses;

/// <summary>
/// Reads a Responses answer passed through from an upstream that serves the API: a Response's <c>usage</c>, or a
/// stream's, which has no <c>[DONE]</c> — it ends with <c>response.completed</c>, <c>response.incomplete</c> or
/// <c>response.failed</c>, whose final response carries the usage (<c>input_tokens</c> / <c>output_tokens</c>). Only
/// that last event is parsed.
/// </summary>
public sealed class ResponsesStream : INativeAnswerReader
{
    public const string UsagePath = "response.usage";

    public bool Ended { get; private set; }

    public Usage? StreamUsage { get; private set; }

    public void Observe(ReadOnlySpan<byte> sseEvent)
    {
        if (!IsEnd(sseEvent))
        {
            return;
        }
        Ended = true;
        if (UsageReader.TryReadSseEvent(sseEvent, UsagePath, Catalog.MeteringUnits.Tokens, out var usage))
        {
            StreamUsage = usage;
        }
    }

    public bool TryReadUsage(ReadOnlySpan<byte> json, out Usage usage) =>
        UsageReader.TryRead(json, "usage", Catalog.MeteringUnits.Tokens, out usage);

    /// <summary>The event is one of the three that end a Responses stream (its data's top-level <c>type</c>).</summary>
    public static bool IsEnd(ReadOnlySpan<byte> sseEvent)
    {
        // Nested objects' types are item and part kinds, never these; a text containing the words has its quotes escaped.
        return sseEvent.IndexOf("\"type\":\"response.completed\""u8) >= 0
            || sseEvent.IndexOf("\"type\":\"response.incomplete\""u8) >= 0
            || sseEvent.IndexOf("\"type\":\"response.failed\""u8) >= 0;
    }
}
