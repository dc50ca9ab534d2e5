using System.Buffers;
using System.Text.Json;

namespace Lattice.Gateway.OpenAi;

/// <summary>What a translating surface does with the parts of a chat-completions answer, in the order they arrive.</summary>
public interface IChatAnswerHandler
{
    /// <summary>A piece of the answer's text.</summary>
    void Text(string text);

    /// <summary>A piece of the model's refusal (the chat message's <c>refusal</c>).</summary>
    void Refusal(string text);

    /// <summary>A tool call starts: the chat's tool call index, its id and the function's name.</summary>
    void ToolCallStarted(int index, string id, string name);

    /// <summary>A fragment of the arguments (JSON text) of the tool call at <paramref name="index"/>.</summary>
    void ToolCallArguments(int index, string fragment);

    /// <summary>The choice's <c>finish_reason</c>, and the choice-level <c>stop_reason</c> some engines add (vLLM).</summary>
    void Finished(string reason, string? stopReason);

    /// <summary>The stream carried an <c>error</c> object; nothing more is read.</summary>
    void Failed(JsonElement error);
}

/// <summary>
/// Reads the first choice of a chat-completions answer — a stream of <c>data:</c> chunks as it arrives, or a whole
/// completion — and hands its text, refusal, tool calls and finish reason to an <see cref="IChatAnswerHandler"/>.
/// The translating surfaces' sinks write the relayed bytes into <see cref="Writer"/> and call it at each flush.
/// </summary>
public sealed class ChatAnswerReader
{
    private readonly ArrayBufferWriter<byte> _received = new(4096);
    private readonly HashSet<int> _started = [];
    private int _consumed;

    /// <summary>Where the relay writes the answer's bytes.</summary>
    public IBufferWriter<byte> Writer => _received;

    /// <summary>The bytes received and not yet read (all of a whole answer).</summary>
    public ReadOnlySpan<byte> Received => _received.WrittenSpan[_consumed..];

    /// <summary>The stream's <c>data: [DONE]</c> was read.</summary>
    public bool SawDone { get; private set; }

    /// <summary>The stream carried an error; the rest was ignored.</summary>
    public bool SawError { get; private set; }

    /// <summary>Reads the complete lines of a stream received so far; a partial line waits for the rest.</summary>
    public void ReadEvents(IChatAnswerHandler handler)
    {
        while (true)
        {
            var rest = _received.WrittenSpan[_consumed..];
            var newline = rest.IndexOf((byte)'\n');
            if (newline < 0)
            {
                break;
            }
            _consumed += newline + 1;
            if (!SawError)
            {
                ReadLine(rest[..newline].TrimEnd((byte)'\r'), handler);
            }
        }
        if (_consumed > 0 && _consumed == _received.WrittenCount)
        {
            _received.ResetWrittenCount();
            _consumed = 0;
        }
    }

    /// <summary>Reads a whole chat completion; false when it is not one.</summary>
    public bool ReadCompletion(IChatAnswerHandler handler)
    {
        try
        {
            var reader = new Utf8JsonReader(_received.WrittenSpan);
            using var completion = JsonDocument.ParseValue(ref reader);
            if (completion.RootElement.ValueKind != JsonValueKind.Object)
            {
                return false;
            }
            ReadChoice(completion.RootElement, "message", handler);
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>One line of the stream: a <c>data:</c> chunk is read; comments, event names and blank lines pass.</summary>
    private void ReadLine(ReadOnlySpan<byte> line, IChatAnswerHandler handler)
    {
        if (!line.StartsWith("data:"u8))
        {
            return;
        }
        var data = line[5..].TrimStart((byte)' ');
        if (data.SequenceEqual("[DONE]"u8))
        {
            SawDone = true;
            return;
        }
        try
        {
            var reader = new Utf8JsonReader(data);
            using var chunk = JsonDocument.ParseValue(ref reader);
            var root = chunk.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return;
            }
            if (root.TryGetProperty("error", out var error) && error.ValueKind != JsonValueKind.Null)
            {
                SawError = true;
                handler.Failed(error);
                return;
            }
            ReadChoice(root, "delta", handler);
        }
        catch (JsonException)
        {
            // Not a chunk a surface understands; the dispatch's own checks decide whether the stream was whole.
        }
    }

    /// <summary>The first choice of a chunk (<c>delta</c>) or completion (<c>message</c>).</summary>
    private void ReadChoice(JsonElement root, string contentProperty, IChatAnswerHandler handler)
    {
        if (!root.TryGetProperty("choices", out var choices) || choices.ValueKind != JsonValueKind.Array || choices.GetArrayLength() == 0)
        {
            return;
        }
        var choice = choices[0];
        if (choice.TryGetProperty(contentProperty, out var message) && message.ValueKind == JsonValueKind.Object)
        {
            if (message.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String
                && content.GetString() is { Length: > 0 } text)
            {
                handler.Text(text);
            }
            if (message.TryGetProperty("refusal", out var refusal) && refusal.ValueKind == JsonValueKind.String
                && refusal.GetString() is { Length: > 0 } refused)
            {
                handler.Refusal(refused);
            }
            if (message.TryGetProperty("tool_calls", out var calls) && calls.ValueKind == JsonValueKind.Array)
            {
                ReadToolCalls(calls, handler);
            }
        }
        if (choice.TryGetProperty("finish_reason", out var finish) && finish.ValueKind == JsonValueKind.String)
        {
            var stop = choice.TryGetProperty("stop_reason", out var stopReason) && stopReason.ValueKind == JsonValueKind.String ? stopReason.GetString() : null;
            handler.Finished(finish.GetString()!, stop);
        }
    }

    /// <summary>Tool calls of a message, or fragments of them in a chunk: one with an <c>id</c> and a name starts a call.</summary>
    private void ReadToolCalls(JsonElement calls, IChatAnswerHandler handler)
    {
        var position = 0;
        foreach (var call in calls.EnumerateArray())
        {
            var index = call.TryGetProperty("index", out var indexElement) && indexElement.TryGetInt32(out var i) ? i : position;
            position++;
            call.TryGetProperty("function", out var function);
            var hasFunction = function.ValueKind == JsonValueKind.Object;
            if (!_started.Contains(index))
            {
                if (!call.TryGetProperty("id", out var id) || id.ValueKind != JsonValueKind.String
                    || !hasFunction || !function.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String)
                {
                    continue;
                }
                _started.Add(index);
                handler.ToolCallStarted(index, id.GetString()!, name.GetString()!);
            }
            if (hasFunction && function.TryGetProperty("arguments", out var arguments) && arguments.ValueKind == JsonValueKind.String
                && arguments.GetString() is { Length: > 0 } fragment)
            {
                handler.ToolCallArguments(index, fragment);
            }
        }
    }
}
