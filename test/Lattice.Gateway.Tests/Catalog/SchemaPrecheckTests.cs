using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using Lattice.Gateway.Catalog;
using Xunit.Abstractions;

namespace Lattice.Gateway.Tests.Catalog;

/// <summary>The precheck may only say "valid" or "invalid" where JsonSchema.Net says the same.</summary>
public sealed class SchemaPrecheckTests(ITestOutputHelper output)
{
    private static readonly EvaluationOptions Flag = new() { OutputFormat = OutputFormat.Flag };

    public static TheoryData<string> BuiltIns => new(BuiltInTaskClasses.All(DateTimeOffset.UnixEpoch).Select(t => t.Name));

    private static string SchemaText(string task) => BuiltInTaskClasses.All(DateTimeOffset.UnixEpoch).Single(t => t.Name == task).InputSchema;

    [Theory]
    [MemberData(nameof(BuiltIns))]
    public void Every_built_in_schema_has_a_precheck(string task) =>
        Assert.True(InputSchema.TryCreate(SchemaText(task), out _)!.HasPrecheck);

    [Theory]
    [InlineData("""{"type":"object"}""")] // no $schema: the library's default dialect decides
    [InlineData("""{"$schema":"http://json-schema.org/draft-07/schema#","type":"object"}""")]
    [InlineData("""{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"a":{"type":"string","format":"email"}}}""")]
    [InlineData("""{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"a":{"type":"string","pattern":"^a"}}}""")]
    [InlineData("""{"$schema":"https://json-schema.org/draft/2020-12/schema","$defs":{"x":{"$id":"urn:x","type":"string"}},"$ref":"#/$defs/x"}""")]
    [InlineData("""{"$schema":"https://json-schema.org/draft/2020-12/schema","enum":[1,2]}""")]
    [InlineData("""{"$schema":"https://json-schema.org/draft/2020-12/schema","unevaluatedProperties":false}""")]
    [InlineData("""{"$schema":"https://json-schema.org/draft/2020-12/schema","then":{"required":["a"]}}""")]
    public void Schemas_outside_the_subset_are_left_to_the_library(string schema) =>
        Assert.False(InputSchema.TryCreate(schema, out _)!.HasPrecheck);

    [Theory]
    [InlineData("chat.completions", """{"model":"m","messages":[{"role":"user","content":"hello"}]}""")]
    [InlineData("chat.completions", """{"model":"m","messages":[{"role":"user","content":"hello"}],"stream":true}""")]
    [InlineData("chat.completions", """{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]},{"role":"assistant","content":null,"tool_calls":[{"id":"c1"}]},{"role":"tool","tool_call_id":"c1","content":"42"}],"temperature":0.7,"top_p":1,"n":1,"max_tokens":256,"stop":["\n"],"seed":7,"metadata":{"a":"b"},"tools":[{"type":"function"}],"tool_choice":"auto","response_format":{"type":"json_object"},"stream_options":{"include_usage":true},"unknown":{"x":[1,2]}}""")]
    [InlineData("embeddings", """{"model":"m","input":"hello"}""")]
    [InlineData("embeddings", """{"model":"m","input":["a","b"],"encoding_format":"float","dimensions":256}""")]
    [InlineData("embeddings", """{"model":"m","input":[[1,2],[3]]}""")]
    [InlineData("audio.transcriptions", """{"file":{"filename":"a.wav","content_type":"audio/wav","length":10},"model":"whisper","response_format":"json","temperature":0}""")]
    public void Ordinary_valid_input_is_recognised(string task, string json)
    {
        var schema = InputSchema.TryCreate(SchemaText(task), out _)!;
        using var doc = JsonDocument.Parse(json);
        Assert.Equal(PrecheckVerdict.Valid, SchemaPrecheck.TryCompile(JsonDocument.Parse(SchemaText(task)).RootElement)!.Check(doc.RootElement));
        Assert.Null(schema.Validate(doc.RootElement));
    }

    [Fact]
    public void Valid_chat_input_is_checked_without_allocating()
    {
        var schema = InputSchema.TryCreate(SchemaText("chat.completions"), out _)!;
        using var doc = JsonDocument.Parse("""{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"hello"}],"temperature":0.5,"max_tokens":10,"stream":true}""");
        Assert.Null(schema.Validate(doc.RootElement));
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            Assert.Null(schema.Validate(doc.RootElement));
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Theory]
    [MemberData(nameof(BuiltIns))]
    public void The_precheck_never_contradicts_the_library(string task)
    {
        var text = SchemaText(task);
        var library = JsonSchema.FromText(text, new BuildOptions { SchemaRegistry = new SchemaRegistry() });
        var precheck = SchemaPrecheck.TryCompile(JsonDocument.Parse(text).RootElement)!;
        var decided = 0;
        var total = 0;
        foreach (var instance in Corpus(task))
        {
            using var doc = JsonDocument.Parse(instance);
            var verdict = precheck.Check(doc.RootElement);
            var valid = library.Evaluate(doc.RootElement, Flag).IsValid;
            total++;
            if (verdict == PrecheckVerdict.Unknown)
            {
                continue;
            }
            decided++;
            Assert.True(verdict == PrecheckVerdict.Valid == valid, $"{task}: precheck {verdict}, library {(valid ? "valid" : "invalid")} for {instance}");
        }
        output.WriteLine($"{task}: {decided} of {total} instances decided by the precheck");
        // The comparison is only worth something if the precheck decides most of the corpus itself.
        Assert.True(decided > total * 3 / 4, $"{decided} of {total} decided");
    }

    // Valid documents and every single-value mutation of them with awkward values, plus hand-picked edge cases.
    private static IEnumerable<string> Corpus(string task)
    {
        var bases = task switch
        {
            "chat.completions" => new[]
            {
                """{"model":"m","messages":[{"role":"user","content":"hi"}]}""",
                """{"model":"m","messages":[{"role":"system","content":"s"},{"role":"tool","tool_call_id":"t","content":"x","name":"n"},{"role":"assistant","tool_calls":[]}],"stream":false,"stream_options":{"include_usage":false},"max_tokens":1,"max_completion_tokens":5,"n":128,"temperature":2,"top_p":0,"presence_penalty":-2,"frequency_penalty":2,"seed":-5,"stop":"x","logprobs":true,"top_logprobs":20,"logit_bias":{"1":2},"user":"u","metadata":{"k":"v","l":"w"},"tools":[{"type":"function","function":{}}],"tool_choice":{"type":"function"},"parallel_tool_calls":false,"response_format":{"type":"json_schema"}}""",
            },
            "embeddings" => new[]
            {
                """{"model":"m","input":"x","encoding_format":"base64","dimensions":1,"user":"u"}""",
                """{"model":"m","input":["a"]}""",
                """{"model":"m","input":[1,2]}""",
                """{"model":"m","input":[[1],[2,3]]}""",
            },
            _ => new[]
            {
                """{"file":{"filename":"a.wav","length":1},"model":"w","language":"en","prompt":"p","response_format":"vtt","temperature":1,"timestamp_granularities":["word","segment"],"stream":false}""",
            },
        };
        JsonNode?[] awkward =
        [
            null, true, false, 0, -1, 1, 2, 3, 4, 20, 21, 128, 129, 2048, JsonNode.Parse("1.0"), JsonNode.Parse("1e2"), 1.5, -0.5, -2.5, 2.0000001,
            JsonNode.Parse("1e400"), JsonNode.Parse("-1e400"), JsonNode.Parse("99999999999999999999999"), JsonNode.Parse("0.30000000000000000000000000001"),
            "", "x", "user", "tool", "system", "assistant", "robot", "json", "float", "word", "text", "ü", "\u00e9\u0301", "😀", "a\"b",
            new JsonArray(), new JsonArray("a"), new JsonArray("a", "b", "c", "d", "e"), new JsonArray(1, 2), new JsonArray(new JsonArray()),
            new JsonArray(new JsonArray(1)), new JsonArray(new JsonObject()), new JsonArray(JsonNode.Parse("""{"role":"user"}""")),
            new JsonObject(), JsonNode.Parse("""{"type":"text"}"""), JsonNode.Parse("""{"include_usage":"yes"}"""), JsonNode.Parse("""{"a":1}"""),
            JsonNode.Parse("""{"filename":"f","length":0}"""), JsonNode.Parse("""{"filename":"f","length":3}"""),
        ];
        foreach (var b in bases)
        {
            yield return b;
            foreach (var (path, _) in Leaves(JsonNode.Parse(b)!, ""))
            {
                foreach (var value in awkward)
                {
                    var doc = JsonNode.Parse(b)!;
                    if (Replace(doc, path, value?.DeepClone()))
                    {
                        yield return doc.ToJsonString();
                    }
                }
                var removed = JsonNode.Parse(b)!;
                if (Remove(removed, path))
                {
                    yield return removed.ToJsonString();
                }
            }
        }
        // Names the precheck must not judge: duplicates and escapes.
        yield return """{"model":"m","messages":[{"role":"user","role":"assistant"}]}""";
        yield return """{"model":"m","messages":[{"role":"robot","role":"user","content":"x"}]}""";
        yield return """{"model":"m","model":"n","messages":[{"role":"user","content":"x"}]}""";
        yield return """{"model":"m","messages":[{"r\u006fle":"user","content":"x"}]}""";
        yield return """{"model":"m","messages":[{"role":"us\u0065r","content":"x"}],"metadata":{"a":"b","a":1}}""";
        yield return """{"model":"m","messages":[{"role":"user","content":"x"}],"metadata":{"a":1,"a":"b"}}""";
        yield return """{"model":"\u0000","input":"x","file":{"filename":"f","length":1}}""";
        yield return """{"model":"\ud83d\ude00","input":"x","file":{"filename":"f","length":1}}""";
        yield return """{"model":" ","input":"x","file":{"filename":"f","length":1}}""";
    }

    private static IEnumerable<(string Path, JsonNode? Node)> Leaves(JsonNode node, string path)
    {
        yield return (path, node);
        switch (node)
        {
            case JsonObject obj:
                foreach (var (name, child) in obj)
                {
                    foreach (var leaf in child is null ? [(path + "/" + name, null)] : Leaves(child, path + "/" + name))
                    {
                        yield return leaf;
                    }
                }
                break;
            case JsonArray array:
                for (var i = 0; i < array.Count; i++)
                {
                    foreach (var leaf in array[i] is { } child ? Leaves(child, $"{path}/{i}") : [($"{path}/{i}", null)])
                    {
                        yield return leaf;
                    }
                }
                break;
        }
    }

    private static (JsonNode? Parent, string Key)? Locate(JsonNode root, string path)
    {
        if (path.Length == 0)
        {
            return null;
        }
        var segments = path.Split('/')[1..];
        JsonNode? current = root;
        foreach (var segment in segments[..^1])
        {
            current = current is JsonArray a ? a[int.Parse(segment, System.Globalization.CultureInfo.InvariantCulture)] : current?[segment];
        }
        return (current, segments[^1]);
    }

    private static bool Replace(JsonNode root, string path, JsonNode? value)
    {
        if (Locate(root, path) is not ({ } parent, var key))
        {
            return false;
        }
        if (parent is JsonArray a)
        {
            a[int.Parse(key, System.Globalization.CultureInfo.InvariantCulture)] = value;
        }
        else
        {
            parent[key] = value;
        }
        return true;
    }

    private static bool Remove(JsonNode root, string path)
    {
        if (Locate(root, path) is not ({ } parent, var key))
        {
            return false;
        }
        if (parent is JsonArray a)
        {
            a.RemoveAt(int.Parse(key, System.Globalization.CultureInfo.InvariantCulture));
        }
        else
        {
            ((JsonObject)parent).Remove(key);
        }
        return true;
    }
}
