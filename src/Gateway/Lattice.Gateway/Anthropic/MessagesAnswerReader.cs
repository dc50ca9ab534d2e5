using Lattice.Gateway.Dispatch;
using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Anthropic;

/// <summary>
/// Reads an Anthropic upstream's answer relayed untouched to a Messages client: a Message's <c>usage</c>, or a stream's
/// (input counts in <c>message_start</c>, output in <c>message_delta</c>), which ends with <c>message_stop</c> — there
/// is no <c>[DONE]</c>. Only the two events that carry usage are parsed; the rest are matched by their event name.
/// </summary>
public sealed class MessagesAnswerReader : INativeAnswerReader
{
    private readonly MessageStreamUsage _usage = new();
    private bool _sawUsage;

    public bool Ended { get; private set; }

    public Usage? StreamUsage => _sawUsage ? _usage.Total : null;

    public void Observe(ReadOnlySpan<byte> sseEvent)
    {
        var name = EventName(sseEvent);
        if (name.SequenceEqual("message_start"u8) && UsageReader.TryReadSseEvent(sseEvent, "message.usage", Catalog.MeteringUnits.Tokens, out var start))
        {
            _usage.Start(start);
            _sawUsage = true;
        }
        else if (name.SequenceEqual("message_delta"u8) && UsageReader.TryReadSseEvent(sseEvent, "usage", Catalog.MeteringUnits.Tokens, out var delta))
        {
            _usage.Delta(delta);
            _sawUsage = true;
        }
        else if (name.SequenceEqual("message_stop"u8))
        {
            Ended = true;
        }
    }

    public bool TryReadUsage(ReadOnlySpan<byte> json, out Usage usage) =>
        UsageReader.TryRead(json, "usage", Catalog.MeteringUnits.Tokens, out usage);

    /// <summary>The value of the event's <c>event:</c> line (Anthropic names every event); empty when it has none.</summary>
    private static ReadOnlySpan<byte> EventName(ReadOnlySpan<byte> sseEvent)
    {
        while (sseEvent.Length > 0)
        {
            var newline = sseEvent.IndexOf((byte)'\n');
            var line = (newline < 0 ? sseEvent : sseEvent[..newline]).TrimEnd((byte)'\r');
            if (line.StartsWith("event:"u8))
            {
                return line[6..].Trim((byte)' ');
            }
            if (newline < 0)
            {
                break;
            }
            sseEvent = sseEvent[(newline + 1)..];
        }
        return default;
    }
}
