using System.Text;

namespace Lattice.Runtime.Engines.Llama;

/// <summary>
/// Follows JSON text as a model writes it and says what must be appended to make it a complete document: the rest of
/// an escape or literal, a missing value, the closing quote, brackets and braces. The grammar guarantees the text is a
/// prefix of valid JSON; this keeps that prefix closable when the token budget runs out (budget-aware closing).
/// </summary>
/// <remarks>A value type: copying it gives an independent tracker (used to try a token before keeping it).</remarks>
internal struct JsonCloser
{
    private enum At : byte
    {
        /// <summary>Nothing yet: the document's value is still to come.</summary>
        Start,
        /// <summary>A value must follow (after <c>:</c> or after <c>,</c> in an array).</summary>
        Value,
        /// <summary>Just after <c>[</c>: a value or <c>]</c>.</summary>
        ArrayOpen,
        /// <summary>Just after <c>{</c>: a key or <c>}</c>.</summary>
        ObjectOpen,
        /// <summary>After <c>,</c> in an object: a key must follow.</summary>
        Key,
        InKey,
        /// <summary>After a key: <c>:</c> must follow.</summary>
        AfterKey,
        InString,
        Number,
        Literal,
        /// <summary>After a value: <c>,</c> or the container's end.</summary>
        AfterValue,
        /// <summary>The document is complete.</summary>
        Done,
    }

    private string _containers; // '{' or '[' per open container, innermost last
    private At _at;
    private bool _escape;
    private int _unicodeDigits; // -1: not in \u; else hex digits seen
    private string _literalRest;
    private char _lastNumberChar;

    public JsonCloser()
    {
        _containers = "";
        _at = At.Start;
        _unicodeDigits = -1;
        _literalRest = "";
    }

    /// <summary>The document is complete: nothing needs appending.</summary>
    public readonly bool Complete => _at == At.Done;

    /// <summary>Follows <paramref name="text"/>, which continues what came before.</summary>
    public void Feed(ReadOnlySpan<char> text)
    {
        foreach (var c in text)
        {
            Feed(c);
        }
    }

    private void Feed(char c)
    {
        switch (_at)
        {
            case At.InString or At.InKey:
                if (_unicodeDigits >= 0)
                {
                    _unicodeDigits = _unicodeDigits == 3 ? -1 : _unicodeDigits + 1;
                }
                else if (_escape)
                {
                    _escape = false;
                    if (c == 'u')
                    {
                        _unicodeDigits = 0;
                    }
                }
                else if (c == '\\')
                {
                    _escape = true;
                }
                else if (c == '"')
                {
                    _at = _at == At.InKey ? At.AfterKey : EndOfValue();
                }
                return;
            case At.Number:
                if (char.IsAsciiDigit(c) || c is '.' or 'e' or 'E' or '+' or '-')
                {
                    _lastNumberChar = c;
                    return;
                }
                _at = EndOfValue();
                break;
            case At.Literal:
                if (_literalRest.Length > 0 && _literalRest[0] == c)
                {
                    _literalRest = _literalRest[1..];
                    if (_literalRest.Length == 0)
                    {
                        _at = EndOfValue();
                    }
                    return;
                }
                _at = EndOfValue();
                break;
        }

        if (char.IsWhiteSpace(c))
        {
            return;
        }
        switch (_at)
        {
            case At.Start or At.Value or At.ArrayOpen:
                StartValue(c);
                break;
            case At.ObjectOpen or At.Key:
                if (c == '"')
                {
                    _at = At.InKey;
                }
                else if (c == '}' && _at == At.ObjectOpen)
                {
                    Close();
                }
                break;
            case At.AfterKey:
                if (c == ':')
                {
                    _at = At.Value;
                }
                break;
            case At.AfterValue:
                if (c == ',')
                {
                    _at = _containers[^1] == '{' ? At.Key : At.Value;
                }
                else if (c is '}' or ']')
                {
                    Close();
                }
                break;
        }
    }

    private void StartValue(char c)
    {
        switch (c)
        {
            case '{':
                _containers += '{';
                _at = At.ObjectOpen;
                break;
            case '[':
                _containers += '[';
                _at = At.ArrayOpen;
                break;
            case ']' when _at == At.ArrayOpen:
                Close();
                break;
            case '"':
                _at = At.InString;
                break;
            case 't':
                (_at, _literalRest) = (At.Literal, "rue");
                break;
            case 'f':
                (_at, _literalRest) = (At.Literal, "alse");
                break;
            case 'n':
                (_at, _literalRest) = (At.Literal, "ull");
                break;
            default:
                if (char.IsAsciiDigit(c) || c == '-')
                {
                    (_at, _lastNumberChar) = (At.Number, c);
                }
                break;
        }
    }

    private void Close()
    {
        _containers = _containers[..^1];
        _at = EndOfValue();
    }

    private readonly At EndOfValue() => _containers.Length == 0 ? At.Done : At.AfterValue;

    /// <summary>The shortest text that makes what was fed a complete JSON document.</summary>
    public readonly string Suffix()
    {
        var suffix = new StringBuilder();
        switch (_at)
        {
            case At.Done:
                return "";
            case At.Start:
                return "{}";
            case At.InString or At.InKey:
                if (_unicodeDigits >= 0)
                {
                    suffix.Append('0', 4 - _unicodeDigits);
                }
                else if (_escape)
                {
                    suffix.Append('n');
                }
                suffix.Append('"');
                if (_at == At.InKey)
                {
                    suffix.Append(":null");
                }
                break;
            case At.Number:
                if (!char.IsAsciiDigit(_lastNumberChar))
                {
                    suffix.Append('0');
                }
                break;
            case At.Literal:
                suffix.Append(_literalRest);
                break;
            case At.Value:
                suffix.Append("null");
                break;
            case At.Key:
                suffix.Append("\"\":null");
                break;
            case At.AfterKey:
                suffix.Append(":null");
                break;
        }
        for (var i = _containers.Length - 1; i >= 0; i--)
        {
            suffix.Append(_containers[i] == '{' ? '}' : ']');
        }
        return suffix.ToString();
    }
}
