using System.Text.Json;
using Lattice.Gateway.Catalog;

namespace Lattice.Gateway.Tests.Catalog;

public sealed class InputSchemaTests
{
    [Theory]
    [InlineData("", null)]
    [InlineData("/model", "model")]
    [InlineData("/messages/0/role", "messages[0].role")]
    [InlineData("/a~1b/2", "a/b[2]")]
    [InlineData("/stream_options/include_usage", "stream_options.include_usage")]
    public void Json_pointers_become_openai_params(string pointer, string? param) =>
        Assert.Equal(param, InputSchema.PointerToParam(pointer));

    [Fact]
    public void A_schema_that_is_not_an_object_is_refused()
    {
        Assert.Null(InputSchema.TryCreate("[1]", out var error));
        Assert.NotNull(error);
        Assert.Null(InputSchema.TryCreate("{", out _));
    }

    [Fact]
    public void The_deepest_violation_is_reported()
    {
        var schema = InputSchema.TryCreate("""
            {"type":"object","required":["list"],"properties":{"list":{"type":"array","items":{"type":"object","required":["id"],"properties":{"id":{"type":"integer","minimum":1}}}}}}
            """, out _)!;
        using var doc = JsonDocument.Parse("""{"list":[{"id":1},{"id":0}]}""");
        var violation = schema.Validate(doc.RootElement);
        Assert.NotNull(violation);
        Assert.Equal("list[1].id", violation.Value.Param);
        Assert.True(violation.Value.Message.Contains(">= 1", StringComparison.Ordinal), violation.Value.Message);

        using var ok = JsonDocument.Parse("""{"list":[{"id":1}],"unknown":true}""");
        Assert.Null(schema.Validate(ok.RootElement));
    }

    [Fact]
    public void A_failed_condition_is_not_an_error()
    {
        var chat = InputSchema.TryCreate(BuiltInTaskClasses.All(DateTimeOffset.UnixEpoch).Single(t => t.Name == "chat.completions").InputSchema, out _)!;
        using var doc = JsonDocument.Parse("""{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[]}]}""");
        Assert.Null(chat.Validate(doc.RootElement));
    }
}
