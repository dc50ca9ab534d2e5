using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using Lattice.Runtime.Engines;
using Lattice.Runtime.Engines.Llama;
using Lattice.Testing;
using LLama;
using LLama.Common;

namespace Lattice.Runtime.Tests.Engines.Llama;

/// <summary>End-to-end tests of <see cref="LlamaEngine"/> with the real (tiny) stories260K model.</summary>
public sealed class LlamaEngineTests(LlamaEngineFixture fixture) : IClassFixture<LlamaEngineFixture>
{
    /// <summary>
    /// Greedy completion of the user message "Once upon a time" (ChatML prompt, max_tokens 30), discovered with this
    /// engine and identical to a hand-written LLamaSharp loop.
    /// </summary>
    public const string GreedyText = "\"Here?\" Asked Jack.\nThey ran around and saw a big,";

    private const string StoriesSha256 = "aae1a5c0f524fbabc07969dff87b41faf7b0df13d047a21857f55bd6c22d9969";

    [Fact]
    public void Capabilities_NameTheTaskModelAndFileHash()
    {
        Assert.Equal("llama", fixture.Engine.Kind);
        var capability = Assert.Single(fixture.Engine.Capabilities);
        Assert.Equal(new EngineCapability("chat.completions", LlamaEngineFixture.ModelName, StoriesSha256), capability);

        lock (fixture.Progress)
        {
            Assert.NotEmpty(fixture.Progress);
            Assert.Equal(1.0, fixture.Progress[^1]);
            Assert.All(fixture.Progress, p => Assert.InRange(p, 0.0, 1.0));
            for (var i = 1; i < fixture.Progress.Count; i++)
            {
                Assert.True(fixture.Progress[i] >= fixture.Progress[i - 1], "progress must not go backwards");
            }
        }
    }

    [Fact]
    public async Task Greedy_IsExactStableAndMatchesTheOpenAiShape()
    {
        var first = await fixture.RunAsync(LlamaEngineFixture.UserRequest("Once upon a time"));
        var second = await fixture.RunAsync(LlamaEngineFixture.UserRequest("Once upon a time"));

        foreach (var (output, usage) in new[] { first, second })
        {
            Assert.Equal(200, output.Status);
            Assert.Equal("application/json", output.ContentType);
            Assert.Single(output.Writes);
            OpenApiContract.AssertValid("CreateChatCompletionResponse", output.Text);

            var json = LlamaEngineFixture.Json(output.Text);
            Assert.StartsWith("chatcmpl-", json.GetProperty("id").GetString(), StringComparison.Ordinal);
            Assert.Equal("chat.completion", json.GetProperty("object").GetString());
            Assert.Equal(LlamaEngineFixture.ModelName, json.GetProperty("model").GetString());
            Assert.InRange(json.GetProperty("created").GetInt64(), DateTimeOffset.UtcNow.AddMinutes(-5).ToUnixTimeSeconds(), DateTimeOffset.UtcNow.AddMinutes(1).ToUnixTimeSeconds());

            var choice = Assert.Single(json.GetProperty("choices").EnumerateArray());
            Assert.Equal(0, choice.GetProperty("index").GetInt32());
            Assert.Equal(JsonValueKind.Null, choice.GetProperty("logprobs").ValueKind);
            Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
            var message = choice.GetProperty("message");
            Assert.Equal("assistant", message.GetProperty("role").GetString());
            Assert.Equal(GreedyText, message.GetProperty("content").GetString());
            Assert.Equal(JsonValueKind.Null, message.GetProperty("refusal").ValueKind);
            Assert.False(message.TryGetProperty("tool_calls", out _));

            var usageJson = json.GetProperty("usage");
            Assert.Equal(30, usageJson.GetProperty("completion_tokens").GetInt32());
            Assert.Equal(usageJson.GetProperty("prompt_tokens").GetInt32() + 30, usageJson.GetProperty("total_tokens").GetInt32());
            Assert.Equal(new EngineUsage(usageJson.GetProperty("prompt_tokens").GetInt32(), 30), usage);
        }

        Assert.NotEqual(LlamaEngineFixture.Json(first.Output.Text).GetProperty("id").GetString(), LlamaEngineFixture.Json(second.Output.Text).GetProperty("id").GetString());
    }

    [Fact]
    public async Task Streaming_SameTextOneIdValidChunksAndNoUsageByDefault()
    {
        var body = LlamaEngineFixture.UserRequest("Once upon a time");
        body["stream"] = true;
        var (output, usage) = await fixture.RunAsync(body);

        Assert.Equal(200, output.Status);
        Assert.Equal("text/event-stream", output.ContentType);
        var events = LlamaEngineFixture.Events(output);
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(LlamaEngineFixture.Json).ToList();
        foreach (var payload in events[..^1])
        {
            OpenApiContract.AssertValidStreamChunk(payload);
        }

        var id = chunks[0].GetProperty("id").GetString();
        Assert.StartsWith("chatcmpl-", id, StringComparison.Ordinal);
        Assert.All(chunks, c =>
        {
            Assert.Equal(id, c.GetProperty("id").GetString());
            Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString());
            Assert.Equal(LlamaEngineFixture.ModelName, c.GetProperty("model").GetString());
            Assert.False(c.TryGetProperty("usage", out _), "usage must be absent without stream_options.include_usage");
        });
        Assert.Single(chunks.Select(c => c.GetProperty("created").GetInt64()).Distinct());

        var firstDelta = Assert.Single(chunks[0].GetProperty("choices").EnumerateArray()).GetProperty("delta");
        Assert.Equal("assistant", firstDelta.GetProperty("role").GetString());
        Assert.Equal("", firstDelta.GetProperty("content").GetString());

        var last = Assert.Single(chunks[^1].GetProperty("choices").EnumerateArray());
        Assert.Equal("length", last.GetProperty("finish_reason").GetString());
        Assert.Empty(last.GetProperty("delta").EnumerateObject());

        var middle = chunks[1..^1];
        Assert.All(middle, c =>
        {
            var choice = Assert.Single(c.GetProperty("choices").EnumerateArray());
            Assert.Equal(JsonValueKind.Null, choice.GetProperty("finish_reason").ValueKind);
            Assert.Equal(["content"], choice.GetProperty("delta").EnumerateObject().Select(p => p.Name));
        });
        var text = string.Concat(middle.Select(c => c.GetProperty("choices")[0].GetProperty("delta").GetProperty("content").GetString()));
        Assert.Equal(GreedyText, text);
        // Every stories260K token decodes to ASCII, so each token is one event.
        Assert.Equal(30, middle.Count);
        Assert.Equal(30, usage.CompletionTokens);
    }

    [Fact]
    public async Task Streaming_IncludeUsage_AddsAUsageChunkAndNullUsageEverywhereElse()
    {
        var body = LlamaEngineFixture.UserRequest("Once upon a time", maxTokens: 8);
        body["stream"] = true;
        body["stream_options"] = new JsonObject { ["include_usage"] = true };
        var (output, usage) = await fixture.RunAsync(body);

        var events = LlamaEngineFixture.Events(output);
        Assert.Equal("[DONE]", events[^1]);
        foreach (var payload in events[..^1])
        {
            OpenApiContract.AssertValidStreamChunk(payload);
        }
        var chunks = events[..^1].Select(LlamaEngineFixture.Json).ToList();
        Assert.Single(chunks.Select(c => c.GetProperty("id").GetString()).Distinct());

        var usageChunk = chunks[^1];
        Assert.Empty(usageChunk.GetProperty("choices").EnumerateArray());
        var usageJson = usageChunk.GetProperty("usage");
        Assert.Equal(8, usageJson.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(usage.PromptTokens, usageJson.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(usage.PromptTokens + 8, usageJson.GetProperty("total_tokens").GetInt32());

        Assert.All(chunks[..^1], c => Assert.Equal(JsonValueKind.Null, c.GetProperty("usage").ValueKind));
        Assert.Equal("length", chunks[^2].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Theory]
    [InlineData("max_tokens", 1)]
    [InlineData("max_tokens", 7)]
    [InlineData("max_completion_tokens", 5)]
    public async Task MaxTokens_EndsWithLengthAfterExactlyThatManyTokens(string parameter, int max)
    {
        var body = LlamaEngineFixture.UserRequest("Once upon a time", maxTokens: null);
        body[parameter] = max;
        var (output, usage) = await fixture.RunAsync(body);

        var json = LlamaEngineFixture.Json(output.Text);
        Assert.Equal("length", json.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(max, json.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(max, usage.CompletionTokens);
        Assert.StartsWith(json.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!, GreedyText, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Stop_CutsBeforeTheStopTextAndFinishesWithStop(bool stream)
    {
        var body = LlamaEngineFixture.UserRequest("Once upon a time");
        body["stop"] = new JsonArray("zzz", "ran", "Jack");
        body["stream"] = stream;
        var (output, _) = await fixture.RunAsync(body);

        string text;
        string? finish;
        if (stream)
        {
            var chunks = LlamaEngineFixture.Events(output)[..^1].Select(LlamaEngineFixture.Json).ToList();
            text = string.Concat(chunks.Select(c => c.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("content", out var content) ? content.GetString() : ""));
            finish = chunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString();
        }
        else
        {
            var choice = LlamaEngineFixture.Json(output.Text).GetProperty("choices")[0];
            text = choice.GetProperty("message").GetProperty("content").GetString()!;
            finish = choice.GetProperty("finish_reason").GetString();
        }

        Assert.Equal("\"Here?\" Asked ", text);
        Assert.Equal("stop", finish);
    }

    [Fact]
    public async Task Stop_AsASingleStringSpanningTokens()
    {
        var body = LlamaEngineFixture.UserRequest("Once upon a time");
        body["stop"] = "around and";
        var (output, usage) = await fixture.RunAsync(body);

        var choice = LlamaEngineFixture.Json(output.Text).GetProperty("choices")[0];
        Assert.Equal("\"Here?\" Asked Jack.\nThey ran ", choice.GetProperty("message").GetProperty("content").GetString());
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
        Assert.True(usage.CompletionTokens < 30);
    }

    [Fact]
    public async Task Seed_MakesSampledOutputRepeatable()
    {
        async Task<string> Sample(long seed)
        {
            var body = LlamaEngineFixture.UserRequest("Once upon a time", maxTokens: 30, temperature: 0.8);
            body["seed"] = seed;
            var (output, _) = await fixture.RunAsync(body);
            return LlamaEngineFixture.Json(output.Text).GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        }

        var first = await Sample(42);
        var again = await Sample(42);
        Assert.Equal(first, again);

        var others = new[] { await Sample(1), await Sample(2), await Sample(3) };
        Assert.Contains(others, o => o != first);
        Assert.Contains(new[] { first }.Concat(others), o => o != GreedyText);
    }

    [Fact]
    public async Task N_ReturnsThatManyChoices()
    {
        var body = LlamaEngineFixture.UserRequest("Once upon a time", maxTokens: 30);
        body["n"] = 2;
        var (output, usage) = await fixture.RunAsync(body);

        OpenApiContract.AssertValid("CreateChatCompletionResponse", output.Text);
        var choices = LlamaEngineFixture.Json(output.Text).GetProperty("choices").EnumerateArray().ToList();
        Assert.Equal([0, 1], choices.Select(c => c.GetProperty("index").GetInt32()));
        Assert.All(choices, c => Assert.Equal(GreedyText, c.GetProperty("message").GetProperty("content").GetString()));
        Assert.Equal(60, usage.CompletionTokens);
    }

    [Fact]
    public async Task EightConcurrentRequests_AllCompleteCorrectly()
    {
        var stopwatch = Stopwatch.StartNew();
        var tasks = Enumerable.Range(0, 8).Select(i =>
        {
            var body = LlamaEngineFixture.UserRequest("Once upon a time");
            body["stream"] = i % 2 == 1;
            return fixture.RunAsync(body);
        }).ToList();
        var results = await Task.WhenAll(tasks);

        for (var i = 0; i < results.Length; i++)
        {
            var (output, usage) = results[i];
            Assert.Equal(200, output.Status);
            Assert.Equal(30, usage.CompletionTokens);
            var text = i % 2 == 1
                ? string.Concat(LlamaEngineFixture.Events(output)[..^1].Select(LlamaEngineFixture.Json)
                    .Select(c => c.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("content", out var content) ? content.GetString() : ""))
                : LlamaEngineFixture.Json(output.Text).GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString();
            Assert.Equal(GreedyText, text);
        }
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(60), $"took {stopwatch.Elapsed}");
    }

    [Fact]
    public async Task Cancellation_StopsGenerationWithinATokenAndThrows()
    {
        using var cts = new CancellationTokenSource();
        var output = new CancellingOutput(cts, cancelAtWrite: 4); // role chunk + 3 content chunks
        var body = LlamaEngineFixture.UserRequest("Once upon a time", maxTokens: null);
        body["model"] = LlamaEngineFixture.ModelName;
        body["stream"] = true;
        var request = new EngineRequest(LlamaEngine.ChatCompletionsTask, LlamaEngineFixture.ModelName, Encoding.UTF8.GetBytes(body.ToJsonString()), "application/json", true);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => fixture.Engine.ExecuteAsync(request, output, cts.Token));

        Assert.NotNull(output.CancelledAt);
        Assert.True(Stopwatch.GetElapsedTime(output.CancelledAt.Value) < TimeSpan.FromSeconds(5));
        Assert.InRange(output.WritesAfterCancel, 0, 2);
        Assert.Equal(4, output.Writes - output.WritesAfterCancel);
    }

    [Fact]
    public async Task Cancellation_BeforeStartThrowsAndWritesNothing()
    {
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();
        var output = new RecordingOutput();
        var request = new EngineRequest(LlamaEngine.ChatCompletionsTask, LlamaEngineFixture.ModelName,
            Encoding.UTF8.GetBytes(LlamaEngineFixture.UserRequest("Once upon a time", maxTokens: null).ToJsonString()), "application/json", false);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => fixture.Engine.ExecuteAsync(request, output, cts.Token));
        Assert.Null(output.Status);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task JsonObject_OutputIsAJsonObject(bool stream)
    {
        var body = LlamaEngineFixture.UserRequest("Once upon a time", maxTokens: 200);
        body["response_format"] = new JsonObject { ["type"] = "json_object" };
        body["stream"] = stream;
        var (output, _) = await fixture.RunAsync(body);

        var (content, finish) = ReadContent(output, stream);
        Assert.Equal("stop", finish);
        using var parsed = JsonDocument.Parse(content);
        Assert.Equal(JsonValueKind.Object, parsed.RootElement.ValueKind);
    }

    public enum Structured { JsonObject, JsonSchema, ForcedTool }

    public static TheoryData<Structured, int, bool> CutShort()
    {
        var data = new TheoryData<Structured, int, bool>();
        foreach (var mode in Enum.GetValues<Structured>())
        {
            foreach (var maxTokens in (int[])[3, 12, 20, 40])
            {
                data.Add(mode, maxTokens, false);
            }
            data.Add(mode, 20, true);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(CutShort))]
    public async Task Structured_output_cut_short_by_max_tokens_still_parses(Structured mode, int maxTokens, bool stream)
    {
        // A sampled (not greedy) run, so the model does not settle on a short answer: the budget is what ends it.
        var body = LlamaEngineFixture.UserRequest("Once upon a time there was a girl who liked to tell long stories", maxTokens, temperature: 1);
        body["seed"] = 1;
        body["stream"] = stream;
        switch (mode)
        {
            case Structured.JsonObject:
                body["response_format"] = new JsonObject { ["type"] = "json_object" };
                break;
            case Structured.JsonSchema:
                body["response_format"] = new JsonObject
                {
                    ["type"] = "json_schema",
                    ["json_schema"] = new JsonObject { ["name"] = "story", ["schema"] = JsonNode.Parse(
                        """{"type":"object","properties":{"title":{"type":"string"},"lines":{"type":"array","items":{"type":"string"}},"pet":{"type":"object","properties":{"kind":{"type":"string"},"legs":{"type":"integer"}}}},"required":["title","lines","pet"]}""") },
                };
                break;
            default:
                body["tools"] = new JsonArray(WeatherTool.DeepClone());
                body["tool_choice"] = new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = "get_weather" } };
                break;
        }
        var (output, usage) = await fixture.RunAsync(body);
        Assert.Equal(200, output.Status);

        string json;
        string? finish;
        if (mode == Structured.ForcedTool)
        {
            if (stream)
            {
                var chunks = LlamaEngineFixture.Events(output)[..^1].Select(LlamaEngineFixture.Json).Select(c => c.GetProperty("choices")[0]).ToList();
                json = string.Concat(chunks.Select(c => c.GetProperty("delta").TryGetProperty("tool_calls", out var calls)
                    && calls[0].GetProperty("function").TryGetProperty("arguments", out var piece) ? piece.GetString() : ""));
                finish = chunks[^1].GetProperty("finish_reason").GetString();
            }
            else
            {
                OpenApiContract.AssertValid("CreateChatCompletionResponse", output.Text);
                var choice = LlamaEngineFixture.Json(output.Text).GetProperty("choices")[0];
                json = choice.GetProperty("message").GetProperty("tool_calls")[0].GetProperty("function").GetProperty("arguments").GetString()!;
                finish = choice.GetProperty("finish_reason").GetString();
            }
        }
        else
        {
            (json, finish) = ReadContent(output, stream);
        }

        try
        {
            using var parsed = JsonDocument.Parse(json);
            Assert.Equal(JsonValueKind.Object, parsed.RootElement.ValueKind);
        }
        catch (JsonException e)
        {
            Assert.Fail($"max_tokens {maxTokens}, finish {finish}: '{json}' does not parse: {e.Message}");
        }
        // Closing forced by the budget is a length finish; the answer never takes more than the budget.
        Assert.True(finish == "length", $"finish_reason {finish} for '{json}'");
        Assert.InRange(usage.CompletionTokens, 1, Math.Max(maxTokens, 2));
    }

    public static TheoryData<string> Schemas() =>
    [
        """
        {"type":"object","properties":{
          "name":{"type":"string","maxLength":24},
          "age":{"type":"integer"},
          "happy":{"type":"boolean"},
          "color":{"type":"string","enum":["red","green","blue"]},
          "tags":{"type":"array","items":{"type":"string","maxLength":12},"maxItems":3},
          "score":{"type":"number"}},
         "required":["name","age","happy","color","tags","score"],"additionalProperties":false}
        """,
        """
        {"type":"object","properties":{
          "title":{"type":"string","maxLength":16},
          "pet":{"$ref":"#/$defs/pet"},
          "nickname":{"type":["string","null"],"maxLength":8},
          "size":{"anyOf":[{"type":"integer"},{"const":"huge"}]},
          "mood":{"enum":["calm",3,true,null]}},
         "required":["pet","size","mood"],
         "$defs":{"pet":{"type":"object","properties":{"kind":{"type":"string","enum":["cat","dog"]},"legs":{"type":"integer"}},"required":["kind","legs"]}}}
        """,
        """
        {"type":"object","properties":{"a":{"type":"boolean"},"b":{"type":"boolean"},"c":{"type":"null"}}}
        """,
        """
        {"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":4}
        """,
        """
        {"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},"required":["v","kids"]}},
         "$ref":"#/$defs/node"}
        """,
        """
        {"type":"object","properties":{"who":{"type":"string"},"what":{"type":"string"}},"required":["who","what"]}
        """,
        """
        {"type":"object","allOf":[{"properties":{"a":{"type":"integer"}},"required":["a"]},{"properties":{"b":{"type":"boolean"}},"required":["b"]}]}
        """,
        // Edge cases that must still give a grammar llama.cpp accepts.
        """
        {"type":"object","properties":{
          "one":{"type":"array","items":{"type":"boolean"},"maxItems":1},
          "none":{"type":"array","maxItems":0},
          "empty":{"type":"string","maxLength":0},
          "two":{"type":"string","minLength":2,"maxLength":2},
          "pair":{"type":"array","prefixItems":[{"type":"integer"},{"const":"x"}]},
          "späce \"q\" \\":{"enum":["a\nb","\"quoted\"","back\\slash","日本 😀"]},
          "map":{"type":"object","additionalProperties":{"type":"integer"}},
          "closed":{"type":"object","additionalProperties":false}},
         "required":["one","none","empty","two","pair","späce \"q\" \\","map","closed"]}
        """,
    ];

    [Theory]
    [MemberData(nameof(Schemas))]
    public async Task JsonSchema_OutputValidatesAgainstTheSchema(string schemaText)
    {
        var body = LlamaEngineFixture.UserRequest("Describe a pet.", maxTokens: 300);
        body["response_format"] = new JsonObject
        {
            ["type"] = "json_schema",
            ["json_schema"] = new JsonObject { ["name"] = "thing", ["strict"] = true, ["schema"] = JsonNode.Parse(schemaText) },
        };
        var (output, _) = await fixture.RunAsync(body);

        Assert.Equal(200, output.Status);
        var (content, finish) = ReadContent(output, stream: false);
        Assert.True(finish == "stop", $"finish_reason {finish}: {content}");
        AssertMatchesSchema(schemaText, content);
    }

    [Fact]
    public async Task JsonSchema_MultiByteCharactersAreNeverSplitAcrossChunks()
    {
        // stories260K has no token for these characters: they are generated byte by byte (byte-fallback tokens).
        const string Word = "héllo wörld 😀 ✓";
        var body = LlamaEngineFixture.UserRequest("Say hello.", maxTokens: 100);
        body["stream"] = true;
        body["response_format"] = new JsonObject
        {
            ["type"] = "json_schema",
            ["json_schema"] = new JsonObject { ["name"] = "word", ["schema"] = new JsonObject { ["type"] = "string", ["enum"] = new JsonArray(Word) } },
        };
        var (output, usage) = await fixture.RunAsync(body);

        var pieces = LlamaEngineFixture.Events(output)[..^1].Select(LlamaEngineFixture.Json)
            .Select(c => c.GetProperty("choices")[0].GetProperty("delta"))
            .Where(d => d.TryGetProperty("content", out _))
            .Select(d => d.GetProperty("content").GetString()!)
            .ToList();
        Assert.All(pieces, p => Assert.DoesNotContain('\uFFFD', p));
        Assert.All(pieces, p => Assert.False(p.Length > 0 && (char.IsLowSurrogate(p[0]) || char.IsHighSurrogate(p[^1])), "split surrogate pair"));
        Assert.Equal(JsonSerializer.Serialize(Word, new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }), string.Concat(pieces));
        Assert.True(usage.CompletionTokens > Word.Length + 2, "the multi-byte characters should take several tokens each");
    }

    private static readonly JsonObject WeatherTool = new()
    {
        ["type"] = "function",
        ["function"] = new JsonObject
        {
            ["name"] = "get_weather",
            ["description"] = "Gets the weather.",
            ["parameters"] = JsonNode.Parse("""
                {"type":"object","properties":{"location":{"type":"string","maxLength":30},"unit":{"type":"string","enum":["celsius","fahrenheit"]},"days":{"type":"integer"}},
                 "required":["location","unit"],"additionalProperties":false}
                """),
        },
    };

    private static readonly JsonObject TimeTool = new()
    {
        ["type"] = "function",
        ["function"] = new JsonObject
        {
            ["name"] = "get_time",
            ["parameters"] = JsonNode.Parse("""{"type":"object","properties":{"zone":{"type":"string","enum":["UTC","CET"]}},"required":["zone"]}"""),
        },
    };

    [Fact]
    public async Task ToolChoice_ForcedFunction_ReturnsToolCallsWithArgumentsMatchingTheSchema()
    {
        var body = LlamaEngineFixture.UserRequest("What is the weather in Paris?", maxTokens: 200);
        body["tools"] = new JsonArray(WeatherTool.DeepClone(), TimeTool.DeepClone());
        body["tool_choice"] = new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = "get_weather" } };
        var (output, _) = await fixture.RunAsync(body);

        OpenApiContract.AssertValid("CreateChatCompletionResponse", output.Text);
        var choice = LlamaEngineFixture.Json(output.Text).GetProperty("choices")[0];
        Assert.Equal("tool_calls", choice.GetProperty("finish_reason").GetString());
        var message = choice.GetProperty("message");
        Assert.Equal(JsonValueKind.Null, message.GetProperty("content").ValueKind);
        var call = Assert.Single(message.GetProperty("tool_calls").EnumerateArray());
        Assert.StartsWith("call_", call.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal("function", call.GetProperty("type").GetString());
        Assert.Equal("get_weather", call.GetProperty("function").GetProperty("name").GetString());
        AssertMatchesSchema(WeatherTool["function"]!["parameters"]!.ToJsonString(), call.GetProperty("function").GetProperty("arguments").GetString()!);
    }

    [Fact]
    public async Task ToolChoice_ForcedFunction_StreamsToolCallDeltas()
    {
        var body = LlamaEngineFixture.UserRequest("What is the weather in Paris?", maxTokens: 200);
        body["tools"] = new JsonArray(WeatherTool.DeepClone());
        body["tool_choice"] = new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = "get_weather" } };
        var (plain, _) = await fixture.RunAsync(body.DeepClone().AsObject());
        body["stream"] = true;
        var (output, _) = await fixture.RunAsync(body);

        var events = LlamaEngineFixture.Events(output);
        Assert.Equal("[DONE]", events[^1]);
        foreach (var payload in events[..^1])
        {
            OpenApiContract.AssertValidStreamChunk(payload);
        }
        var deltas = events[..^1].Select(LlamaEngineFixture.Json).Select(c => c.GetProperty("choices")[0]).ToList();

        var first = deltas[0].GetProperty("delta");
        Assert.Equal("assistant", first.GetProperty("role").GetString());
        Assert.Equal(JsonValueKind.Null, first.GetProperty("content").ValueKind);
        var start = Assert.Single(first.GetProperty("tool_calls").EnumerateArray());
        Assert.Equal(0, start.GetProperty("index").GetInt32());
        Assert.StartsWith("call_", start.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal("get_weather", start.GetProperty("function").GetProperty("name").GetString());
        Assert.Equal("", start.GetProperty("function").GetProperty("arguments").GetString());

        Assert.Equal("tool_calls", deltas[^1].GetProperty("finish_reason").GetString());
        var arguments = string.Concat(deltas[1..^1].Select(d =>
        {
            var call = Assert.Single(d.GetProperty("delta").GetProperty("tool_calls").EnumerateArray());
            Assert.Equal(0, call.GetProperty("index").GetInt32());
            Assert.False(call.TryGetProperty("id", out _));
            return call.GetProperty("function").GetProperty("arguments").GetString();
        }));
        var expected = LlamaEngineFixture.Json(plain.Text).GetProperty("choices")[0].GetProperty("message").GetProperty("tool_calls")[0].GetProperty("function").GetProperty("arguments").GetString();
        Assert.Equal(expected, arguments);
        AssertMatchesSchema(WeatherTool["function"]!["parameters"]!.ToJsonString(), arguments);
    }

    [Fact]
    public async Task ToolChoice_RequiredWithOneTool_ForcesThatTool()
    {
        var body = LlamaEngineFixture.UserRequest("What is the weather?", maxTokens: 200);
        body["tools"] = new JsonArray(WeatherTool.DeepClone());
        body["tool_choice"] = "required";
        var (output, _) = await fixture.RunAsync(body);

        var choice = LlamaEngineFixture.Json(output.Text).GetProperty("choices")[0];
        Assert.Equal("tool_calls", choice.GetProperty("finish_reason").GetString());
        var call = Assert.Single(choice.GetProperty("message").GetProperty("tool_calls").EnumerateArray());
        Assert.Equal("get_weather", call.GetProperty("function").GetProperty("name").GetString());
        AssertMatchesSchema(WeatherTool["function"]!["parameters"]!.ToJsonString(), call.GetProperty("function").GetProperty("arguments").GetString()!);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ToolChoice_RequiredWithSeveralTools_CallsOneOfThem(bool stream)
    {
        var body = LlamaEngineFixture.UserRequest("What time is it?", maxTokens: 200);
        body["tools"] = new JsonArray(WeatherTool.DeepClone(), TimeTool.DeepClone());
        body["tool_choice"] = "required";
        body["stream"] = stream;
        var (output, _) = await fixture.RunAsync(body);

        string name, arguments, finish;
        if (stream)
        {
            var events = LlamaEngineFixture.Events(output);
            foreach (var payload in events[..^1])
            {
                OpenApiContract.AssertValidStreamChunk(payload);
            }
            var choices = events[..^1].Select(LlamaEngineFixture.Json).Select(c => c.GetProperty("choices")[0]).ToList();
            var call = choices.Select(c => c.GetProperty("delta")).Single(d => d.TryGetProperty("tool_calls", out _)).GetProperty("tool_calls")[0];
            Assert.StartsWith("call_", call.GetProperty("id").GetString(), StringComparison.Ordinal);
            name = call.GetProperty("function").GetProperty("name").GetString()!;
            arguments = call.GetProperty("function").GetProperty("arguments").GetString()!;
            finish = choices[^1].GetProperty("finish_reason").GetString()!;
        }
        else
        {
            OpenApiContract.AssertValid("CreateChatCompletionResponse", output.Text);
            var choice = LlamaEngineFixture.Json(output.Text).GetProperty("choices")[0];
            var call = Assert.Single(choice.GetProperty("message").GetProperty("tool_calls").EnumerateArray());
            name = call.GetProperty("function").GetProperty("name").GetString()!;
            arguments = call.GetProperty("function").GetProperty("arguments").GetString()!;
            finish = choice.GetProperty("finish_reason").GetString()!;
        }

        Assert.Equal("tool_calls", finish);
        var tool = name switch
        {
            "get_weather" => WeatherTool,
            "get_time" => TimeTool,
            _ => throw new Xunit.Sdk.XunitException($"unexpected function '{name}'"),
        };
        AssertMatchesSchema(tool["function"]!["parameters"]!.ToJsonString(), arguments);
    }

    public static TheoryData<string, string?, string?> MalformedBodies() => new()
    {
        { "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}", null, null },
        { "not json at all", null, null },
        { "[1,2,3]", null, "invalid_type" },
        { "{\"model\":\"stories\"}", "messages", "missing_required_parameter" },
        { "{\"model\":\"stories\",\"messages\":[]}", "messages", "empty_array" },
        { "{\"model\":\"stories\",\"messages\":\"hi\"}", "messages", "invalid_type" },
        { "{\"model\":\"stories\",\"messages\":[{\"content\":\"hi\"}]}", "messages[0].role", "missing_required_parameter" },
        { "{\"model\":\"stories\",\"messages\":[{\"role\":\"robot\",\"content\":\"hi\"}]}", "messages[0].role", "invalid_value" },
        { "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":42}]}", "messages[0].content", "invalid_type" },
        { "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}", "messages[0].content[0].type", "invalid_value" },
        { "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":\"hot\"}", "temperature", "invalid_type" },
        { "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":3}", "temperature", "decimal_above_max_value" },
        { "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":0}", "max_tokens", "integer_below_min_value" },
        { "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":1000}", "n", "integer_above_max_value" },
        { "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "stop", "array_above_max_length" },
        { "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream_options\":{\"include_usage\":true}}", "stream_options", "invalid_value" },
        { "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"logit_bias\":{\"99999\":1}}", "logit_bias", "invalid_value" },
        { "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"response_format\":{\"type\":\"yaml\"}}", "response_format.type", "invalid_value" },
        { "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"g\"}}}", "tool_choice", "invalid_value" },
        { "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"logprobs\":true}", "logprobs", "unsupported_parameter" },
    };

    [Theory]
    [MemberData(nameof(MalformedBodies))]
    public async Task MalformedInput_Is400WithTheOpenAiEnvelope(string body, string? param, string? code)
    {
        var (output, usage) = await fixture.RunRawAsync(Encoding.UTF8.GetBytes(body));

        Assert.Equal(400, output.Status);
        Assert.Equal("application/json", output.ContentType);
        Assert.Equal(new EngineUsage(), usage);
        OpenApiContract.AssertValid("ErrorResponse", output.Text);
        var error = LlamaEngineFixture.Json(output.Text).GetProperty("error");
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Equal(code, error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task UnknownModel_Is404()
    {
        var output = new RecordingOutput();
        var body = Encoding.UTF8.GetBytes(LlamaEngineFixture.UserRequest("hi").ToJsonString());
        await fixture.Engine.ExecuteAsync(new EngineRequest(LlamaEngine.ChatCompletionsTask, "nope", body, "application/json", false), output, CancellationToken.None);

        Assert.Equal(404, output.Status);
        var error = LlamaEngineFixture.Json(output.Text).GetProperty("error");
        Assert.Equal("model_not_found", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task PromptLongerThanTheContext_Is400ContextLengthExceeded()
    {
        var (output, _) = await fixture.RunAsync(LlamaEngineFixture.UserRequest(string.Concat(Enumerable.Repeat("Once upon a time ", 200))));

        Assert.Equal(400, output.Status);
        var error = LlamaEngineFixture.Json(output.Text).GetProperty("error");
        Assert.Equal("context_length_exceeded", error.GetProperty("code").GetString());
        Assert.Equal("messages", error.GetProperty("param").GetString());
        // stories260K was trained with 512 tokens of context, below the default 2048.
        Assert.Contains("maximum context length is 512 tokens", error.GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Usage_PromptTokensAreTheTokenizersCountOfTheTemplatedPrompt()
    {
        var body = new JsonObject
        {
            ["messages"] = new JsonArray(
                new JsonObject { ["role"] = "developer", ["content"] = "You tell short stories." },
                new JsonObject { ["role"] = "user", ["content"] = new JsonArray(new JsonObject { ["type"] = "text", ["text"] = "Tell me" }, new JsonObject { ["type"] = "text", ["text"] = "about a dog." }) },
                new JsonObject { ["role"] = "assistant", ["content"] = "Once there was a dog." },
                new JsonObject { ["role"] = "user", ["content"] = "More!" }),
            ["max_tokens"] = 12,
            ["temperature"] = 0,
            ["stream"] = true,
        };
        var (output, usage) = await fixture.RunAsync(body);

        // The model's template is ChatML; developer becomes system and text parts are joined by newlines.
        const string Prompt =
            "<|im_start|>system\nYou tell short stories.<|im_end|>\n"
            + "<|im_start|>user\nTell me\nabout a dog.<|im_end|>\n"
            + "<|im_start|>assistant\nOnce there was a dog.<|im_end|>\n"
            + "<|im_start|>user\nMore!<|im_end|>\n"
            + "<|im_start|>assistant\n";
        using var weights = LLamaWeights.LoadFromFile(new ModelParams(LlamaEngineFixture.ModelPath) { GpuLayerCount = 0 });
        var expected = weights.Tokenize(Prompt, add_bos: true, special: true, Encoding.UTF8).Length;

        Assert.Equal(expected, usage.PromptTokens);
        var contentChunks = LlamaEngineFixture.Events(output)[..^1].Select(LlamaEngineFixture.Json)
            .Count(c => c.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("content", out var content) && content.GetString()!.Length > 0);
        Assert.Equal(usage.CompletionTokens, contentChunks);
    }

    private static (string Content, string? Finish) ReadContent(RecordingOutput output, bool stream)
    {
        Assert.Equal(200, output.Status);
        if (!stream)
        {
            OpenApiContract.AssertValid("CreateChatCompletionResponse", output.Text);
            var choice = LlamaEngineFixture.Json(output.Text).GetProperty("choices")[0];
            return (choice.GetProperty("message").GetProperty("content").GetString()!, choice.GetProperty("finish_reason").GetString());
        }
        var events = LlamaEngineFixture.Events(output);
        foreach (var payload in events[..^1])
        {
            OpenApiContract.AssertValidStreamChunk(payload);
        }
        var choices = events[..^1].Select(LlamaEngineFixture.Json).Select(c => c.GetProperty("choices")[0]).ToList();
        var content = string.Concat(choices.Select(c => c.GetProperty("delta").TryGetProperty("content", out var piece) ? piece.GetString() : ""));
        return (content, choices[^1].GetProperty("finish_reason").GetString());
    }

    private static void AssertMatchesSchema(string schemaText, string json)
    {
        using var document = JsonDocument.Parse(json);
        var schema = JsonSchema.FromText(schemaText);
        var result = schema.Evaluate(document.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List });
        Assert.True(result.IsValid, $"'{json}' does not match {schemaText}: {JsonSerializer.Serialize(result)}");
    }

    /// <summary>Records writes and cancels the request at the given write, counting what is written afterwards.</summary>
    private sealed class CancellingOutput(CancellationTokenSource cts, int cancelAtWrite) : IEngineOutput
    {
        public int Writes { get; private set; }
        public int WritesAfterCancel { get; private set; }
        public long? CancelledAt { get; private set; }

        public ValueTask StartAsync(int status, string contentType, CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public void ReportUsage(EngineUsage usageSoFar)
        {
        }

        public ValueTask WriteAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
        {
            Writes++;
            if (CancelledAt is not null)
            {
                WritesAfterCancel++;
            }
            else if (Writes == cancelAtWrite)
            {
                CancelledAt = Stopwatch.GetTimestamp();
                cts.Cancel();
            }
            return ValueTask.CompletedTask;
        }
    }
}
