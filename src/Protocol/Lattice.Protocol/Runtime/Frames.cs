using System.Buffers;
using System.Buffers.Binary;
using System.Text.Json.Serialization;

namespace Lattice.Protocol.Runtime;

/// <summary>
/// Frame types of the runtime link. One WebSocket binary message is one frame:
/// <c>[type: 1 byte][dispatch id: 4 bytes little-endian][payload]</c>. Connection-level frames use dispatch id 0.
/// </summary>
public enum FrameType : byte
{
    /// <summary>Daemon → gateway, first frame: <see cref="HelloMessage"/> as JSON.</summary>
    Hello = 0x01,
    /// <summary>Gateway → daemon, answer to hello: <see cref="WelcomeMessage"/> as JSON.</summary>
    Welcome = 0x02,
    /// <summary>Gateway → daemon: a <see cref="DispatchHeader"/> (u16 length + JSON) followed by the raw request body.</summary>
    Dispatch = 0x10,
    /// <summary>Daemon → gateway: the response status and content type, <see cref="ResponseStart"/> as JSON.</summary>
    ResponseStart = 0x11,
    /// <summary>Daemon → gateway: raw response body bytes, in order.</summary>
    Data = 0x12,
    /// <summary>
    /// Daemon → gateway: the response is complete; <see cref="DispatchEnd"/> (usage) as JSON. Also the answer to a
    /// <see cref="Cancel"/>: the usage up to the cancel, with <see cref="DispatchEnd.Cancelled"/> set.
    /// </summary>
    End = 0x13,
    /// <summary>Daemon → gateway: the dispatch failed; <see cref="DispatchError"/> as JSON.</summary>
    Error = 0x14,
    /// <summary>
    /// Gateway → daemon: the client went away; stop work on the dispatch. No payload. A daemon that advertises
    /// <see cref="LinkFeatures.EndAfterCancel"/> answers a dispatch it was still running with one
    /// <see cref="End"/> (cancelled) frame.
    /// </summary>
    Cancel = 0x15,
    /// <summary>
    /// Gateway → daemon, on a link with <see cref="LinkFeatures.FlowControl"/>: the daemon may send this many more
    /// bytes of <see cref="Data"/> payload for the dispatch. Payload: 4 bytes, little-endian uint32 (<see cref="Frame.Credit"/>).
    /// </summary>
    Credit = 0x16,
    /// <summary>Either way: liveness probe; payload 8 bytes (sender's timestamp), echoed in the pong.</summary>
    Ping = 0x20,
    /// <summary>Answer to a ping with the same payload.</summary>
    Pong = 0x21,
}

/// <summary>One capability the daemon advertises.</summary>
public sealed record CapabilityInfo(string Task, string Model, string Engine, string? Sha256);

/// <summary>What a daemon says first.</summary>
/// <param name="Features">
/// Optional protocol behaviours the daemon has (<see cref="LinkFeatures"/>); absent from older daemons, so a gateway
/// relies on a behaviour only when it is listed.
/// </param>
/// <param name="MaxFrameBytes">
/// The largest frame the daemon accepts (a dispatch carries a whole request body); absent from older daemons, which
/// accept <see cref="Frame.MaxFrameBytes"/>.
/// </param>
/// <param name="PublicWorkKey">
/// The daemon's public work key for sealed dispatch (SEC1 uncompressed P-256 point, base64url without padding;
/// docs/sealed-dispatch.md); absent from older daemons. The gateway stores it in the runtime's record.
/// </param>
public sealed record HelloMessage(
    string RuntimeVersion,
    int MaxConcurrency,
    IReadOnlyList<CapabilityInfo> Capabilities,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<string>? Features = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? MaxFrameBytes = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? PublicWorkKey = null);

/// <summary>Names of optional link behaviours, as listed in <see cref="HelloMessage.Features"/>.</summary>
public static class LinkFeatures
{
    /// <summary>After a <see cref="FrameType.Cancel"/>, the daemon sends one <see cref="FrameType.End"/> with the usage so far.</summary>
    public const string EndAfterCancel = "end_after_cancel";

    /// <summary>
    /// The daemon sends a dispatch's <see cref="FrameType.Data"/> only within the credit the gateway grants
    /// (<see cref="WelcomeMessage.WindowBytes"/> to start with, then <see cref="FrameType.Credit"/> frames), and keeps
    /// every frame within <see cref="WelcomeMessage.MaxFrameBytes"/>.
    /// </summary>
    public const string FlowControl = "flow_control";

    /// <summary>
    /// The daemon opens sealed dispatches (<see cref="DispatchHeader.SealedRequestId"/>) with the work key it announced
    /// and seals their answers, in sealed-dispatch format v3 (a session's keys made once, a salt per answer); the
    /// gateway sends sealed requests only to a daemon that lists this. Daemons of formats v1 and v2 listed
    /// <c>sealed_dispatch</c> and <c>sealed_dispatch_v2</c>: they are offered none.
    /// </summary>
    public const string SealedDispatch = "sealed_dispatch_v3";

    /// <summary>
    /// The daemon authenticates a sealed dispatch's usage with the link's usage key (an HMAC tag, docs/sealed-dispatch.md)
    /// when the welcome carries <see cref="WelcomeMessage.UsageLinkKey"/>; the gateway sends one only to a daemon that
    /// lists this (and <see cref="SealedDispatch"/>). Without it, the usage is signed with the work key (ECDSA).
    /// </summary>
    public const string UsageLinkKey = "usage_link_key";
}

/// <summary>The gateway's answer: who the daemon is and how often to expect pings.</summary>
/// <param name="MaxFrameBytes">The largest frame the gateway accepts from this daemon; absent from older gateways.</param>
/// <param name="WindowBytes">
/// Present when both sides do <see cref="LinkFeatures.FlowControl"/>: each dispatch starts with this much credit for
/// its data bytes. Absent (an older gateway, or a daemon that did not list the feature): no credit is kept.
/// </param>
/// <param name="UsageLinkKey">
/// Present when the daemon listed <see cref="LinkFeatures.UsageLinkKey"/> with a work key: the public half of the link
/// key the gateway made for this link (SEC1, base64url), from which both sides derive the link's usage key
/// (<see cref="Sealing.UsageKey"/>).
/// </param>
public sealed record WelcomeMessage(
    string LatticeId,
    int HeartbeatSeconds,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? MaxFrameBytes = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? WindowBytes = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? UsageLinkKey = null);

/// <summary>What to run: the task, which of the runtime's models, how the body is encoded, whether to stream.</summary>
/// <param name="SealedRequestId">
/// Set for a sealed dispatch (docs/sealed-dispatch.md): the body is a sealed request bound to this request id and the
/// runtime's id, which the daemon opens with its work key; <paramref name="ContentType"/> is then the type of the body
/// inside, and the answer is sealed records. Absent for a plain dispatch.
/// </param>
public sealed record DispatchHeader(string Task, string Model, string ContentType, bool Stream,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? SealedRequestId = null);

/// <summary>The response's status and content type.</summary>
public sealed record ResponseStart(int Status, string ContentType);

/// <summary>Usage of a completed or cancelled dispatch.</summary>
/// <remarks>
/// The fields after <see cref="AudioSeconds"/> were added later: they are left out of the JSON when they have their
/// default value (so a plain End is what older gateways always read) and default when missing (older daemons).
/// </remarks>
/// <param name="CachedTokens">Prompt tokens served from a cache (a subset of <see cref="PromptTokens"/>).</param>
/// <param name="Estimated">The counts are the runtime's estimate, not the engine's own report.</param>
/// <param name="Cancelled">
/// The gateway cancelled the dispatch: the counts are what was used up to the cancel, and the response was cut short.
/// </param>
/// <param name="Signature">
/// For a sealed dispatch: the daemon's work-key signature over the canonical usage (<see cref="Sealing.SealedUsage"/>),
/// base64url. Absent for a plain dispatch.
/// </param>
public sealed record DispatchEnd(
    long PromptTokens,
    long CompletionTokens,
    double AudioSeconds,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] long CachedTokens = 0,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] bool Estimated = false,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] bool Cancelled = false,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Signature = null);

/// <summary>Why a dispatch failed on the runtime.</summary>
public sealed record DispatchError(string Code, string Message);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(HelloMessage))]
[JsonSerializable(typeof(WelcomeMessage))]
[JsonSerializable(typeof(DispatchHeader))]
[JsonSerializable(typeof(ResponseStart))]
[JsonSerializable(typeof(DispatchEnd))]
[JsonSerializable(typeof(DispatchError))]
public sealed partial class ProtocolJsonContext : JsonSerializerContext;

/// <summary>Encodes and decodes frames. Payloads are raw bytes; JSON only for the small control messages.</summary>
public static class Frame
{
    public const int HeaderSize = 5;

    /// <summary>
    /// The largest frame a daemon accepts (a dispatch: a request body plus its header), and what a gateway assumes of a
    /// daemon whose hello does not say. The gateway accepts much smaller frames (it says how large in the welcome).
    /// </summary>
    public const int MaxFrameBytes = 64 * 1024 * 1024;

    /// <summary>Size of a <see cref="FrameType.Credit"/> frame.</summary>
    public const int CreditFrameBytes = HeaderSize + 4;

    /// <summary>A credit frame: the daemon may send <paramref name="bytes"/> more data bytes for the dispatch.</summary>
    public static byte[] Credit(uint dispatchId, uint bytes)
    {
        var frame = new byte[CreditFrameBytes];
        WriteHeader(frame, FrameType.Credit, dispatchId);
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(HeaderSize), bytes);
        return frame;
    }

    /// <summary>Reads a credit payload; false unless it is exactly 4 bytes.</summary>
    public static bool TryReadCredit(ReadOnlySpan<byte> payload, out uint bytes)
    {
        if (payload.Length != 4)
        {
            bytes = 0;
            return false;
        }
        bytes = BinaryPrimitives.ReadUInt32LittleEndian(payload);
        return true;
    }

    public static void WriteHeader(Span<byte> destination, FrameType type, uint dispatchId)
    {
        destination[0] = (byte)type;
        BinaryPrimitives.WriteUInt32LittleEndian(destination[1..], dispatchId);
    }

    /// <summary>A frame with a JSON control message as its payload.</summary>
    public static byte[] Json<T>(FrameType type, uint dispatchId, T message, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> typeInfo)
    {
        var json = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(message, typeInfo);
        var frame = new byte[HeaderSize + json.Length];
        WriteHeader(frame, type, dispatchId);
        json.CopyTo(frame.AsSpan(HeaderSize));
        return frame;
    }

    /// <summary>A frame whose payload is <paramref name="payload"/> as is.</summary>
    public static byte[] Raw(FrameType type, uint dispatchId, ReadOnlySpan<byte> payload)
    {
        var frame = new byte[HeaderSize + payload.Length];
        WriteHeader(frame, type, dispatchId);
        payload.CopyTo(frame.AsSpan(HeaderSize));
        return frame;
    }

    /// <summary>A dispatch frame: <c>u16 header length, header JSON, body</c>.</summary>
    public static byte[] Dispatch(uint dispatchId, DispatchHeader header, ReadOnlySpan<byte> body)
    {
        var json = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(header, ProtocolJsonContext.Default.DispatchHeader);
        if (json.Length > ushort.MaxValue)
        {
            throw new ArgumentException("Dispatch header too large.", nameof(header));
        }
        var frame = new byte[HeaderSize + 2 + json.Length + body.Length];
        WriteHeader(frame, FrameType.Dispatch, dispatchId);
        BinaryPrimitives.WriteUInt16LittleEndian(frame.AsSpan(HeaderSize), (ushort)json.Length);
        json.CopyTo(frame.AsSpan(HeaderSize + 2));
        body.CopyTo(frame.AsSpan(HeaderSize + 2 + json.Length));
        return frame;
    }

    /// <summary>Splits a frame into type, dispatch id and payload; false when it is too short to be a frame.</summary>
    public static bool TryRead(ReadOnlyMemory<byte> frame, out FrameType type, out uint dispatchId, out ReadOnlyMemory<byte> payload)
    {
        if (frame.Length < HeaderSize)
        {
            type = default;
            dispatchId = 0;
            payload = default;
            return false;
        }
        var span = frame.Span;
        type = (FrameType)span[0];
        dispatchId = BinaryPrimitives.ReadUInt32LittleEndian(span[1..]);
        payload = frame[HeaderSize..];
        return true;
    }

    /// <summary>Splits a dispatch payload into its header and body; false when malformed or a header field is missing.</summary>
    public static bool TryReadDispatch(ReadOnlyMemory<byte> payload, out DispatchHeader? header, out ReadOnlyMemory<byte> body)
    {
        header = null;
        body = default;
        if (payload.Length < 2)
        {
            return false;
        }
        var length = BinaryPrimitives.ReadUInt16LittleEndian(payload.Span);
        if (payload.Length < 2 + length)
        {
            return false;
        }
        try
        {
            header = System.Text.Json.JsonSerializer.Deserialize(payload.Span.Slice(2, length), ProtocolJsonContext.Default.DispatchHeader);
        }
        catch (System.Text.Json.JsonException)
        {
            return false;
        }
        // Missing or null names deserialize to null; the daemon would look them up, so such a header is malformed.
        if (header is not { Task: not null, Model: not null, ContentType: not null })
        {
            header = null;
            return false;
        }
        body = payload[(2 + length)..];
        return true;
    }

    public static T? ReadJson<T>(ReadOnlyMemory<byte> payload, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> typeInfo)
    {
        try
        {
            return System.Text.Json.JsonSerializer.Deserialize(payload.Span, typeInfo);
        }
        catch (System.Text.Json.JsonException)
        {
            return default;
        }
    }
}

/// <summary>HTTP-level names of the runtime link.</summary>
public static class RuntimeLink
{
    public const string ConnectPath = "/v1/runtimes/connect";
    public const string PairPath = "/v1/runtimes/pair";
    public const string MePath = "/v1/runtimes/me";
    public const string CredentialPrefix = "lrt_";
    public const string BootstrapPrefix = "lbt_";
    public const string SubProtocol = "lattice.runtime.v1";
}
