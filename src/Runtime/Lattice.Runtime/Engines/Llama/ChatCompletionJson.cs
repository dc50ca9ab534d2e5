using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Lattice.Runtime.Engines.Llama;

/// <summary>Why a choice ended, as OpenAI names it.</summary>
internal enum FinishReason
{
    Stop,
    Length,
    ToolCalls,
}

/// <summary>A function call returned in <c>message.tool_calls</c>.</summary>
internal sealed record ToolCall(string Id, string Name, string Arguments);

/// <summary>One finished choice of a non-streamed completion.</summary>
internal sealed record ChoiceResult(int Index, string? Content, ToolCall? ToolCall, FinishReason FinishReason, int CompletionTokens);

/// <summary>Writes OpenAI's chat completion JSON: the <c>chat.completion</c> object and <c>chat.completion.chunk</c> SSE events.</summary>
internal sealed class ChatCompletionJson(string id, long created, string model, string? systemFingerprint)
{
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private static readonly byte[] DataPrefix = "data: "u8.ToArray();
    private static readonly byte[] EventEnd = "\n\n"u8.ToArray();
    private const string Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

    /// <summary>The last SSE event of every stream.</summary>
    public static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    public string Id { get; } = id;

    public static string NewCompletionId() => "chatcmpl-" + RandomString(29);

    public static string NewToolCallId() => "call_" + RandomString(24);

    private static string RandomString(int length) => new(RandomNumberGenerator.GetItems<char>(Alphabet, length));

    public static string FinishReasonName(FinishReason reason) => reason switch
    {
        FinishReason.Stop => "stop",
        FinishReason.Length => "length",
        FinishReason.ToolCalls => "tool_calls",
        _ => throw new ArgumentOutOfRangeException(nameof(reason)),
    };

    /// <summary>The whole <c>chat.completion</c> response body.</summary>
    public byte[] Completion(IReadOnlyList<ChoiceResult> choices, int promptTokens, int completionTokens) => Write(w =>
    {
        w.WriteStartObject();
        WriteHeader(w, "chat.completion");
        w.WriteStartArray("choices");
        foreach (var choice in choices)
        {
            w.WriteStartObject();
            w.WriteNumber("index", choice.Index);
            w.WriteStartObject("message");
            w.WriteString("role", "assistant");
            if (choice.Content is null) { w.WriteNull("content"); } else { w.WriteString("content", choice.Content); }
            w.WriteNull("refusal");
            if (choice.ToolCall is { } call)
            {
                w.WriteStartArray("tool_calls");
                w.WriteStartObject();
                w.WriteString("id", call.Id);
                w.WriteString("type", "function");
                w.WriteStartObject("function");
                w.WriteString("name", call.Name);
                w.WriteString("arguments", call.Arguments);
                w.WriteEndObject();
                w.WriteEndObject();
                w.WriteEndArray();
            }
            w.WriteStartArray("annotations");
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteNull("logprobs");
            w.WriteString("finish_reason", FinishReasonName(choice.FinishReason));
            w.WriteEndObject();
        }
        w.WriteEndArray();
        WriteUsage(w, promptTokens, completionTokens);
        w.WriteEndObject();
    });

    /// <summary>
    /// The first chunk of a choice: <c>{"role":"assistant","content":"","refusal":null}</c> (content null when the
    /// choice will be a tool call).
    /// </summary>
    public byte[] RoleChunk(int index, bool usageNull, bool nullContent = false) => Chunk(index, usageNull, null, w =>
    {
        w.WriteString("role", "assistant");
        if (nullContent) { w.WriteNull("content"); } else { w.WriteString("content", ""); }
        w.WriteNull("refusal");
    });

    /// <summary>The first chunk of a tool-call choice: role, null content and the call's id and name with empty arguments.</summary>
    public byte[] ToolCallStartChunk(int index, bool usageNull, string callId, string name) => Chunk(index, usageNull, null, w =>
    {
        w.WriteString("role", "assistant");
        w.WriteNull("content");
        w.WriteNull("refusal");
        WriteToolCallDelta(w, callId, name, "");
    });

    /// <summary>A chunk carrying a complete tool call (id, name and arguments).</summary>
    public byte[] ToolCallChunk(int index, bool usageNull, string callId, string name, string arguments) => Chunk(index, usageNull, null, w =>
        WriteToolCallDelta(w, callId, name, arguments));

    /// <summary>A chunk with more of a tool call's arguments.</summary>
    public byte[] ArgumentsChunk(int index, bool usageNull, string arguments) => Chunk(index, usageNull, null, w =>
        WriteToolCallDelta(w, null, null, arguments));

    /// <summary>A chunk with more content text.</summary>
    public byte[] ContentChunk(int index, bool usageNull, string text) => Chunk(index, usageNull, null, w => w.WriteString("content", text));

    /// <summary>The last chunk of a choice: an empty delta and its finish reason.</summary>
    public byte[] FinishChunk(int index, bool usageNull, FinishReason reason) => Chunk(index, usageNull, reason, _ => { });

    /// <summary>The usage chunk sent after all choices when <c>stream_options.include_usage</c> is true.</summary>
    public byte[] UsageChunk(int promptTokens, int completionTokens) => Event(w =>
    {
        w.WriteStartObject();
        WriteHeader(w, "chat.completion.chunk");
        w.WriteStartArray("choices");
        w.WriteEndArray();
        WriteUsage(w, promptTokens, completionTokens);
        w.WriteEndObject();
    });

    /// <summary>An error event for a stream that fails after it started.</summary>
    public static byte[] ErrorEvent(string message) => Frame(EngineErrors.Envelope(message, "server_error"));

    private byte[] Chunk(int index, bool usageNull, FinishReason? finish, Action<Utf8JsonWriter> writeDelta) => Event(w =>
    {
        w.WriteStartObject();
        WriteHeader(w, "chat.completion.chunk");
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", index);
        w.WriteStartObject("delta");
        writeDelta(w);
        w.WriteEndObject();
        w.WriteNull("logprobs");
        if (finish is { } reason) { w.WriteString("finish_reason", FinishReasonName(reason)); } else { w.WriteNull("finish_reason"); }
        w.WriteEndObject();
        w.WriteEndArray();
        if (usageNull)
        {
            w.WriteNull("usage");
        }
        w.WriteEndObject();
    });

    private static void WriteToolCallDelta(Utf8JsonWriter w, string? callId, string? name, string arguments)
    {
        w.WriteStartArray("tool_calls");
        w.WriteStartObject();
        w.WriteNumber("index", 0);
        if (callId is not null)
        {
            w.WriteString("id", callId);
            w.WriteString("type", "function");
        }
        w.WriteStartObject("function");
        if (name is not null)
        {
            w.WriteString("name", name);
        }
        w.WriteString("arguments", arguments);
        w.WriteEndObject();
        w.WriteEndObject();
        w.WriteEndArray();
    }

    private void WriteHeader(Utf8JsonWriter w, string objectType)
    {
        w.WriteString("id", Id);
        w.WriteString("object", objectType);
        w.WriteNumber("created", created);
        w.WriteString("model", model);
        w.WriteString("service_tier", "default");
        if (systemFingerprint is not null)
        {
            w.WriteString("system_fingerprint", systemFingerprint);
        }
    }

    private static void WriteUsage(Utf8JsonWriter w, int promptTokens, int completionTokens)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", promptTokens);
        w.WriteNumber("completion_tokens", completionTokens);
        w.WriteNumber("total_tokens", (long)promptTokens + completionTokens);
        w.WriteStartObject("prompt_tokens_details");
        w.WriteNumber("cached_tokens", 0);
        w.WriteNumber("audio_tokens", 0);
        w.WriteEndObject();
        w.WriteStartObject("completion_tokens_details");
        w.WriteNumber("reasoning_tokens", 0);
        w.WriteNumber("audio_tokens", 0);
        w.WriteNumber("accepted_prediction_tokens", 0);
        w.WriteNumber("rejected_prediction_tokens", 0);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static byte[] Write(Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            write(writer);
        }
        return buffer.WrittenSpan.ToArray();
    }

    private static byte[] Event(Action<Utf8JsonWriter> write) => Frame(Write(write));

    private static byte[] Frame(byte[] json)
    {
        var frame = new byte[DataPrefix.Length + json.Length + EventEnd.Length];
        DataPrefix.CopyTo(frame, 0);
        json.CopyTo(frame, DataPrefix.Length);
        EventEnd.CopyTo(frame, DataPrefix.Length + json.Length);
        return frame;
    }

    /// <summary>A short fingerprint of the backend configuration: the model file and the engine.</summary>
    public static string Fingerprint(string sha256) => "fp_" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("llama/llamasharp-0.30.0/" + sha256)))[..10];
}
