using System.Buffers;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lattice.Gateway.Dispatch;
using Lattice.Gateway.Responses;
using Lattice.Protocol.Metering;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Time.Testing;

namespace Lattice.Gateway.Tests.Responses;

/// <summary>
/// The Responses ⇄ chat translation tables in <c>Golden/*.json</c>: each case is a Responses request with the chat body
/// it must become, and a chat answer (a completion, or a stream's chunks) with the Response object — or the Responses
/// event stream, event by event — the client must get. Run with <c>LATTICE_UPDATE_GOLDEN=1</c> to rewrite the expected
/// halves from the code (then read the diff: the files are the specification).
/// </summary>
public sealed class GoldenTranslationTests
{
    private static readonly JsonSerializerOptions Relaxed = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private static readonly JsonSerializerOptions Indented = new(Relaxed) { WriteIndented = true };
    private static readonly DateTimeOffset Now = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);

    public static TheoryData<string> Cases()
    {
        var data = new TheoryData<string>();
        foreach (var file in Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "Responses", "Golden"), "*.json").Order(StringComparer.Ordinal))
        {
            data.Add(Path.GetFileNameWithoutExtension(file));
        }
        return data;
    }

    [Fact]
    public void There_are_at_least_twenty_cases() => Assert.True(Cases().Count >= 20, $"{Cases().Count} cases");

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task The_case_translates_both_ways_as_written(string name)
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Responses", "Golden", name + ".json");
        var testCase = JsonNode.Parse(await File.ReadAllTextAsync(path))!.AsObject();

        using var request = JsonDocument.Parse(testCase["request"]!.ToJsonString(Relaxed));
        var (translated, error) = ResponsesRequest.Translate(request.RootElement, null, []);
        Assert.True(translated is not null, error.Message);
        var chat = JsonNode.Parse(translated.ChatBody)!;

        var usage = testCase["usage"]!;
        var (body, sse) = await RenderAsync(translated, testCase, new Usage(
            usage["prompt_tokens"]!.GetValue<long>(), usage["completion_tokens"]!.GetValue<long>(),
            usage["prompt_tokens"]!.GetValue<long>() + usage["completion_tokens"]!.GetValue<long>()));
        JsonNode answer = sse ? Events(body) : JsonNode.Parse(body)!;
        var answerKey = sse ? "events" : "response";

        if (Environment.GetEnvironmentVariable("LATTICE_UPDATE_GOLDEN") == "1")
        {
            testCase["chat"] = chat.DeepClone();
            testCase.Remove("response");
            testCase.Remove("events");
            testCase[answerKey] = answer.DeepClone();
            await File.WriteAllTextAsync(Path.Combine(SourceDirectory(), "Golden", name + ".json"), testCase.ToJsonString(Indented) + "\n");
            return;
        }
        Assert.Equal(testCase["chat"]!.ToJsonString(Relaxed), chat.ToJsonString(Relaxed));
        var expected = testCase[answerKey];
        Assert.NotNull(expected);
        if (sse)
        {
            // Event by event: the names in order, each event's data exactly.
            var expectedEvents = expected.AsArray();
            var actualEvents = answer.AsArray();
            for (var i = 0; i < Math.Min(expectedEvents.Count, actualEvents.Count); i++)
            {
                Assert.Equal(expectedEvents[i]!.ToJsonString(Relaxed), actualEvents[i]!.ToJsonString(Relaxed));
            }
            Assert.Equal(expectedEvents.Count, actualEvents.Count);
        }
        else
        {
            Assert.Equal(expected.ToJsonString(Relaxed), answer.ToJsonString(Relaxed));
        }
    }

    /// <summary>Feeds the case's chat answer through a <see cref="ResponsesSink"/> as the relay would, and returns what the client got.</summary>
    private static async Task<(string Body, bool Sse)> RenderAsync(ResponsesRequest.Translated translated, JsonObject testCase, Usage usage)
    {
        var context = new DefaultHttpContext { TraceIdentifier = "req_golden" };
        var output = new MemoryStream();
        context.Response.Body = output;
        var sink = new ResponsesSink(context, translated, new FakeTimeProvider(Now), save: null);
        var streamed = testCase["answer_stream"] is JsonArray;
        sink.Start(200, streamed ? "text/event-stream" : "application/json", null, streamed, native: false);
        if (testCase["answer_stream"] is JsonArray chunks)
        {
            foreach (var chunk in chunks)
            {
                sink.Writer.Write(Encoding.UTF8.GetBytes("data: " + chunk!.ToJsonString(Relaxed) + "\n\n"));
                await sink.FlushAsync(CancellationToken.None);
            }
            sink.Writer.Write("data: [DONE]\n\n"u8);
            await sink.FlushAsync(CancellationToken.None);
        }
        else
        {
            sink.Writer.Write(Encoding.UTF8.GetBytes(testCase["answer"]!.ToJsonString(Relaxed)));
            await sink.FlushAsync(CancellationToken.None);
        }
        await sink.CompleteAsync(new DispatchOutcome
        {
            ServedBy = new Candidate("upstream", "off_test", "hosted", "upstream-model", Lattice.Gateway.Metering.Prices.Free, new NoTarget()),
            HttpStatus = 200,
            Sse = streamed,
            Usage = usage,
        });
        await context.Response.BodyWriter.FlushAsync();
        return (Encoding.UTF8.GetString(output.ToArray()), context.Response.ContentType?.StartsWith("text/event-stream", StringComparison.Ordinal) == true);
    }

    /// <summary>An SSE body as <c>[{"event":name,"data":{…}}]</c>, checking each event is exactly two lines and a blank one.</summary>
    internal static JsonArray Events(string body)
    {
        Assert.EndsWith("\n\n", body, StringComparison.Ordinal);
        var events = new JsonArray();
        foreach (var text in body[..^2].Split("\n\n"))
        {
            var lines = text.Split('\n');
            Assert.Equal(2, lines.Length);
            Assert.StartsWith("event: ", lines[0], StringComparison.Ordinal);
            Assert.StartsWith("data: ", lines[1], StringComparison.Ordinal);
            var data = JsonNode.Parse(lines[1]["data: ".Length..])!;
            Assert.Equal(lines[0]["event: ".Length..], data["type"]!.GetValue<string>());
            events.Add(new JsonObject { ["event"] = lines[0]["event: ".Length..], ["data"] = data });
        }
        return events;
    }

    private static string SourceDirectory([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;

    private sealed class NoTarget : IDispatchTarget
    {
        public ValueTask<TargetOpening> OpenAsync(TaskRequest request, Candidate candidate, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("Not dispatched in these tests.");
    }
}
