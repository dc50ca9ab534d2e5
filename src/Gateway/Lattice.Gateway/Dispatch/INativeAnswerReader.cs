using Lattice.Protocol.Metering;

namespace Lattice.Gateway.Dispatch;

/// <summary>
/// How the relay reads an answer given in a surface's own API (<see cref="TargetResponse.Native"/>) rather than the
/// task's OpenAI format: its usage, and whether its stream ended the way that API ends one. It sees each whole event
/// the relay forwards; it changes nothing.
/// </summary>
public interface INativeAnswerReader : ISseEventObserver
{
    /// <summary>The stream's own end event was seen (a stream that stops before it broke).</summary>
    bool Ended { get; }

    /// <summary>The usage the stream reported so far; null while it reported none.</summary>
    Usage? StreamUsage { get; }

    /// <summary>The usage of a whole (JSON) answer.</summary>
    bool TryReadUsage(ReadOnlySpan<byte> json, out Usage usage);
}
