using System.Buffers;
using System.Text.Json;

namespace Lattice.Gateway.OpenAi;

/// <summary>What a translating surface does with the parts of a chat-completions answer, in the order they arrive.</summary>
/// <remarks>Text is handed over as UTF-8, unescaped and valid, in spans that last only for the call.</remarks>
public interface IChatAnswerHandler
{
    /// <summary>A piece of the answer's text (never empty).</summary>
    void Text(ReadOnlySpan<byte> text);

    /// <summary>A piece of the model's refusal (the chat message's <c>refusal</c>; never empty).</summary>
    void Refusal(ReadOnlySpan<byte> text);

    /// <summary>A tool call starts: the chat's tool call index, its id and the function's name.</summary>
    void ToolCallStarted(int index, string id, string name);

    /// <summary>A fragment of the arguments (JSON text) of the tool call at <paramref name="index"/> (never empty).</summary>
    void ToolCallArguments(int index, ReadOnlySpan<byte> fragment);

    /// <summary>The choice's <c>finish_reason</c>, and the choice-level <c>stop_reason</c> some engines add (vLLM).</summary>
    void Finished(string reason, string? stopReason);

    /// <summary>
    /// The stream carried an <c>error</c> object (or a chunk whose text cannot be decoded: then
    /// <paramref name="error"/> is undefined); nothing more is read.
    /// </summary>
    void Failed(JsonElement error);
}

/// <summary>
/// Reads the first choice of a chat-completions answer — a stream of <c>data:</c> chunks as it arrives, or a whole
/// completion — and hands its text, refusal, tool calls and finish reason to an <see cref="IChatAnswerHandler"/>.
/// The translating surfaces' sinks write the relayed bytes into <see cref="Writer"/> and call it at each flush, and
/// <see cref="Dispose"/> it when the answer is over.
/// </summary>
/// <remarks>
/// A chunk is read in one pass of a <see cref="Utf8JsonReader"/> over its bytes, with no document built: the pass
/// checks the whole chunk and notes where the parts are; only then are they handed over, in a fixed order (text,
/// refusal, tool calls, finish), whatever the order of the members. It answers as a JSON parser would: where a name
/// repeats the last one counts, a member of an unexpected type is absent, and a chunk that is not one JSON value is
/// skipped whole. Text that is not valid UTF-8 (an escaped surrogate without its pair) fails the stream.
/// </remarks>
public sealed class ChatAnswerReader : IDisposable
{
    private readonly ReceivedBytes _received = new();
    private readonly HashSet<int> _started = [];
    /// <summary>The parts of the chunk being read; kept between chunks so reading allocates nothing.</summary>
    private readonly Parts _parts = new();
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
            _received.Clear();
            _consumed = 0;
        }
    }

    /// <summary>Reads a whole chat completion; false when it is not one.</summary>
    public bool ReadCompletion(IChatAnswerHandler handler) =>
        Scan(_received.WrittenSpan, "message"u8) == Verdict.Object && !_parts.Undecodable && Hand(_received.WrittenSpan, handler);

    /// <summary>Gives the received bytes' memory back; the reader is not used after.</summary>
    public void Dispose() => _received.Dispose();

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
        if (Scan(data, "delta"u8) != Verdict.Object)
        {
            // Not a chunk a surface understands; the dispatch's own checks decide whether the stream was whole.
            return;
        }
        if (_parts.ErrorAt >= 0)
        {
            SawError = true;
            var reader = new Utf8JsonReader(data[_parts.ErrorAt..]);
            using var error = JsonDocument.ParseValue(ref reader);
            handler.Failed(error.RootElement);
            return;
        }
        if (_parts.Undecodable)
        {
            SawError = true;
            handler.Failed(default);
            return;
        }
        Hand(data, handler);
    }

    private enum Verdict { NotJson, NotObject, Object }

    /// <summary>Reads one JSON value through, noting the first choice's parts in <see cref="_parts"/>.</summary>
    /// <param name="contentName"><c>delta</c> in a chunk, <c>message</c> in a completion.</param>
    private Verdict Scan(ReadOnlySpan<byte> json, ReadOnlySpan<byte> contentName)
    {
        _parts.Clear();
        try
        {
            var reader = new Utf8JsonReader(json);
            if (!reader.Read())
            {
                return Verdict.NotJson;
            }
            if (reader.TokenType != JsonTokenType.StartObject)
            {
                reader.Skip();
                return Verdict.NotObject;
            }
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("choices"u8))
                {
                    reader.Read();
                    _parts.ClearChoice();
                    if (reader.TokenType == JsonTokenType.StartArray)
                    {
                        ScanChoices(ref reader, contentName);
                    }
                    else
                    {
                        reader.Skip();
                    }
                }
                else if (reader.ValueTextEquals("error"u8))
                {
                    reader.Read();
                    _parts.ErrorAt = reader.TokenType == JsonTokenType.Null ? -1 : (int)reader.TokenStartIndex;
                    reader.Skip();
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }
            return Verdict.Object;
        }
        catch (JsonException)
        {
            return Verdict.NotJson;
        }
        catch (InvalidOperationException)
        {
            // A name or string compared on the way holds an escaped surrogate without its pair.
            _parts.Undecodable = true;
            return Verdict.Object;
        }
    }

    /// <summary>The <c>choices</c> array: the first element is read if it is an object, the rest passed over.</summary>
    private void ScanChoices(ref Utf8JsonReader reader, ReadOnlySpan<byte> contentName)
    {
        var first = true;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (first && reader.TokenType == JsonTokenType.StartObject)
            {
                _parts.HasChoice = true;
                ScanChoice(ref reader, contentName);
            }
            else
            {
                reader.Skip();
            }
            first = false;
        }
    }

    private void ScanChoice(ref Utf8JsonReader reader, ReadOnlySpan<byte> contentName)
    {
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals(contentName))
            {
                reader.Read();
                _parts.ClearMessage();
                if (reader.TokenType == JsonTokenType.StartObject)
                {
                    ScanMessage(ref reader);
                }
                else
                {
                    reader.Skip();
                }
            }
            else if (reader.ValueTextEquals("finish_reason"u8))
            {
                reader.Read();
                _parts.Finish = reader.TokenType == JsonTokenType.String ? FinishReason(ref reader) : null;
                reader.Skip();
            }
            else if (reader.ValueTextEquals("stop_reason"u8))
            {
                reader.Read();
                _parts.StopReason = reader.TokenType == JsonTokenType.String ? _parts.Decode(ref reader) : null;
                reader.Skip();
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }
    }

    private void ScanMessage(ref Utf8JsonReader reader)
    {
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("content"u8))
            {
                reader.Read();
                _parts.Content = reader.TokenType == JsonTokenType.String ? _parts.Keep(ref reader) : default;
                reader.Skip();
            }
            else if (reader.ValueTextEquals("refusal"u8))
            {
                reader.Read();
                _parts.Refusal = reader.TokenType == JsonTokenType.String ? _parts.Keep(ref reader) : default;
                reader.Skip();
            }
            else if (reader.ValueTextEquals("tool_calls"u8))
            {
                reader.Read();
                _parts.Calls.Clear();
                _parts.HasCalls = reader.TokenType == JsonTokenType.StartArray;
                if (_parts.HasCalls)
                {
                    ScanCalls(ref reader);
                }
                else
                {
                    reader.Skip();
                }
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }
    }

    /// <summary>Tool calls, or fragments of them: each element's index, id, function name and arguments.</summary>
    private void ScanCalls(ref Utf8JsonReader reader)
    {
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            var call = new Call();
            if (reader.TokenType != JsonTokenType.StartObject)
            {
                reader.Skip();
                call.Skip = true;
                _parts.Calls.Add(call);
                continue;
            }
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("index"u8))
                {
                    reader.Read();
                    call.HasIndex = reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out call.Index);
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("id"u8))
                {
                    reader.Read();
                    call.Id = reader.TokenType == JsonTokenType.String ? _parts.Decode(ref reader) : null;
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("function"u8))
                {
                    reader.Read();
                    call.HasFunction = reader.TokenType == JsonTokenType.StartObject;
                    call.Name = null;
                    call.Arguments = default;
                    if (!call.HasFunction)
                    {
                        reader.Skip();
                        continue;
                    }
                    while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                    {
                        if (reader.ValueTextEquals("name"u8))
                        {
                            reader.Read();
                            call.Name = reader.TokenType == JsonTokenType.String ? _parts.Decode(ref reader) : null;
                        }
                        else if (reader.ValueTextEquals("arguments"u8))
                        {
                            reader.Read();
                            call.Arguments = reader.TokenType == JsonTokenType.String ? _parts.Keep(ref reader) : default;
                        }
                        else
                        {
                            reader.Read();
                        }
                        reader.Skip();
                    }
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }
            _parts.Calls.Add(call);
        }
    }

    /// <summary>The usual finish reasons without a string each time.</summary>
    private string? FinishReason(ref Utf8JsonReader reader) =>
        reader.ValueTextEquals("stop"u8) ? "stop"
        : reader.ValueTextEquals("length"u8) ? "length"
        : reader.ValueTextEquals("tool_calls"u8) ? "tool_calls"
        : reader.ValueTextEquals("content_filter"u8) ? "content_filter"
        : _parts.Decode(ref reader);

    /// <summary>Hands the parts of a read chunk or completion over, in order: text, refusal, tool calls, finish.</summary>
    /// <returns>True (for <see cref="ReadCompletion"/>).</returns>
    private bool Hand(ReadOnlySpan<byte> json, IChatAnswerHandler handler)
    {
        if (!_parts.HasChoice)
        {
            return true;
        }
        if (_parts.Text(json, _parts.Content) is { IsEmpty: false } text)
        {
            handler.Text(text);
        }
        if (_parts.Text(json, _parts.Refusal) is { IsEmpty: false } refused)
        {
            handler.Refusal(refused);
        }
        if (_parts.HasCalls)
        {
            var position = 0;
            foreach (var call in _parts.Calls)
            {
                var index = call.HasIndex ? call.Index : position;
                position++;
                if (call.Skip)
                {
                    continue;
                }
                if (!_started.Contains(index))
                {
                    if (call.Id is null || !call.HasFunction || call.Name is null)
                    {
                        continue;
                    }
                    _started.Add(index);
                    handler.ToolCallStarted(index, call.Id, call.Name);
                }
                if (call.HasFunction && _parts.Text(json, call.Arguments) is { IsEmpty: false } fragment)
                {
                    handler.ToolCallArguments(index, fragment);
                }
            }
        }
        if (_parts.Finish is { } finish)
        {
            handler.Finished(finish, _parts.StopReason);
        }
        return true;
    }

    /// <summary>Where a string's text is: in the chunk itself when it has no escapes, else unescaped in the scratch.</summary>
    private readonly record struct Span(int Start, int Length, bool InScratch, bool Present);

    private struct Call
    {
        public int Index;
        public bool HasIndex;
        public string? Id;
        public string? Name;
        public bool HasFunction;
        public Span Arguments;
        /// <summary>Not an object: it counts for the position of the next, and is otherwise passed over.</summary>
        public bool Skip;
    }

    /// <summary>The first choice of one chunk (or completion), as the pass found it.</summary>
    private sealed class Parts
    {
        private byte[] _scratch = [];
        private int _scratchUsed;

        public int ErrorAt = -1;
        public bool HasChoice;
        public Span Content;
        public Span Refusal;
        public bool HasCalls;
        public readonly List<Call> Calls = [];
        public string? Finish;
        public string? StopReason;
        /// <summary>A string of the choice could not be decoded (an escaped surrogate without its pair, bad UTF-8).</summary>
        public bool Undecodable;

        public void Clear()
        {
            ErrorAt = -1;
            _scratchUsed = 0;
            Undecodable = false;
            ClearChoice();
        }

        public void ClearChoice()
        {
            HasChoice = false;
            Finish = null;
            StopReason = null;
            ClearMessage();
        }

        public void ClearMessage()
        {
            Content = default;
            Refusal = default;
            HasCalls = false;
            Calls.Clear();
        }

        /// <summary>Notes where the string at the reader is; an escaped one is unescaped into the scratch.</summary>
        public Span Keep(ref Utf8JsonReader reader)
        {
            try
            {
                if (!reader.ValueIsEscaped)
                {
                    var start = (int)reader.TokenStartIndex + 1;
                    if (!System.Text.Unicode.Utf8.IsValid(reader.ValueSpan))
                    {
                        Undecodable = true;
                        return default;
                    }
                    return new Span(start, reader.ValueSpan.Length, false, true);
                }
                if (_scratch.Length - _scratchUsed < reader.ValueSpan.Length)
                {
                    Array.Resize(ref _scratch, Math.Max(_scratch.Length * 2, _scratchUsed + reader.ValueSpan.Length));
                }
                var written = reader.CopyString(_scratch.AsSpan(_scratchUsed));
                if (!System.Text.Unicode.Utf8.IsValid(_scratch.AsSpan(_scratchUsed, written)))
                {
                    Undecodable = true;
                    return default;
                }
                var kept = new Span(_scratchUsed, written, true, true);
                _scratchUsed += written;
                return kept;
            }
            catch (InvalidOperationException)
            {
                Undecodable = true;
                return default;
            }
        }

        /// <summary>The string at the reader; null (and <see cref="Undecodable"/>) when it cannot be one.</summary>
        public string? Decode(ref Utf8JsonReader reader)
        {
            try
            {
                return reader.GetString();
            }
            catch (InvalidOperationException)
            {
                Undecodable = true;
                return null;
            }
        }

        public ReadOnlySpan<byte> Text(ReadOnlySpan<byte> json, Span span) =>
            !span.Present ? default : span.InScratch ? _scratch.AsSpan(span.Start, span.Length) : json.Slice(span.Start, span.Length);
    }

    /// <summary>The received bytes, in pooled memory that grows as needed and goes back when the answer is over.</summary>
    private sealed class ReceivedBytes : IBufferWriter<byte>, IDisposable
    {
        private byte[] _buffer = [];
        private int _written;

        public int WrittenCount => _written;

        public ReadOnlySpan<byte> WrittenSpan => _buffer.AsSpan(0, _written);

        public void Clear() => _written = 0;

        public void Advance(int count) => _written += count;

        public Memory<byte> GetMemory(int sizeHint = 0)
        {
            Ensure(sizeHint);
            return _buffer.AsMemory(_written);
        }

        public Span<byte> GetSpan(int sizeHint = 0)
        {
            Ensure(sizeHint);
            return _buffer.AsSpan(_written);
        }

        private void Ensure(int sizeHint)
        {
            var needed = _written + Math.Max(sizeHint, 1);
            if (needed <= _buffer.Length)
            {
                return;
            }
            var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(needed, Math.Max(4096, _buffer.Length * 2)));
            _buffer.AsSpan(0, _written).CopyTo(bigger);
            Return();
            _buffer = bigger;
        }

        public void Dispose()
        {
            Return();
            _buffer = [];
            _written = 0;
        }

        private void Return()
        {
            if (_buffer.Length > 0)
            {
                ArrayPool<byte>.Shared.Return(_buffer);
            }
        }
    }
}
