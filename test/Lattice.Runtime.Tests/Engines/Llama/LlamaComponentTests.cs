using System.Text;
using System.Text.Json;
using Lattice.Runtime.Engines.Llama;

namespace Lattice.Runtime.Tests.Engines.Llama;

/// <summary>Unit tests of the engine's parts that need no model.</summary>
public sealed class LlamaComponentTests
{
    [Fact]
    public void StopFilter_WithoutStops_PassesTextThrough()
    {
        var filter = new StopSequenceFilter([]);
        Assert.Equal("abc", filter.Push("abc"));
        Assert.Equal("", filter.Flush());
        Assert.False(filter.Stopped);
    }

    [Fact]
    public void StopFilter_HoldsBackPossibleStartsAndCutsAcrossPieces()
    {
        var filter = new StopSequenceFilter(["lo w"]);
        var emitted = new StringBuilder();
        foreach (var piece in new[] { "Hel", "lo", " wor", "ld" })
        {
            emitted.Append(filter.Push(piece));
        }
        Assert.True(filter.Stopped);
        Assert.Equal("Hel", emitted.ToString());
        Assert.Equal("", filter.Flush());
    }

    [Fact]
    public void StopFilter_ReleasesHeldTextWhenItIsNotAStop()
    {
        var filter = new StopSequenceFilter(["END"]);
        Assert.Equal("the ", filter.Push("the E"));
        Assert.Equal("Eagle", filter.Push("agle"));
        Assert.Equal("", filter.Push("EN"));
        Assert.Equal("EN", filter.Flush());
        Assert.False(filter.Stopped);
    }

    [Fact]
    public void StopFilter_EarliestStopWins()
    {
        var filter = new StopSequenceFilter(["c", "ab"]);
        Assert.Equal("x", filter.Push("xabc"));
        Assert.True(filter.Stopped);
        Assert.Equal("", filter.Push("more"));
    }

    [Fact]
    public void Grammar_JsonObject()
    {
        var grammar = JsonGrammar.ForJsonObject();
        Assert.StartsWith("root ::= json-object\n", grammar, StringComparison.Ordinal);
        Assert.Contains("\nws ::= \" \"?\n", grammar, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"type":"string","pattern":"^a+$"}""", "json-string")]
    [InlineData("""{"type":"integer","minimum":3}""", "json-integer")]
    [InlineData("""{"type":"number"}""", "json-number")]
    [InlineData("""{"type":"boolean"}""", "json-boolean")]
    [InlineData("""{}""", "json-value")]
    [InlineData("""{"not":{"type":"string"}}""", "json-value")]
    [InlineData("""{"$ref":"https://example.com/schema"}""", "json-value")]
    [InlineData("""{"const":"a\"b"}""", "\"\\\"a\\\\\\\"b\\\"\"")]
    [InlineData("""{"enum":["x",1,null]}""", "( \"\\\"x\\\"\" | \"1\" | \"null\" )")]
    [InlineData("""{"type":["integer","null"]}""", "( json-integer | json-null )")]
    public void Grammar_RootExpressionForSimpleSchemas(string schema, string expectedRoot)
    {
        using var document = JsonDocument.Parse(schema);
        var grammar = JsonGrammar.ForSchema(document.RootElement);
        Assert.Equal("root ::= " + expectedRoot, grammar.Split('\n')[0]);
    }

    [Fact]
    public void Grammar_ObjectHasRequiredThenOptionalMembers()
    {
        using var document = JsonDocument.Parse("""{"type":"object","properties":{"o":{"type":"string"},"r":{"type":"integer"}},"required":["r"]}""");
        var grammar = JsonGrammar.ForSchema(document.RootElement);
        var rules = grammar.Split('\n', StringSplitOptions.RemoveEmptyEntries).ToDictionary(l => l[..l.IndexOf(" ::= ", StringComparison.Ordinal)], l => l[(l.IndexOf(" ::= ", StringComparison.Ordinal) + 5)..]);
        Assert.Equal("s-schema", rules["root"]);
        Assert.Equal("\"{\" ws s-schema-r-kv ( ws \",\" ws s-schema-o-kv )? ws \"}\"", rules["s-schema"]);
        Assert.Equal("\"\\\"r\\\"\" ws \":\" ws json-integer", rules["s-schema-r-kv"]);
        // Every referenced rule is defined.
        foreach (var body in rules.Values)
        {
            foreach (var word in body.Split(' ').Where(w => w.Length > 0 && (char.IsAsciiLetter(w[0]) || w[0] == '-') && !w.StartsWith('"')))
            {
                var name = word.TrimEnd('?', '*', '+');
                if (name.All(c => char.IsAsciiLetterOrDigit(c) || c == '-'))
                {
                    Assert.True(rules.ContainsKey(name), $"rule '{name}' is not defined");
                }
            }
        }
    }

    [Fact]
    public void Grammar_LiteralEscapesQuotesBackslashesAndControls()
    {
        Assert.Equal("\"a\\\"b\\\\c\\nd\\x01é\"", JsonGrammar.Literal("a\"b\\c\nd\u0001é"));
    }

    [Fact]
    public void Parse_MapsRolesAndContentParts()
    {
        var request = Parse("""
            {"messages":[
              {"role":"developer","content":"be brief"},
              {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
              {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"x\": 1}"}}]},
              {"role":"tool","tool_call_id":"call_1","content":"42"},
              {"role":"function","name":"f","content":"old"}],
             "temperature":null,"top_p":null,"stop":null,"seed":7}
            """);
        Assert.Equal(
            [new ChatMessage("system", "be brief"), new ChatMessage("user", "a\nb"), new ChatMessage("assistant", "{\"name\":\"f\",\"arguments\":{\"x\": 1}}"), new ChatMessage("tool", "42"), new ChatMessage("tool", "old")],
            request.Messages);
        Assert.Equal(1f, request.Temperature);
        Assert.Equal(1f, request.TopP);
        Assert.Empty(request.Stop);
        Assert.Equal(7, request.Seed);
        Assert.Equal(OutputMode.Text, request.Mode);
        Assert.Null(request.Grammar);
    }

    [Fact]
    public void Parse_StreamOptionsAndLimits()
    {
        var request = Parse("""{"messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true},"max_completion_tokens":9,"max_tokens":5,"stop":"\n","n":3}""");
        Assert.True(request.Stream);
        Assert.True(request.IncludeUsage);
        Assert.Equal(9, request.MaxTokens);
        Assert.Equal(["\n"], request.Stop);
        Assert.Equal(3, request.N);
    }

    [Fact]
    public void Parse_OutputModes()
    {
        Assert.Equal(OutputMode.Text, Parse(WithTools(""","tool_choice":"none","response_format":{"type":"text"}} """)).Mode);
        Assert.Equal(OutputMode.Text, Parse(WithTools("""} """)).Mode);
        Assert.Equal(OutputMode.Json, Parse(WithTools(""","tool_choice":"auto","response_format":{"type":"json_object"}} """)).Mode);

        var forced = Parse(WithTools(""","tool_choice":{"type":"function","function":{"name":"b"}}} """));
        Assert.Equal(OutputMode.FunctionArguments, forced.Mode);
        Assert.Equal("b", forced.FunctionName);
        Assert.StartsWith("root ::= \"{}\"", forced.Grammar, StringComparison.Ordinal);

        var any = Parse(WithTools(""","tool_choice":"required"} """));
        Assert.Equal(OutputMode.AnyFunctionCall, any.Mode);
        Assert.Contains("\"\\\"a\\\"\"", any.Grammar, StringComparison.Ordinal);
        Assert.Contains("\"\\\"b\\\"\"", any.Grammar, StringComparison.Ordinal);

        var schemaless = Parse("""{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"n"}}}""");
        Assert.Equal(OutputMode.Json, schemaless.Mode);
        Assert.StartsWith("root ::= json-object", schemaless.Grammar, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0L, 0u)]
    [InlineData(42L, 42u)]
    [InlineData(4294967295L, 4294967294u)] // llama.cpp reads 0xFFFFFFFF as "pick a random seed"
    [InlineData(-1L, 0u)]
    public void MapSeed_IsDeterministicAndNeverTheRandomSeed(long seed, uint expected)
    {
        Assert.Equal(expected, LlamaEngine.MapSeed(seed));
    }

    private static string WithTools(string rest) =>
        """{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"a","parameters":{"type":"object","properties":{"p":{"type":"integer"}},"required":["p"]}}},{"type":"function","function":{"name":"b"}}]"""
        + rest.TrimEnd();

    private static ChatRequest Parse(string json) => ChatRequest.Parse(Encoding.UTF8.GetBytes(json), streamRequested: false);
}
