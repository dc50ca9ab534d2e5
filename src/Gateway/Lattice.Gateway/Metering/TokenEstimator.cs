using System.Buffers;
using System.Text.Json;
using Lattice.Protocol.Metering;
using Microsoft.ML.Tokenizers;

namespace Lattice.Gateway.Metering;

/// <summary>
/// Counts tokens the gateway's own way when a target reported no usage, or a client cancelled a stream before the
/// target's report came: the same tiktoken encodings OpenAI bills with, so an estimate is close to the bill a target
/// would have sent. Every result has <see cref="Usage.Estimated"/> set.
/// </summary>
/// <remarks>
/// A singleton: each encoding's tables (several MB) are loaded once, on first use, because most gateways never
/// estimate. The tokenizers are thread-safe. This is a cold path (one call per unreported request), so it favours
/// plain code over squeezing allocations; it still reads the JSON with <see cref="Utf8JsonReader"/> and unescapes
/// strings into pooled buffers rather than building a DOM of the whole body.
/// </remarks>
public sealed class TokenEstimator
{
    public const string O200kBase = "o200k_base";
    public const string Cl100kBase = "cl100k_base";

    // The OpenAI cookbook's rule for chat models since gpt-3.5-turbo-0613: each message is wrapped in 3 tokens,
    // a name costs 1 more, and every reply is primed with 3.
    private const int TokensPerMessage = 3;
    private const int TokensPerName = 1;
    private const int ReplyPriming = 3;

    private readonly Lazy<Tokenizer> _o200k = new(() => TiktokenTokenizer.CreateForEncoding(O200kBase), LazyThreadSafetyMode.ExecutionAndPublication);
    private readonly Lazy<Tokenizer> _cl100k = new(() => TiktokenTokenizer.CreateForEncoding(Cl100kBase), LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>
    /// The encoding a model's tokens are counted in: o200k_base for gpt-4o, gpt-4.1, gpt-5 and the o-series;
    /// cl100k_base for gpt-4, gpt-3.5 and text-embedding-*; o200k_base for anything else (today's default).
    /// A provider prefix (<c>openai/gpt-4o</c>) is ignored.
    /// </summary>
    public static string EncodingFor(string model)
    {
        ArgumentNullException.ThrowIfNull(model);
        ReadOnlySpan<char> name = model.AsSpan();
        int slash = name.LastIndexOf('/');
        if (slash >= 0)
        {
            name = name[(slash + 1)..];
        }

        // gpt-4o and gpt-4.1 before gpt-4: they share its prefix but not its encoding.
        if (Starts(name, "gpt-4o") || Starts(name, "chatgpt-4o") || Starts(name, "gpt-4.1") || Starts(name, "gpt-4.5")
            || Starts(name, "gpt-5") || Starts(name, "o1") || Starts(name, "o3") || Starts(name, "o4"))
        {
            return O200kBase;
        }

        if (Starts(name, "gpt-4") || Starts(name, "gpt-3.5") || Starts(name, "gpt-35") || Starts(name, "text-embedding-"))
        {
            return Cl100kBase;
        }

        return O200kBase;
    }

    /// <summary>Tokens of a piece of text in the model's encoding.</summary>
    public int CountTokens(ReadOnlySpan<char> text, string model) => TokenizerFor(model).CountTokens(text);

    /// <summary>
    /// Estimates a chat completion: the prompt from the request's messages (text content, text parts, tool-call
    /// names and arguments, every other string field such as role and name, plus the cookbook's per-message
    /// overhead), the completion from the answer's content, refusal and tool-call arguments. With <paramref name="sse"/>
    /// the answer is the stream's events as the client received them, and the deltas are joined before counting.
    /// </summary>
    public Usage EstimateChat(ReadOnlySpan<byte> requestJson, ReadOnlySpan<byte> responseOrSseEvents, bool sse, string model)
    {
        Tokenizer tokenizer = TokenizerFor(model);
        long prompt = PromptTokens(tokenizer, requestJson);
        long completion = sse ? StreamedTokens(tokenizer, responseOrSseEvents) : AnswerTokens(tokenizer, responseOrSseEvents);
        return new Usage(prompt, completion, prompt + completion, Estimated: true);
    }

    /// <summary>
    /// Estimates an embeddings request from its <c>input</c>: a string, an array of strings, or token arrays (which
    /// count their length).
    /// </summary>
    public Usage EstimateEmbeddings(ReadOnlySpan<byte> requestJson, string model)
    {
        Tokenizer tokenizer = TokenizerFor(model);
        long prompt = 0;
        using var text = new CharBuffer();
        try
        {
            var reader = new Utf8JsonReader(requestJson);
            if (!SeekTopLevel(ref reader, "input"u8))
            {
                return new Usage(Estimated: true);
            }

            if (reader.TokenType == JsonTokenType.String)
            {
                prompt = Count(tokenizer, ref reader, text);
            }
            else if (reader.TokenType == JsonTokenType.StartArray)
            {
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                {
                    switch (reader.TokenType)
                    {
                        case JsonTokenType.String:
                            prompt += Count(tokenizer, ref reader, text);
                            break;
                        case JsonTokenType.Number:
                            prompt++;
                            break;
                        case JsonTokenType.StartArray:
                            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                            {
                                prompt++;
                                reader.Skip();
                            }

                            break;
                        default:
                            reader.Skip();
                            break;
                    }
                }
            }
        }
        catch (JsonException)
        {
            // Counted what was readable; a malformed tail adds nothing.
        }

        return new Usage(PromptTokens: prompt, TotalTokens: prompt, Estimated: true);
    }

    private Tokenizer TokenizerFor(string model) =>
        EncodingFor(model) == Cl100kBase ? _cl100k.Value : _o200k.Value;

    private static bool Starts(ReadOnlySpan<char> name, string prefix) => name.StartsWith(prefix, StringComparison.OrdinalIgnoreCase);

    private static long PromptTokens(Tokenizer tokenizer, ReadOnlySpan<byte> requestJson)
    {
        long tokens = 0;
        using var text = new CharBuffer();
        try
        {
            var reader = new Utf8JsonReader(requestJson);
            if (!SeekTopLevel(ref reader, "messages"u8) || reader.TokenType != JsonTokenType.StartArray)
            {
                return 0;
            }

            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            {
                if (reader.TokenType != JsonTokenType.StartObject)
                {
                    reader.Skip();
                    continue;
                }

                tokens += TokensPerMessage;
                while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                {
                    bool isName = reader.ValueTextEquals("name"u8);
                    bool isContent = reader.ValueTextEquals("content"u8);
                    bool isToolCalls = reader.ValueTextEquals("tool_calls"u8);
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.String)
                    {
                        tokens += Count(tokenizer, ref reader, text) + (isName ? TokensPerName : 0);
                    }
                    else if (isContent && reader.TokenType == JsonTokenType.StartArray)
                    {
                        tokens += ContentPartTokens(tokenizer, ref reader, text);
                    }
                    else if (isToolCalls && reader.TokenType == JsonTokenType.StartArray)
                    {
                        tokens += ToolCallTokens(tokenizer, ref reader, text);
                    }
                    else
                    {
                        reader.Skip();
                    }
                }
            }

            tokens += ReplyPriming;
        }
        catch (JsonException)
        {
            // A request the target rejected as malformed still cost what was readable of it.
        }

        return tokens;
    }

    /// <summary>The text of <c>{"type":"text","text":…}</c> parts; images, audio and files are not text tokens.</summary>
    private static long ContentPartTokens(Tokenizer tokenizer, ref Utf8JsonReader reader, CharBuffer text)
    {
        long tokens = 0;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.StartObject)
            {
                reader.Skip();
                continue;
            }
            tokens += StringMemberTokens(tokenizer, ref reader, text, "text"u8, "refusal"u8);
        }

        return tokens;
    }

    /// <summary>A prompt's tool calls: each function's name and arguments, counted on their own.</summary>
    private static long ToolCallTokens(Tokenizer tokenizer, ref Utf8JsonReader reader, CharBuffer text)
    {
        long tokens = 0;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.StartObject)
            {
                reader.Skip();
                continue;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                bool isFunction = reader.ValueTextEquals("function"u8);
                reader.Read();
                if (isFunction && reader.TokenType == JsonTokenType.StartObject)
                {
                    tokens += StringMemberTokens(tokenizer, ref reader, text, "arguments"u8, "name"u8);
                }
                else
                {
                    reader.Skip();
                }
            }
        }

        return tokens;
    }

    /// <summary>
    /// With the reader on an object's start: the tokens of its string members named <paramref name="first"/> or
    /// <paramref name="second"/>, each counted on its own; everything else is skipped. Leaves the reader on the object's end.
    /// </summary>
    private static long StringMemberTokens(Tokenizer tokenizer, ref Utf8JsonReader reader, CharBuffer text, ReadOnlySpan<byte> first, ReadOnlySpan<byte> second)
    {
        long tokens = 0;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            bool counted = reader.ValueTextEquals(first) || reader.ValueTextEquals(second);
            reader.Read();
            if (counted && reader.TokenType == JsonTokenType.String)
            {
                tokens += Count(tokenizer, ref reader, text);
            }
            else
            {
                reader.Skip();
            }
        }

        return tokens;
    }

    /// <summary>A complete answer: each choice's content and refusal joined into one text, its tool-call arguments into another.</summary>
    private static long AnswerTokens(Tokenizer tokenizer, ReadOnlySpan<byte> responseJson)
    {
        using var content = new CharBuffer();
        using var arguments = new CharBuffer();
        AppendChoices(responseJson, "message"u8, content, arguments);
        return tokenizer.CountTokens(content.Text) + (long)tokenizer.CountTokens(arguments.Text);
    }

    /// <summary>
    /// A stream's events: the <c>choices[].delta.content</c> (and refusal) pieces joined into one text and the
    /// tool-call argument pieces into another, each counted once — counting piece by piece would overcount wherever
    /// a token spans two deltas.
    /// </summary>
    private static long StreamedTokens(Tokenizer tokenizer, ReadOnlySpan<byte> events)
    {
        using var content = new CharBuffer();
        using var arguments = new CharBuffer();
        int lineStart = 0;
        while (lineStart < events.Length)
        {
            int lf = events[lineStart..].IndexOf((byte)'\n');
            int lineEnd = lf < 0 ? events.Length : lineStart + lf;
            ReadOnlySpan<byte> line = events[lineStart..lineEnd];
            lineStart = lineEnd + 1;
            if (line.Length > 0 && line[^1] == '\r')
            {
                line = line[..^1];
            }

            if (!line.StartsWith("data:"u8))
            {
                continue;
            }

            ReadOnlySpan<byte> data = line[(line.Length > 5 && line[5] == ' ' ? 6 : 5)..];
            if (data.Length > 0 && data[0] == '{')
            {
                AppendChoices(data, "delta"u8, content, arguments);
            }
        }

        return tokenizer.CountTokens(content.Text) + (long)tokenizer.CountTokens(arguments.Text);
    }

    /// <summary>
    /// Appends the text of every choice's <paramref name="part"/> (<c>message</c> of an answer, <c>delta</c> of a stream
    /// chunk): content and refusal to <paramref name="content"/>, tool-call arguments to <paramref name="arguments"/>.
    /// </summary>
    private static void AppendChoices(ReadOnlySpan<byte> chunk, ReadOnlySpan<byte> part, CharBuffer content, CharBuffer arguments)
    {
        try
        {
            var reader = new Utf8JsonReader(chunk);
            if (!SeekTopLevel(ref reader, "choices"u8) || reader.TokenType != JsonTokenType.StartArray)
            {
                return;
            }

            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            {
                if (reader.TokenType != JsonTokenType.StartObject)
                {
                    reader.Skip();
                    continue;
                }

                while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                {
                    bool isPart = reader.ValueTextEquals(part);
                    reader.Read();
                    if (!isPart || reader.TokenType != JsonTokenType.StartObject)
                    {
                        reader.Skip();
                        continue;
                    }

                    while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                    {
                        bool isText = reader.ValueTextEquals("content"u8) || reader.ValueTextEquals("refusal"u8);
                        bool isToolCalls = reader.ValueTextEquals("tool_calls"u8);
                        reader.Read();
                        if (isText && reader.TokenType == JsonTokenType.String)
                        {
                            content.Append(ref reader);
                        }
                        else if (isToolCalls && reader.TokenType == JsonTokenType.StartArray)
                        {
                            AppendArguments(ref reader, arguments);
                        }
                        else
                        {
                            reader.Skip();
                        }
                    }
                }
            }
        }
        catch (JsonException)
        {
            // A malformed chunk adds nothing; the rest of the stream still counts.
        }
    }

    private static void AppendArguments(ref Utf8JsonReader reader, CharBuffer arguments)
    {
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.StartObject)
            {
                reader.Skip();
                continue;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                bool isFunction = reader.ValueTextEquals("function"u8);
                reader.Read();
                if (!isFunction || reader.TokenType != JsonTokenType.StartObject)
                {
                    reader.Skip();
                    continue;
                }

                while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                {
                    bool isArguments = reader.ValueTextEquals("arguments"u8);
                    reader.Read();
                    if (isArguments && reader.TokenType == JsonTokenType.String)
                    {
                        arguments.Append(ref reader);
                    }
                    else
                    {
                        reader.Skip();
                    }
                }
            }
        }
    }

    /// <summary>Leaves the reader on the value of a top-level member; false when the body is no object or lacks it.</summary>
    private static bool SeekTopLevel(ref Utf8JsonReader reader, ReadOnlySpan<byte> name)
    {
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            return false;
        }

        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            bool match = reader.ValueTextEquals(name);
            reader.Read();
            if (match)
            {
                return true;
            }

            reader.Skip();
        }

        return false;
    }

    private static int Count(Tokenizer tokenizer, ref Utf8JsonReader reader, CharBuffer scratch)
    {
        scratch.Clear();
        scratch.Append(ref reader);
        return tokenizer.CountTokens(scratch.Text);
    }

    /// <summary>Unescaped JSON string text gathered in a pooled buffer.</summary>
    private sealed class CharBuffer : IDisposable
    {
        private char[] _chars = [];
        private int _length;

        public ReadOnlySpan<char> Text => _chars.AsSpan(0, _length);

        public void Clear() => _length = 0;

        public void Append(ref Utf8JsonReader reader)
        {
            // An unescaped string never has more UTF-16 chars than its escaped UTF-8 bytes.
            int most = reader.HasValueSequence ? checked((int)reader.ValueSequence.Length) : reader.ValueSpan.Length;
            if (_length + most > _chars.Length)
            {
                char[] grown = ArrayPool<char>.Shared.Rent(Math.Max(_length + most, Math.Max(256, _chars.Length * 2)));
                Text.CopyTo(grown);
                Return();
                _chars = grown;
            }

            _length += reader.CopyString(_chars.AsSpan(_length));
        }

        public void Dispose()
        {
            Return();
            _length = 0;
        }

        private void Return()
        {
            if (_chars.Length > 0)
            {
                ArrayPool<char>.Shared.Return(_chars);
            }

            _chars = [];
        }
    }
}
