using System.Text;
using System.Text.Json;
using Lattice.Gateway.OpenAi;

namespace Lattice.Gateway.Tests.OpenAi;

/// <summary>
/// The chat answer reader: one <see cref="Utf8JsonReader"/> pass per chunk, tested to hand over what a reading of the
/// same chunk as a <see cref="JsonDocument"/> finds (<see cref="DocumentReader"/>, the way it read before), and on its
/// own for what a document could not tell: lines split across writes, escapes, undecodable text.
/// </summary>
public sealed class ChatAnswerReaderTests
{
    /// <summary>Chunks a document reads without throwing, each with something for the reader to get right.</summary>
    public static TheoryData<string> Chunks => new(
    [
        """{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}""",
        """{"choices":[{"index":0,"delta":{"content":"plain"}}]}""",
        """{"choices":[{"index":0,"delta":{"content":"a\"b\\c\nd\u00e9\u2028\ud83d\ude00<>&'\/\t\u0001"}}]}""",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"raw é 😀 \u00a0\"}}]}",
        """{"choices":[{"finish_reason":"stop","index":0,"delta":{"content":"finish first in the text"}}]}""",
        """{"choices":[{"index":0,"delta":{"content":null,"refusal":"I can't \u00e9"},"finish_reason":null}]}""",
        """{"choices":[{"index":0,"delta":{},"finish_reason":"length","stop_reason":"STOP"}]}""",
        """{"choices":[{"index":0,"delta":{},"finish_reason":"weird","stop_reason":7}]}""",
        """{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}""",
        """{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get","arguments":""}}]}}]}""",
        """{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]}}]}""",
        """{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\":\"Par\u00e9s\"}"}}]}}]}""",
        """{"choices":[{"index":0,"delta":{"tool_calls":[{"function":{"arguments":"no index"}},{"index":1,"id":"call_b","function":{"name":"two","arguments":"{}"}}]}}]}""",
        """{"choices":[{"index":0,"delta":{"tool_calls":[{"index":-1,"index":5,"id":"call_z","function":{"name":"a"},"function":{"name":"b","arguments":"{\"q\":1}"}},{"index":1.5,"id":"call_y","function":{"name":"c","arguments":"[]"}},{"index":4294967296,"id":"call_w","function":{"name":"d"}}]}}]}""",
        """{"choices":[{"index":0,"delta":{"tool_calls":[{"index":7,"function":{"name":"no id","arguments":"{}"}},{"index":8,"id":"call_f","function":"not an object"}]}}]}""",
        """{"choices":[{"delta":{"content":"first"}}],"choices":[{"delta":{"content":"second"},"delta":{"content":"third","content":null,"refusal":"r1","refusal":"r2"}}]}""",
        """{"cho\u0069ces":[{"d\u0065lta":{"c\u006fntent":"escaped names"}}]}""",
        """{"x":{"choices":[{"delta":{"content":"nested, not read"}}]},"choices":[{"index":0,"delta":{"content":"read","extra":{"content":"no"}}},{"index":1,"delta":{"content":"second choice"}}]}""",
        """{"choices":{"0":1}}""",
        """{"choices":[{"delta":"x","finish_reason":3}]}""",
        """{"choices":[{"message":{"content":"not in a chunk"},"delta":{"content":7}}]}""",
        """{"choices":[{"delta":{"content":"with a null error"}}],"error":null}""",
        """[1,2]""",
        "\"text\"",
        "{\"x\":" + new string('[', 70) + new string(']', 70) + ",\"choices\":[{\"delta\":{\"content\":\"too deep\"}}]}",
        """{"choices":[{"delta":{"content":"cut""",
        """{"choices":[{"delta":{"content":"x"}}]} trailing""",
    ]);

    [Theory]
    [MemberData(nameof(Chunks))]
    public void A_chunk_is_read_as_a_document_reads_it(string chunk)
    {
        var expected = new Recorder();
        DocumentReader.ReadLine(Encoding.UTF8.GetBytes(chunk), expected, "delta");
        var actual = Read($"data: {chunk}\n\n");

        Assert.Equal(expected.Calls, actual.Calls);
    }

    [Theory]
    [MemberData(nameof(Chunks))]
    public void A_completion_is_read_as_a_document_reads_it(string chunk)
    {
        var completion = chunk.Replace("\"delta\"", "\"message\"", StringComparison.Ordinal);
        var expected = new Recorder();
        var expectedRead = DocumentReader.ReadCompletion(Encoding.UTF8.GetBytes(completion), expected);
        var reader = new ChatAnswerReader();
        Write(reader, completion);
        var actual = new Recorder();

        Assert.Equal(expectedRead, reader.ReadCompletion(actual));
        Assert.Equal(expected.Calls, actual.Calls);
    }

    [Fact]
    public void Escaped_text_is_handed_over_unescaped_as_utf8()
    {
        var recorder = Read("""data: {"choices":[{"delta":{"content":"a\"b\\c\nd\u00e9\ud83d\ude00"}}]}""" + "\n");

        Assert.Equal(["text a\"b\\c\ndé😀"], recorder.Calls);
    }

    [Fact]
    public void A_line_split_across_writes_waits_for_its_end()
    {
        var reader = new ChatAnswerReader();
        var recorder = new Recorder();
        var stream = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\r\n\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\ndata: [DONE]\n\n";
        var bytes = Encoding.UTF8.GetBytes(stream);

        // Seven bytes a write: every line arrives in pieces, some cut inside a multi-byte escape or the [DONE].
        for (var at = 0; at < bytes.Length; at += 7)
        {
            var piece = bytes.AsSpan(at, Math.Min(7, bytes.Length - at));
            piece.CopyTo(reader.Writer.GetSpan(piece.Length));
            reader.Writer.Advance(piece.Length);
            reader.ReadEvents(recorder);
        }

        Assert.Equal(["text Hel", "text lo"], recorder.Calls);
        Assert.True(reader.SawDone);
        Assert.True(reader.Received.IsEmpty);
    }

    [Fact]
    public void Tool_call_arguments_split_across_chunks_follow_their_call()
    {
        var recorder = Read(
            """data: {"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"weather","arguments":""}}]}}]}""" + "\n\n" +
            """data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}""" + "\n\n" +
            """data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"time","arguments":"{}"}}]}}]}""" + "\n\n" +
            """data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}""" + "\n\n" +
            """data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}""" + "\n\n" +
            """data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}""" + "\n\n" +
            "data: [DONE]\n\n");

        Assert.Equal(
        [
            "start 0 call_a weather",
            "args 0 {\"city\":",
            "start 1 call_b time",
            "args 1 {}",
            "args 0 \"Paris\"}",
            "finish tool_calls ",
        ], recorder.Calls);
    }

    [Fact]
    public void The_usage_chunk_and_done_hand_nothing_over_and_done_is_seen()
    {
        var reader = new ChatAnswerReader();
        var recorder = new Recorder();
        Write(reader, """data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}""" + "\n\n");
        reader.ReadEvents(recorder);
        Assert.False(reader.SawDone);

        Write(reader, "data:[DONE]\n\n");
        reader.ReadEvents(recorder);

        Assert.Empty(recorder.Calls);
        Assert.True(reader.SawDone);
    }

    [Fact]
    public void An_error_chunk_fails_the_stream_and_nothing_after_it_is_read()
    {
        var recorder = Read(
            """data: {"choices":[{"delta":{"content":"partial"}}]}""" + "\n\n" +
            """data: {"error":{"message":"boom \u00e9","type":"server_error"},"choices":[{"delta":{"content":"with the error"}}]}""" + "\n\n" +
            """data: {"choices":[{"delta":{"content":"after"}}]}""" + "\n\n" +
            "data: [DONE]\n\n", out var reader);

        Assert.Equal(["text partial", """failed {"message":"boom \u00e9","type":"server_error"}"""], recorder.Calls);
        Assert.True(reader.SawError);
        Assert.False(reader.SawDone);
    }

    [Theory]
    [InlineData("""{"choices":[{"delta":{"content":"\ud800"}}]}""")]
    [InlineData("""{"choices":[{"delta":{"content":"ok","refusal":"\udc00"}}]}""")]
    [InlineData("""{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"\ud83d","function":{"name":"f"}}]}}]}""")]
    [InlineData("""{"choices":[{"delta":{},"finish_reason":"\ud800"}]}""")]
    [InlineData("""{"ch\ud800":1,"choices":[{"delta":{"content":"x"}}]}""")]
    public void Text_that_cannot_be_decoded_fails_the_stream(string chunk)
    {
        var recorder = Read("data: {\"choices\":[{\"delta\":{\"content\":\"before\"}}]}\n\n" + $"data: {chunk}\n\ndata: [DONE]\n\n", out var reader);

        Assert.Equal(["text before", "failed undefined"], recorder.Calls);
        Assert.True(reader.SawError);
    }

    [Fact]
    public void Raw_bytes_that_are_not_utf8_fail_the_stream()
    {
        var reader = new ChatAnswerReader();
        var recorder = new Recorder();
        byte[] chunk = [.. "data: {\"choices\":[{\"delta\":{\"content\":\"a"u8, 0xC3, 0x28, .. "\"}}]}\n\n"u8];
        chunk.CopyTo(reader.Writer.GetSpan(chunk.Length));
        reader.Writer.Advance(chunk.Length);

        reader.ReadEvents(recorder);

        Assert.Equal(["failed undefined"], recorder.Calls);
    }

    [Fact]
    public void Comments_event_names_and_lines_that_are_not_json_pass()
    {
        var recorder = Read(": keep-alive\nevent: chunk\r\ndata: not json\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"yes\"}}]}\r\n\r\n", out var reader);

        Assert.Equal(["text yes"], recorder.Calls);
        Assert.False(reader.SawError);
    }

    [Fact]
    public void A_whole_completion_hands_over_its_text_tools_and_finish()
    {
        var reader = new ChatAnswerReader();
        Write(reader, """{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"Sure: \u00e9","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},{"id":"call_2","type":"function","function":{"name":"g","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}""");
        var recorder = new Recorder();

        Assert.True(reader.ReadCompletion(recorder));
        Assert.Equal(["text Sure: é", "start 0 call_1 f", "args 0 {\"a\":1}", "start 1 call_2 g", "args 1 {}", "finish tool_calls "], recorder.Calls);
    }

    [Fact]
    public void Reading_a_chunk_allocates_nothing_once_the_stream_has_started()
    {
        var reader = new ChatAnswerReader();
        var handler = new Discard();
        var text = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" said:\"},\"finish_reason\":null}]}\n\n"u8.ToArray();
        var escaped = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\\u00e9\\n\"}}]}\n\n"u8.ToArray();
        var arguments = "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]}}]}\n\n"u8.ToArray();
        Push(reader, handler, "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"function\":{\"name\":\"f\"}}]}}]}\n\n"u8.ToArray());
        Push(reader, handler, text);
        Push(reader, handler, escaped);
        Push(reader, handler, arguments);

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            Push(reader, handler, text);
            Push(reader, handler, escaped);
            Push(reader, handler, arguments);
        }
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        Assert.Equal(101 * 3 + 1, handler.Calls);
    }

    private static void Push(ChatAnswerReader reader, IChatAnswerHandler handler, byte[] chunk)
    {
        chunk.CopyTo(reader.Writer.GetSpan(chunk.Length));
        reader.Writer.Advance(chunk.Length);
        reader.ReadEvents(handler);
    }

    /// <summary>Counts the calls and keeps nothing.</summary>
    private sealed class Discard : IChatAnswerHandler
    {
        public int Calls { get; private set; }

        public void Text(ReadOnlySpan<byte> text) => Calls++;

        public void Refusal(ReadOnlySpan<byte> text) => Calls++;

        public void ToolCallStarted(int index, string id, string name) => Calls++;

        public void ToolCallArguments(int index, ReadOnlySpan<byte> fragment) => Calls++;

        public void Finished(string reason, string? stopReason) => Calls++;

        public void Failed(JsonElement error) => Calls++;
    }

    [Fact]
    public void Disposing_gives_the_bytes_back()
    {
        var reader = new ChatAnswerReader();
        Write(reader, "data: {\"choices\":[{\"delta\":{\"content\":\"kept\"}}]}");
        Assert.False(reader.Received.IsEmpty);

        reader.Dispose();

        Assert.True(reader.Received.IsEmpty);
    }

    private static Recorder Read(string stream) => Read(stream, out _);

    private static Recorder Read(string stream, out ChatAnswerReader reader)
    {
        reader = new ChatAnswerReader();
        Write(reader, stream);
        var recorder = new Recorder();
        reader.ReadEvents(recorder);
        return recorder;
    }

    private static void Write(ChatAnswerReader reader, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        bytes.CopyTo(reader.Writer.GetSpan(bytes.Length));
        reader.Writer.Advance(bytes.Length);
    }

    /// <summary>Every call as a line of text.</summary>
    private sealed class Recorder : IChatAnswerHandler
    {
        public List<string> Calls { get; } = [];

        public void Text(ReadOnlySpan<byte> text) => Calls.Add("text " + Encoding.UTF8.GetString(text));

        public void Refusal(ReadOnlySpan<byte> text) => Calls.Add("refusal " + Encoding.UTF8.GetString(text));

        public void ToolCallStarted(int index, string id, string name) => Calls.Add($"start {index} {id} {name}");

        public void ToolCallArguments(int index, ReadOnlySpan<byte> fragment) => Calls.Add($"args {index} {Encoding.UTF8.GetString(fragment)}");

        public void Finished(string reason, string? stopReason) => Calls.Add($"finish {reason} {stopReason}");

        public void Failed(JsonElement error) => Calls.Add("failed " + (error.ValueKind == JsonValueKind.Undefined ? "undefined" : error.GetRawText()));
    }

    /// <summary>How the reader read a chunk before: a <see cref="JsonDocument"/>, asked for each member by name.</summary>
    private static class DocumentReader
    {
        public static void ReadLine(byte[] data, Recorder handler, string contentProperty)
        {
            var started = new HashSet<int>();
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
                    handler.Failed(error);
                    return;
                }
                ReadChoice(root, contentProperty, handler, started);
            }
            catch (JsonException)
            {
            }
        }

        public static bool ReadCompletion(byte[] data, Recorder handler)
        {
            try
            {
                var reader = new Utf8JsonReader(data);
                using var completion = JsonDocument.ParseValue(ref reader);
                if (completion.RootElement.ValueKind != JsonValueKind.Object)
                {
                    return false;
                }
                ReadChoice(completion.RootElement, "message", handler, []);
                return true;
            }
            catch (JsonException)
            {
                return false;
            }
        }

        private static void ReadChoice(JsonElement root, string contentProperty, Recorder handler, HashSet<int> started)
        {
            if (!root.TryGetProperty("choices", out var choices) || choices.ValueKind != JsonValueKind.Array || choices.GetArrayLength() == 0)
            {
                return;
            }
            var choice = choices[0];
            if (choice.ValueKind != JsonValueKind.Object)
            {
                return;
            }
            if (choice.TryGetProperty(contentProperty, out var message) && message.ValueKind == JsonValueKind.Object)
            {
                if (message.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String && content.GetString() is { Length: > 0 } text)
                {
                    handler.Calls.Add("text " + text);
                }
                if (message.TryGetProperty("refusal", out var refusal) && refusal.ValueKind == JsonValueKind.String && refusal.GetString() is { Length: > 0 } refused)
                {
                    handler.Calls.Add("refusal " + refused);
                }
                if (message.TryGetProperty("tool_calls", out var calls) && calls.ValueKind == JsonValueKind.Array)
                {
                    var position = 0;
                    foreach (var call in calls.EnumerateArray())
                    {
                        var index = call.ValueKind == JsonValueKind.Object && call.TryGetProperty("index", out var indexElement)
                            && indexElement.ValueKind == JsonValueKind.Number && indexElement.TryGetInt32(out var i) ? i : position;
                        position++;
                        if (call.ValueKind != JsonValueKind.Object)
                        {
                            continue;
                        }
                        call.TryGetProperty("function", out var function);
                        var hasFunction = function.ValueKind == JsonValueKind.Object;
                        if (!started.Contains(index))
                        {
                            if (!call.TryGetProperty("id", out var id) || id.ValueKind != JsonValueKind.String
                                || !hasFunction || !function.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String)
                            {
                                continue;
                            }
                            started.Add(index);
                            handler.ToolCallStarted(index, id.GetString()!, name.GetString()!);
                        }
                        if (hasFunction && function.TryGetProperty("arguments", out var arguments) && arguments.ValueKind == JsonValueKind.String
                            && arguments.GetString() is { Length: > 0 } fragment)
                        {
                            handler.Calls.Add($"args {index} {fragment}");
                        }
                    }
                }
            }
            if (choice.TryGetProperty("finish_reason", out var finish) && finish.ValueKind == JsonValueKind.String)
            {
                var stop = choice.TryGetProperty("stop_reason", out var stopReason) && stopReason.ValueKind == JsonValueKind.String ? stopReason.GetString() : null;
                handler.Finished(finish.GetString()!, stop);
            }
        }
    }
}
