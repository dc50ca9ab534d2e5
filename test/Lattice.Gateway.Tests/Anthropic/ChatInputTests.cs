using System.Text;
using System.Text.Json.Nodes;
using Lattice.Gateway.Anthropic;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Tasks;
using Lattice.Testing;

namespace Lattice.Gateway.Tests.Anthropic;

/// <summary>
/// The translator's chat body is the chat task's input without a second reading: tested to be what reading it as a
/// client's chat body (UTF-8, JSON, the chat schema, model, stream, usage, max tokens) would have made of it.
/// </summary>
public sealed class ChatInputTests
{
    private static readonly TaskClass Chat = ChatTask();

    /// <summary>Every Anthropic request of the golden tables that translates, and a few with escapes and edges.</summary>
    public static TheoryData<string> Requests()
    {
        var data = new TheoryData<string>();
        var golden = Path.Combine(RepoPaths.RepoRoot, "test", "Lattice.Gateway.Tests", "Anthropic", "Golden");
        foreach (var file in Directory.GetFiles(Path.Combine(golden, "requests"), "*.json").Concat(Directory.GetFiles(Path.Combine(golden, "answers"), "*.json")).Order(StringComparer.Ordinal))
        {
            var body = JsonNode.Parse(File.ReadAllText(file))!["anthropic"]!;
            data.Add(body.ToJsonString());
            body["stream"] = true;
            data.Add(body.ToJsonString());
        }
        data.Add("""{"model":"lovelace:b\u00e9nch \"q\"","max_tokens":9007199254740993,"system":"s\"\\\n\u2028\ud83d\ude00<>&'","messages":[{"role":"user","content":[{"type":"text","text":"\u00e9\t\u0001"},{"type":"text","text":"x"}]}],"temperature":1e0,"top_p":0.0,"metadata":{"user_id":"u\u00e9"},"stop_sequences":["a","\n","c","d"],"stream":true}""");
        data.Add("""{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"a"}],"stream":null,"metadata":{"user_id":null}}""");
        data.Add(Deep(63));
        return data;
    }

    [Theory]
    [MemberData(nameof(Requests))]
    public void The_chat_input_is_what_reading_the_chat_body_makes_of_it(string anthropic)
    {
        var (translated, error) = MessagesRequest.Translate(Encoding.UTF8.GetBytes(anthropic));
        if (translated is null)
        {
            // A refused request never gets this far.
            Assert.NotEqual(0, error.Status);
            return;
        }

        var trusted = translated.ChatInput();
        var (read, readError) = TaskInputReader.ReadJson(Chat, translated.ChatBody, translated.ChatBody.Length);

        Assert.True(read is not null, readError.Message);
        Assert.Same(translated.ChatBody, trusted.Body);
        Assert.Equal(
            (read.Length, read.Model, read.Stream, read.IncludeUsage, read.MaxTokens, read.ContentType, read.ModelValueStart, read.ModelValueLength),
            (trusted.Length, trusted.Model, trusted.Stream, trusted.IncludeUsage, trusted.MaxTokens, trusted.ContentType, trusted.ModelValueStart, trusted.ModelValueLength));
    }

    [Fact]
    public void An_input_schema_one_level_too_deep_for_a_chat_body_is_refused_naming_it()
    {
        Assert.NotNull(MessagesRequest.Translate(Encoding.UTF8.GetBytes(Deep(63))).Request);

        var (translated, error) = MessagesRequest.Translate(Encoding.UTF8.GetBytes(Deep(64)));

        Assert.Null(translated);
        Assert.Equal(400, error.Status);
        Assert.Equal("tools.0.input_schema", error.Param);
        Assert.Equal("tools.0.input_schema: nested too deeply (a chat body nests at most 64 levels).", error.Message);
    }

    [Theory]
    [InlineData("""{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"\ud800"}]}""", "A string holds an escaped UTF-16 surrogate (\\uD800–\\uDFFF) without its pair.")]
    [InlineData("""{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"a"}],"tools":[{"name":"t","input_schema":{"\udc00":1}}]}""", "A string holds an escaped UTF-16 surrogate (\\uD800–\\uDFFF) without its pair.")]
    [InlineData("""{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"a\u00"}]}""", null)]
    public void Text_no_string_can_hold_is_a_400_before_translation(string anthropic, string? message)
    {
        var (translated, error) = MessagesRequest.Translate(Encoding.UTF8.GetBytes(anthropic));

        Assert.Null(translated);
        Assert.Equal(400, error.Status);
        if (message is not null)
        {
            Assert.Equal(message, error.Message);
        }
    }

    [Fact]
    public void Bytes_that_are_not_utf8_are_a_400_before_translation()
    {
        byte[] body = [.. """{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"a"""u8, 0xC3, 0x28, .. "\"}]}"u8];

        var (translated, error) = MessagesRequest.Translate(body);

        Assert.Null(translated);
        Assert.Equal(400, error.Status);
        Assert.Equal("The request body is not valid UTF-8.", error.Message);
    }

    /// <summary>A request whose deepest array (in a tool's input_schema) is at <paramref name="depth"/> levels.</summary>
    private static string Deep(int depth) =>
        """{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"a"}],"tools":[{"name":"t","input_schema":{"a":"""
        + new string('[', depth - 4) + new string(']', depth - 4) + "}}]}";

    private static TaskClass ChatTask()
    {
        var entity = BuiltInTaskClasses.All(DateTimeOffset.UnixEpoch).Single(t => t.Name == BuiltInTaskClasses.ChatCompletions);
        return new TaskClass(entity.Name, InputSchema.TryCreate(entity.InputSchema, out _)!, entity.Streams, TaskContentKind.Json,
            entity.UpstreamPath, entity.UsagePath, true, DateTimeOffset.UnixEpoch);
    }
}
