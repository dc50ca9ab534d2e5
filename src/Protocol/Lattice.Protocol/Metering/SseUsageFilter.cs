using System.Buffers;
using System.Text;
using System.Text.Json;

namespace Lattice.Protocol.Metering;

/// <summary>
/// Sits between a target's event stream and the client for one response: forwards whole server-sent events, notes
/// the usage the target reports, and — when the gateway turned on <c>stream_options.include_usage</c> itself — takes
/// that usage back out so the client gets the bytes it would have got without it. Given the model id the client asked
/// for, it also puts that id in place of the target's own in every event (<see cref="ModelFieldRewriter"/>).
/// </summary>
/// <remarks>
/// Events are forwarded only once complete (ended by a blank line), so a usage report split across two reads is
/// still seen whole and an event is never half-edited. An event without the usage key is copied as it is, unparsed;
/// the common path allocates nothing. Not thread-safe: one instance per response, fed in order.
/// </remarks>
public sealed class SseUsageFilter : IDisposable
{
    private const int MinimumHeld = 4096;

    // The key without its opening quote: searching for a needle that starts and ends with '"' checks a candidate at
    // nearly every quote of a JSON chunk; 'u'…'"' is rare, and the quote before it is checked by hand.
    private readonly byte[] _keyTail;
    private readonly string? _usagePath;
    // The usage path is the top-level `usage` member, the one strip mode cuts: read in the same pass as the cut.
    private readonly bool _topLevelUsage;
    private readonly string _unit;
    private readonly bool _strip;
    private readonly int _keepLimit;
    private readonly ISseEventObserver? _observer;
    private readonly ModelFieldRewriter? _model;
    // The event being forwarded names a model, so its bytes go through the rewriter.
    private bool _rewriting;
    // The event's model value (its string token, quotes included) found by the fast path: [_valueStart, _valueEnd).
    private int _valueStart = -1;
    private int _valueEnd;

    private byte[] _held = [];
    private int _heldLength;
    private byte[] _kept = [];
    private int _keptLength;

    /// <param name="stripInjectedUsage">
    /// The gateway added <c>include_usage</c> the client did not ask for: drop the usage-only chunk and the
    /// <c>"usage":null</c> member of every other chunk. Only chat completions have include_usage, so this mode looks
    /// for chat's top-level <c>usage</c> member whatever <paramref name="usagePath"/> says.
    /// </param>
    /// <param name="keepWrittenBytes">
    /// Keep up to this many bytes of the forwarded events in <see cref="Written"/> (0: keep none), so that a stream
    /// the client cancels can still be estimated from what it received.
    /// </param>
    /// <param name="usagePath">Where the usage sits in an event's JSON (dotted); its last segment is the key looked for.</param>
    /// <param name="unit">The task's metering unit: <c>tokens</c>, <c>seconds</c> or <c>requests</c>.</param>
    /// <param name="observer">Also shown every whole event forwarded (an answer in another API's stream format, whose usage and end this filter does not know).</param>
    /// <param name="model">
    /// The model id the client asked for, as a JSON string token (<see cref="ModelFieldRewriter.Quote"/>): it replaces
    /// the value of every event's <c>model</c> member at depth 1 or 2. Null: events keep the target's model name.
    /// </param>
    public SseUsageFilter(bool stripInjectedUsage = false, int keepWrittenBytes = 0, string? usagePath = "usage", string unit = "tokens",
        ISseEventObserver? observer = null, byte[]? model = null)
    {
        _observer = observer;
        _model = model is null ? null : new ModelFieldRewriter(model);
        ArgumentOutOfRangeException.ThrowIfNegative(keepWrittenBytes);
        _strip = stripInjectedUsage;
        _keepLimit = keepWrittenBytes;
        _usagePath = string.IsNullOrEmpty(usagePath) ? null : usagePath;
        _topLevelUsage = _usagePath == "usage";
        _unit = unit;
        string last = _usagePath is null ? "usage" : _usagePath[(_usagePath.LastIndexOf('.') + 1)..];
        _keyTail = Encoding.UTF8.GetBytes(last + "\"");
    }

    /// <summary>Bytes of an event not yet complete, held until the next <see cref="Push"/> (or <see cref="Flush"/>).</summary>
    public ReadOnlySpan<byte> Pending => _held.AsSpan(0, _heldLength);

    /// <summary>The stream's end marker, <c>data: [DONE]</c>, has been forwarded.</summary>
    public bool SawDone { get; private set; }

    /// <summary>The usage of the last event that carried a usage object; null while none has.</summary>
    public Usage? Usage { get; private set; }

    /// <summary>
    /// The events forwarded so far, up to the byte cap given to the constructor (whole events only), as the target
    /// sent them apart from the usage taken out (the model name is not put in: it counts for nothing).
    /// </summary>
    public ReadOnlySpan<byte> Written => _kept.AsSpan(0, _keptLength);

    /// <summary>An event did not fit under the cap, so <see cref="Written"/> stops short of what was forwarded.</summary>
    public bool WrittenTruncated { get; private set; }

    /// <summary>Forwards every event that <paramref name="chunk"/> completes to <paramref name="output"/>; holds the rest.</summary>
    public void Push(ReadOnlySpan<byte> chunk, IBufferWriter<byte> output)
    {
        ArgumentNullException.ThrowIfNull(output);
        if (_heldLength > 0)
        {
            // Only the bytes that finish the held event join it; events wholly inside the chunk are never copied twice.
            int end = SseEvents.FindEventEnd(Pending, chunk);
            if (end < 0)
            {
                Hold(chunk);
                return;
            }

            Hold(chunk[..end]);
            chunk = chunk[end..];
            int length = _heldLength;
            _heldLength = 0;
            Forward(_held.AsSpan(0, length), output);
        }

        while (chunk.Length > 0)
        {
            int end = SseEvents.FindEventEnd(default, chunk);
            if (end < 0)
            {
                Hold(chunk);
                return;
            }

            Forward(chunk[..end], output);
            chunk = chunk[end..];
        }
    }

    /// <summary>
    /// At the end of the body: forwards the held bytes of an event the target never finished, unchanged, as a plain
    /// relay would have.
    /// </summary>
    public void Flush(IBufferWriter<byte> output)
    {
        ArgumentNullException.ThrowIfNull(output);
        if (_heldLength > 0)
        {
            Begin(Pending);
            Write(Pending, output);
            _heldLength = 0;
        }
    }

    public void Dispose()
    {
        Return(ref _held);
        Return(ref _kept);
        _heldLength = 0;
        _keptLength = 0;
    }

    private void Forward(ReadOnlySpan<byte> sseEvent, IBufferWriter<byte> output)
    {
        _observer?.Observe(sseEvent);
        Begin(sseEvent);
        int keyAt = IndexOfKey(sseEvent, 0);
        if (keyAt < 0)
        {
            // The common case: a content chunk of a client that did not ask for usage. Copied unparsed.
            if (!SawDone && sseEvent.Length < 64 && SseEvents.IsDone(sseEvent))
            {
                SawDone = true;
            }

            Write(sseEvent, output);
            return;
        }

        int dataLines = SseEvents.FindData(sseEvent, out int start, out int length);
        if (_strip && dataLines == 1)
        {
            // OpenAI-shaped chunks end with the usage member. When a document ends `,"usage":null}` that member can
            // only be the top-level one (the last `}` closes the root), so it is cut without parsing the chunk.
            ReadOnlySpan<byte> json = sseEvent.Slice(start, length);
            if (json.EndsWith(",\"usage\":null}"u8))
            {
                int cut = start + length - 14;
                Write(sseEvent, cut, cut + 13, output);
                return;
            }
        }

        bool hasValue = HasValueAfterKey(sseEvent, keyAt);
        if (!_strip || dataLines != 1)
        {
            // Without strip mode events pass unchanged. A JSON document split over several data lines is never one
            // the gateway's own include_usage produced from an OpenAI-shaped target, so it too passes unchanged.
            ReadUsage(sseEvent, hasValue);
            Write(sseEvent, output);
            return;
        }

        // One pass over the chunk finds the member to cut and, when the usage sits at the top level (chat's own
        // path), reads the usage on the way: the usage chunk is parsed once, not once to read and once to cut.
        bool readInPass = hasValue && _topLevelUsage;
        if (!TryFindTopLevelUsage(sseEvent.Slice(start, length), readInPass ? _unit : null, out int cutStart, out int cutEnd, out bool usageOnly, out Usage? found))
        {
            ReadUsage(sseEvent, hasValue);
            Write(sseEvent, output);
            return;
        }

        if (found is { } read)
        {
            Usage = read;
        }
        else if (!readInPass)
        {
            ReadUsage(sseEvent, hasValue);
        }

        if (usageOnly)
        {
            // The chunk that exists only because of include_usage: the client would never have seen it.
            return;
        }

        Write(sseEvent, start + cutStart, start + cutEnd, output);
    }

    /// <summary>Notes the event's usage at the usage path, when some mention of the key is followed by a value.</summary>
    private void ReadUsage(ReadOnlySpan<byte> sseEvent, bool hasValue)
    {
        if (hasValue && UsageReader.TryReadSseEvent(sseEvent, _usagePath, _unit, out Usage usage))
        {
            Usage = usage;
        }
    }

    /// <summary>Where the quoted key starts (its opening quote), from <paramref name="from"/> on; -1 when absent.</summary>
    private int IndexOfKey(ReadOnlySpan<byte> sseEvent, int from)
    {
        while (from < sseEvent.Length)
        {
            int at = sseEvent[from..].IndexOf(_keyTail);
            if (at < 0)
            {
                return -1;
            }

            int quote = from + at - 1;
            if (quote >= 0 && sseEvent[quote] == '"')
            {
                return quote;
            }

            from += at + 1;
        }

        return -1;
    }

    /// <summary>Whether some occurrence of the key is followed by an object (or, for a bare count, a number).</summary>
    private bool HasValueAfterKey(ReadOnlySpan<byte> sseEvent, int keyAt)
    {
        while (keyAt >= 0)
        {
            int i = SkipWhitespace(sseEvent, keyAt + 1 + _keyTail.Length);
            if (i < sseEvent.Length && sseEvent[i] == ':')
            {
                i = SkipWhitespace(sseEvent, i + 1);
                if (i < sseEvent.Length && (sseEvent[i] == '{' || sseEvent[i] == '-' || (uint)(sseEvent[i] - '0') <= 9))
                {
                    return true;
                }
            }

            keyAt = IndexOfKey(sseEvent, keyAt + 1 + _keyTail.Length);
        }

        return false;
    }

    private static int SkipWhitespace(ReadOnlySpan<byte> s, int i)
    {
        while (i < s.Length && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        {
            i++;
        }

        return i;
    }

    /// <summary>
    /// Finds the top-level <c>usage</c> member of a chunk, with the comma that joins it to its neighbours, so that
    /// cutting <c>[cutStart, cutEnd)</c> leaves the object the target would have sent without include_usage.
    /// <paramref name="usageOnly"/>: usage is an object and <c>choices</c> is empty — the usage chunk itself.
    /// Given a metering <paramref name="unit"/>, also reads the value of the first top-level <c>usage</c> member into
    /// <paramref name="usage"/> (null when that value is not usage), as <see cref="UsageReader.TryRead"/> with the path
    /// <c>usage</c> would.
    /// </summary>
    private static bool TryFindTopLevelUsage(ReadOnlySpan<byte> json, string? unit, out int cutStart, out int cutEnd, out bool usageOnly, out Usage? usage)
    {
        cutStart = cutEnd = -1;
        usageOnly = false;
        usage = null;
        bool firstUsage = true;
        bool choicesEmpty = false, usageObject = false;
        int previousValueEnd = -1;
        try
        {
            var reader = new Utf8JsonReader(json);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return false;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                int nameStart = (int)reader.TokenStartIndex;
                if (reader.ValueTextEquals("usage"u8))
                {
                    reader.Read();
                    usageObject = reader.TokenType == JsonTokenType.StartObject;
                    if (firstUsage && unit is not null && UsageReader.TryReadValue(reader, unit, out Usage value))
                    {
                        usage = value;
                    }

                    firstUsage = false;
                    reader.Skip();
                    int valueEnd = (int)reader.BytesConsumed;
                    if (previousValueEnd >= 0)
                    {
                        // `,"usage":…` — the comma after the previous member goes with it.
                        cutStart = previousValueEnd;
                        cutEnd = valueEnd;
                    }
                    else
                    {
                        // First member: `"usage":…,` — the following comma (and the space after it) goes instead.
                        cutStart = nameStart;
                        int i = SkipWhitespace(json, valueEnd);
                        cutEnd = i < json.Length && json[i] == ',' ? SkipWhitespace(json, i + 1) : valueEnd;
                    }

                    previousValueEnd = valueEnd;
                    continue;
                }

                bool choices = reader.ValueTextEquals("choices"u8);
                reader.Read();
                if (choices && reader.TokenType == JsonTokenType.StartArray)
                {
                    reader.Read();
                    choicesEmpty = reader.TokenType == JsonTokenType.EndArray;
                    if (!choicesEmpty)
                    {
                        // Finish the array: skip the rest of its elements.
                        do
                        {
                            reader.Skip();
                        }
                        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray);
                    }
                }
                else
                {
                    reader.Skip();
                }

                previousValueEnd = (int)reader.BytesConsumed;
            }
        }
        catch (JsonException)
        {
            usage = null;
            return false;
        }

        if (cutStart < 0)
        {
            usage = null;
            return false;
        }

        usageOnly = usageObject && choicesEmpty;
        return true;
    }

    /// <summary>
    /// Starts an event: only one that names a model (a vectorized search) is rewritten. An OpenAI-shaped chunk — a
    /// one-object prefix of plain members before <c>"model":"…"</c> and no other mention of a model — has its value
    /// found by two searches and spliced; anything else goes through the rewriter's scanner.
    /// </summary>
    private void Begin(ReadOnlySpan<byte> sseEvent)
    {
        _valueStart = -1;
        _rewriting = false;
        if (_model is null || sseEvent.IndexOf("model\""u8) < 0)
        {
            return;
        }
        if (FindPlainModelValue(sseEvent, out _valueStart, out _valueEnd))
        {
            return;
        }
        _valueStart = -1;
        _rewriting = true;
        _model.Reset();
    }

    /// <summary>Where the value of the top-level <c>model</c> member is, when the event is simple enough to tell by searching.</summary>
    private static bool FindPlainModelValue(ReadOnlySpan<byte> sseEvent, out int start, out int end)
    {
        start = end = -1;
        var at = sseEvent.IndexOf("\"model\":\""u8);
        if (at < 0)
        {
            return false;
        }
        // Before the key: the root's '{' and members without nesting or escapes, so quotes pair up and this is a key.
        var prefix = sseEvent[..at];
        if (prefix.IndexOfAny((byte)'\\', (byte)'[', (byte)'}') >= 0 || prefix.Count((byte)'{') != 1 || prefix.Count((byte)'"') % 2 != 0)
        {
            return false;
        }
        var open = at + 8;
        var close = sseEvent[(open + 1)..].IndexOfAny((byte)'"', (byte)'\\');
        if (close < 0 || sseEvent[open + 1 + close] != '"')
        {
            return false;
        }
        end = open + close + 2;
        if (sseEvent[end..].IndexOf("model\""u8) >= 0)
        {
            // Another mention of a model (nested, or in a text): the scanner decides.
            return false;
        }
        start = open;
        return true;
    }

    /// <summary>Writes the event's bytes from <paramref name="offset"/> on, with the model replaced.</summary>
    private void Emit(ReadOnlySpan<byte> bytes, int offset, IBufferWriter<byte> output)
    {
        if (_valueStart >= 0 && _valueStart >= offset && _valueEnd <= offset + bytes.Length)
        {
            output.Write(bytes[..(_valueStart - offset)]);
            output.Write(_model!.Replacement);
            output.Write(bytes[(_valueEnd - offset)..]);
        }
        else if (_rewriting)
        {
            _model!.Write(bytes, output);
        }
        else
        {
            output.Write(bytes);
        }
    }

    // What is kept (for estimating a cancelled stream) is the target's bytes: the model's name counts for nothing.
    private void Write(ReadOnlySpan<byte> sseEvent, IBufferWriter<byte> output)
    {
        Emit(sseEvent, 0, output);
        Keep(sseEvent);
    }

    /// <summary>The event without its bytes [<paramref name="cutStart"/>, <paramref name="cutEnd"/>).</summary>
    private void Write(ReadOnlySpan<byte> sseEvent, int cutStart, int cutEnd, IBufferWriter<byte> output)
    {
        var head = sseEvent[..cutStart];
        var tail = sseEvent[cutEnd..];
        Emit(head, 0, output);
        Emit(tail, cutEnd, output);
        if (CanKeep(head.Length + tail.Length))
        {
            Keep(head);
            Keep(tail);
        }
    }

    private bool CanKeep(int length)
    {
        if (_keepLimit == 0 || WrittenTruncated)
        {
            return false;
        }

        if (_keptLength + length > _keepLimit)
        {
            // Keep whole events only, so Written always parses as a stream.
            WrittenTruncated = true;
            return false;
        }

        return true;
    }

    private void Keep(ReadOnlySpan<byte> bytes)
    {
        if (!CanKeep(bytes.Length))
        {
            return;
        }

        Ensure(ref _kept, _keptLength, bytes.Length, _keepLimit);
        bytes.CopyTo(_kept.AsSpan(_keptLength));
        _keptLength += bytes.Length;
    }

    private void Hold(ReadOnlySpan<byte> bytes)
    {
        Ensure(ref _held, _heldLength, bytes.Length, int.MaxValue);
        bytes.CopyTo(_held.AsSpan(_heldLength));
        _heldLength += bytes.Length;
    }

    private static void Ensure(ref byte[] buffer, int used, int more, int cap)
    {
        int needed = used + more;
        if (needed <= buffer.Length)
        {
            return;
        }

        int size = Math.Min(Math.Max(Math.Max(needed, MinimumHeld), buffer.Length * 2), Math.Max(cap, needed));
        byte[] grown = ArrayPool<byte>.Shared.Rent(size);
        buffer.AsSpan(0, used).CopyTo(grown);
        Return(ref buffer);
        buffer = grown;
    }

    private static void Return(ref byte[] buffer)
    {
        if (buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        buffer = [];
    }
}

/// <summary>Sees each whole server-sent event a <see cref="SseUsageFilter"/> forwards (its field lines and blank line).</summary>
public interface ISseEventObserver
{
    void Observe(ReadOnlySpan<byte> sseEvent);
}
