using System.Text;
using System.Text.Json.Nodes;
using Lattice.Gateway.Anthropic;
using Lattice.Gateway.Dispatch;
using Lattice.Gateway.Metering;
using Lattice.Protocol.Metering;
using Lattice.Testing;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Time.Testing;

namespace Lattice.Gateway.Tests.Anthropic;

/// <summary>
/// The golden translation tables in <c>Anthropic/Golden</c>, one case a file. <c>requests/*.json</c>: an Anthropic
/// Messages body (<c>anthropic</c>) and the chat body <see cref="MessagesRequest.Translate"/> must make of it
/// (<c>chat</c>), or the 400 it must give (<c>error</c>). <c>answers/*.json</c>: the Anthropic request, the chat
/// target's answer — a completion (<c>chat</c>) or a stream's chunks (<c>chat_sse</c>) — and the usage the dispatch
/// metered; then what the <see cref="MessagesSink"/> tells the client: a Message (<c>message</c>), or the SSE
/// transcript (<c>events</c>) compared event by event.
/// </summary>
public sealed class GoldenTranslationTests
{
    private static readonly string Root = Path.Combine(RepoPaths.RepoRoot, "test", "Lattice.Gateway.Tests", "Anthropic", "Golden");

    public static TheoryData<string> Requests => Cases("requests");

    public static TheoryData<string> Answers => Cases("answers");

    private static TheoryData<string> Cases(string folder)
    {
        var data = new TheoryData<string>();
        foreach (var file in Directory.GetFiles(Path.Combine(Root, folder), "*.json").Order(StringComparer.Ordinal))
        {
            data.Add(Path.GetFileNameWithoutExtension(file));
        }
        return data;
    }

    private static JsonObject Load(string folder, string name) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(Root, folder, name + ".json")))!.AsObject();

    /// <summary>A JSON text in one spelling (compact, escaping only what JSON must), so equal JSON compares equal byte for byte.</summary>
    private static string Canonical(JsonNode? node) => node?.ToJsonString(Readable) ?? "null";

    private static readonly System.Text.Json.JsonSerializerOptions Readable = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static string Canonical(string json) => Canonical(JsonNode.Parse(json));

    [Fact]
    public void The_tables_hold_at_least_22_cases()
    {
        var requests = Directory.GetFiles(Path.Combine(Root, "requests"), "*.json").Length;
        var answers = Directory.GetFiles(Path.Combine(Root, "answers"), "*.json").Length;
        Assert.True(requests + answers >= 22, $"{requests} request and {answers} answer cases");
    }

    [Theory]
    [MemberData(nameof(Requests))]
    public void An_anthropic_request_becomes_this_chat_body(string name)
    {
        var golden = Load("requests", name);
        var sent = Encoding.UTF8.GetBytes(golden["anthropic"]!.ToJsonString());
        var forCounting = golden["for_counting"]?.GetValue<bool>() ?? false;

        var (translated, error) = MessagesRequest.Translate(sent, forCounting);

        if (golden["error"] is JsonObject expectedError)
        {
            Assert.Null(translated);
            Assert.Equal(expectedError["status"]!.GetValue<int>(), error.Status);
            Assert.Equal(expectedError["type"]!.GetValue<string>(), AnthropicErrors.TypeFor(error.Status));
            Assert.Equal(expectedError["message"]!.GetValue<string>(), error.Message);
            Assert.Equal(expectedError["param"]?.GetValue<string>(), error.Param);
            return;
        }
        Assert.True(translated is not null, error.Message);
        Assert.Equal(Canonical(golden["chat"]), Canonical(Encoding.UTF8.GetString(translated.ChatBody)));
    }

    [Theory]
    [MemberData(nameof(Answers))]
    public async Task A_chat_answer_becomes_this_anthropic_answer(string name)
    {
        var golden = Load("answers", name);
        var (request, error) = MessagesRequest.Translate(Encoding.UTF8.GetBytes(golden["anthropic"]!.ToJsonString()));
        Assert.True(request is not null, error.Message);

        var context = new DefaultHttpContext { TraceIdentifier = "req_golden" };
        using var body = new MemoryStream();
        context.Response.Body = body;
        var sink = new MessagesSink(context, request, new FakeTimeProvider());
        var sse = golden["chat_sse"] is JsonArray;
        sink.Start(StatusCodes.Status200OK, sse ? "text/event-stream" : "application/json", null, sse, native: false);
        if (golden["chat_sse"] is JsonArray chunks)
        {
            foreach (var chunk in chunks)
            {
                // Each chunk as the relay hands it over: one event, then a flush.
                var data = chunk is JsonValue v && v.TryGetValue<string>(out var text) ? text : chunk!.ToJsonString();
                Write(sink, $"data: {data}\n\n");
                Assert.True(await sink.FlushAsync(CancellationToken.None));
            }
        }
        else
        {
            Write(sink, golden["chat"]!.ToJsonString());
            Assert.True(await sink.FlushAsync(CancellationToken.None));
        }
        var usage = golden["usage"]!;
        var metered = new Usage(
            PromptTokens: usage["prompt_tokens"]!.GetValue<long>(),
            CompletionTokens: usage["completion_tokens"]!.GetValue<long>(),
            TotalTokens: usage["prompt_tokens"]!.GetValue<long>() + usage["completion_tokens"]!.GetValue<long>(),
            CachedTokens: usage["cached_tokens"]?.GetValue<long>() ?? 0);
        await sink.CompleteAsync(new DispatchOutcome
        {
            Failure = DispatchFailure.None,
            ServedBy = new Candidate(ServedByKinds.Upstream, "offer_golden", CapacityClasses.Hosted, "upstream-model", Prices.Free, null!),
            HttpStatus = StatusCodes.Status200OK,
            Sse = sse,
            Usage = metered,
        });
        await context.Response.BodyWriter.FlushAsync();
        var written = Encoding.UTF8.GetString(body.ToArray());

        if (golden["message"] is JsonObject message)
        {
            Assert.Equal(StatusCodes.Status200OK, context.Response.StatusCode);
            Assert.Equal("application/json", context.Response.ContentType);
            Assert.Equal(Canonical(message), Canonical(written));
            return;
        }
        Assert.Equal(StatusCodes.Status200OK, context.Response.StatusCode);
        Assert.Equal("text/event-stream; charset=utf-8", context.Response.ContentType);
        var expected = golden["events"]!.AsArray().Select(e => $"event: {e!["event"]!.GetValue<string>()}\ndata: {Canonical(e["data"])}").ToList();
        var actual = Events(written);
        for (var i = 0; i < Math.Min(expected.Count, actual.Count); i++)
        {
            Assert.Equal($"#{i} {expected[i]}", $"#{i} {actual[i]}");
        }
        Assert.Equal(expected.Count, actual.Count);
    }

    private static void Write(IResponseSink sink, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        bytes.CopyTo(sink.Writer.GetSpan(bytes.Length));
        sink.Writer.Advance(bytes.Length);
    }

    /// <summary>The SSE events of a transcript, each exactly <c>event: NAME\ndata: JSON</c> and ended by a blank line.</summary>
    private static List<string> Events(string transcript)
    {
        Assert.EndsWith("\n\n", transcript, StringComparison.Ordinal);
        var events = new List<string>();
        foreach (var ev in transcript[..^2].Split("\n\n"))
        {
            var lines = ev.Split('\n');
            Assert.Equal(2, lines.Length);
            Assert.StartsWith("event: ", lines[0], StringComparison.Ordinal);
            Assert.StartsWith("data: ", lines[1], StringComparison.Ordinal);
            var name = lines[0]["event: ".Length..];
            var data = JsonNode.Parse(lines[1]["data: ".Length..])!;
            Assert.Equal(name, data["type"]!.GetValue<string>());
            events.Add($"{lines[0]}\ndata: {Canonical(data)}");
        }
        return events;
    }
}
