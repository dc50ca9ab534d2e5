using System.Buffers;

namespace Lattice.Protocol;

/// <summary>
/// Replaces the string value of every <c>"model"</c> member at object depth 1 or 2 of a JSON text as it streams by,
/// so the client is told the model id it asked for, not the name an upstream or engine answered with. Depth 2 covers
/// answers that nest the model one object down (Anthropic's <c>message_start</c> carries it in <c>message</c>).
/// </summary>
/// <remarks>
/// The bytes may arrive split anywhere (inside a key, an escape, the value); the scanner keeps its state between
/// writes. It tracks only what it must: whether it is inside a string, the nesting depth, and — at depth 1 and 2 —
/// whether the next string is a key. Text inside strings is never matched, so a tool call's arguments holding
/// <c>\"model\":\"x\"</c> stay as they are. Unchanged stretches are written as whole slices; strings and deep
/// structures are crossed with vectorized searches. A value that is not a string (<c>null</c>) is left alone.
/// Not thread-safe: one instance per answer (or per event, after <see cref="Reset"/>).
///
/// It can also note where one other top-level member's value starts (<see cref="WatchedValueOffset"/>): the metered
/// answer's <c>usage</c>, so that reading it costs a walk of that value, not a second walk of the whole answer.
/// </remarks>
public sealed class ModelFieldRewriter
{
    private static readonly SearchValues<byte> s_inString = SearchValues.Create("\"\\"u8);
    // At depth 1 and 2 the separators matter (they tell keys from values); deeper only nesting and strings do.
    private static readonly SearchValues<byte> s_shallow = SearchValues.Create("\"{}[],:"u8);
    private static readonly SearchValues<byte> s_deep = SearchValues.Create("\"{}[]"u8);

    private readonly byte[] _value;
    private readonly byte[]? _watched;

    private int _depth;
    // Whether the container at depth 1 and 2 is an object (index by depth; deeper ones are not tracked).
    private bool _object1;
    private bool _object2;
    private bool _inString;
    private bool _escaped;
    private bool _expectKey;
    // How many bytes of `model` the key being read has matched; -1 when this string is not a candidate key.
    private int _keyMatched = -1;
    private Stage _stage;
    // Inside the original value, whose bytes are dropped.
    private bool _dropping;
    // How many bytes of the watched name the depth-1 key being read has matched; -1 when it is not a candidate.
    private int _watchMatched = -1;
    // The watched key has just closed: its colon comes next.
    private bool _watchedKeyRead;
    // Bytes of the text written before the current chunk.
    private long _consumed;

    private enum Stage : byte
    {
        None,
        AfterKey,
        AfterColon,
    }

    /// <param name="value">The replacement as a JSON string token, quotes included (see <see cref="Quote"/>).</param>
    /// <param name="watchedMember">
    /// A top-level member name (UTF-8, as written unescaped, e.g. <c>usage</c>) whose value's offset to note; null for none.
    /// </param>
    public ModelFieldRewriter(byte[] value, byte[]? watchedMember = null)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (value.Length < 2 || value[0] != '"' || value[^1] != '"')
        {
            throw new ArgumentException("The replacement must be a JSON string token, quotes included.", nameof(value));
        }
        _value = value;
        _watched = watchedMember is { Length: > 0 } ? watchedMember : null;
    }

    /// <summary>
    /// Where, in the bytes written so far, the value of the first top-level member named as watched starts (the byte
    /// after its colon; whitespace may follow); −1 until one is seen, and always for a key spelled with escapes.
    /// </summary>
    public long WatchedValueOffset { get; private set; } = -1;

    /// <summary>The replacement value: the JSON string token, quotes included.</summary>
    public ReadOnlySpan<byte> Replacement => _value;

    /// <summary>A model id as a JSON string token (quotes included), escaped as JSON requires.</summary>
    public static byte[] Quote(string model)
    {
        var encoded = System.Text.Json.JsonEncodedText.Encode(model, System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping).EncodedUtf8Bytes;
        var token = new byte[encoded.Length + 2];
        token[0] = (byte)'"';
        encoded.CopyTo(token.AsSpan(1));
        token[^1] = (byte)'"';
        return token;
    }

    /// <summary>Forgets all state, to start a new JSON text (the next server-sent event).</summary>
    public void Reset()
    {
        _depth = 0;
        _object1 = _object2 = false;
        _inString = _escaped = _expectKey = _dropping = false;
        _keyMatched = -1;
        _stage = Stage.None;
        _watchMatched = -1;
        _watchedKeyRead = false;
        _consumed = 0;
        WatchedValueOffset = -1;
    }

    /// <summary>Writes <paramref name="chunk"/> to <paramref name="output"/>, with the model values replaced.</summary>
    public void Write(ReadOnlySpan<byte> chunk, IBufferWriter<byte> output)
    {
        ArgumentNullException.ThrowIfNull(output);
        var emitFrom = 0;
        var i = 0;
        while (i < chunk.Length)
        {
            if (_inString)
            {
                if (_escaped)
                {
                    // The byte after a backslash never ends the string. A key spelled with escapes is not matched.
                    _escaped = false;
                    _keyMatched = -1;
                    _watchMatched = -1;
                    i++;
                    continue;
                }
                var found = chunk[i..].IndexOfAny(s_inString);
                var run = found < 0 ? chunk[i..] : chunk.Slice(i, found);
                if (_keyMatched >= 0)
                {
                    _keyMatched = "model"u8[_keyMatched..].StartsWith(run) ? _keyMatched + run.Length : -1;
                }
                if (_watchMatched >= 0)
                {
                    _watchMatched = _watched.AsSpan(_watchMatched).StartsWith(run) ? _watchMatched + run.Length : -1;
                }
                if (found < 0)
                {
                    break;
                }
                i += found;
                if (chunk[i] == '\\')
                {
                    _escaped = true;
                    i++;
                    continue;
                }
                // The closing quote.
                _inString = false;
                i++;
                if (_dropping)
                {
                    _dropping = false;
                    emitFrom = i;
                }
                else if (_keyMatched == 5)
                {
                    _stage = Stage.AfterKey;
                }
                _watchedKeyRead = _watchMatched == _watched?.Length;
                _keyMatched = -1;
                _watchMatched = -1;
                continue;
            }

            var next = chunk[i..].IndexOfAny(_depth <= 2 ? s_shallow : s_deep);
            if (next < 0)
            {
                break;
            }
            i += next;
            switch (chunk[i])
            {
                case (byte)'"':
                    _inString = true;
                    if (_stage == Stage.AfterColon)
                    {
                        // The value to replace: what came before it leaves as it was, then the replacement.
                        output.Write(chunk[emitFrom..i]);
                        output.Write(_value);
                        _dropping = true;
                    }
                    else if (_expectKey)
                    {
                        _keyMatched = 0;
                        if (_depth == 1 && _watched is not null && WatchedValueOffset < 0)
                        {
                            _watchMatched = 0;
                        }
                    }
                    _expectKey = false;
                    _stage = Stage.None;
                    break;
                case (byte)'{':
                    _depth++;
                    SetObject(true);
                    _expectKey = _depth <= 2;
                    _stage = Stage.None;
                    break;
                case (byte)'[':
                    _depth++;
                    SetObject(false);
                    _expectKey = false;
                    _stage = Stage.None;
                    break;
                case (byte)'}':
                case (byte)']':
                    _depth = Math.Max(0, _depth - 1);
                    _expectKey = false;
                    _stage = Stage.None;
                    break;
                case (byte)',':
                    _expectKey = _depth == 1 ? _object1 : _depth == 2 && _object2;
                    _stage = Stage.None;
                    break;
                default: // ':'
                    _stage = _stage == Stage.AfterKey ? Stage.AfterColon : Stage.None;
                    _expectKey = false;
                    if (_watchedKeyRead)
                    {
                        WatchedValueOffset = _consumed + i + 1;
                    }
                    break;
            }
            // Only a colon may follow the watched key; anything else and it was not one (a string in an array).
            _watchedKeyRead = false;
            i++;
        }

        if (!_dropping && emitFrom < chunk.Length)
        {
            output.Write(chunk[emitFrom..]);
        }
        _consumed += chunk.Length;
    }

    private void SetObject(bool isObject)
    {
        if (_depth == 1)
        {
            _object1 = isObject;
        }
        else if (_depth == 2)
        {
            _object2 = isObject;
        }
    }
}
