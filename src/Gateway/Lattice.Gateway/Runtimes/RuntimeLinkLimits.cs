namespace Lattice.Gateway.Runtimes;

/// <summary>
/// What one runtime link may make the gateway hold, whatever the daemon at the other end does. The bound these give
/// is stated in docs/runtime-protocol.md ("Limits") and proved by <c>RuntimeBackpressureTests</c>.
/// </summary>
public static class RuntimeLinkLimits
{
    /// <summary>
    /// The largest frame the gateway accepts (stated in the welcome). A daemon with flow control splits its data into
    /// frames this size; a larger frame of any kind closes the link with 1009. An older daemon's data frames may be
    /// larger: they are not held whole but streamed into the dispatch's window as they arrive.
    /// </summary>
    public const int MaxFrameBytes = 256 * 1024;

    /// <summary>
    /// Per dispatch: the most response bytes the gateway holds that the relay has not taken yet. A daemon with flow
    /// control starts each dispatch with this much credit and gets more only as the relay takes bytes (sending beyond
    /// it closes the link with 1008); from an older daemon the gateway stops reading the link while a dispatch holds
    /// this much.
    /// </summary>
    public const int WindowBytes = 256 * 1024;

    /// <summary>Credit goes back to the daemon once the relay has taken this many bytes of a dispatch.</summary>
    public const int CreditStepBytes = WindowBytes / 4;

    /// <summary>
    /// Frames queued to send on one link. The queue is bounded by construction (one dispatch frame per slot, one cancel
    /// per dispatch, a few credits per window, one ping, one pong); past this the peer is not reading and the link is cut.
    /// </summary>
    public const int MaxQueuedFrames = 8 * 1024;

    /// <summary>
    /// A frame the gateway sends may take <see cref="RuntimeConnection.DeadAfter"/> plus its size at this rate before
    /// the peer counts as not reading (a 25 MiB dispatch: about 13 minutes).
    /// </summary>
    public const int MinSendBytesPerSecond = 32 * 1024;

    /// <summary>How long the gateway waits for its close frame to leave before it drops a link it is closing.</summary>
    public static readonly TimeSpan CloseWait = TimeSpan.FromSeconds(5);
}
