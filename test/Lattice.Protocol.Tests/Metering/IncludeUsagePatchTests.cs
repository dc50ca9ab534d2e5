using System.Text;
using System.Text.Json.Nodes;
using Lattice.Protocol.Metering;

namespace Lattice.Protocol.Tests.Metering;

public sealed class IncludeUsagePatchTests
{
    [Theory]
    // No stream_options: a member right after the top-level brace.
    [InlineData("""{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}""",
        """{"stream_options":{"include_usage":true},"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}""")]
    [InlineData("{\n  \"stream\": true,\n  \"model\": \"m\"\n}", """{"stream_options":{"include_usage":true},"stream":true,"model":"m"}""")]
    // stream_options null: the null replaced.
    [InlineData("""{"model":"m","stream_options":null,"stream":true}""", """{"model":"m","stream_options":{"include_usage":true},"stream":true}""")]
    // An object without include_usage: a member after its brace, with or without a comma.
    [InlineData("""{"stream":true,"stream_options":{}}""", """{"stream":true,"stream_options":{"include_usage":true}}""")]
    [InlineData("""{"stream":true,"stream_options":{ }}""", """{"stream":true,"stream_options":{"include_usage":true}}""")]
    [InlineData("""{"stream":true,"stream_options":{"include_obfuscation":false}}""", """{"stream":true,"stream_options":{"include_usage":true,"include_obfuscation":false}}""")]
    // include_usage false (or null): the value replaced.
    [InlineData("""{"stream":true,"stream_options":{"include_usage":false}}""", """{"stream":true,"stream_options":{"include_usage":true}}""")]
    [InlineData("""{"stream":true,"stream_options":{"x":1, "include_usage" : false }}""", """{"stream":true,"stream_options":{"x":1,"include_usage":true}}""")]
    [InlineData("""{"stream":true,"stream_options":{"include_usage":null}}""", """{"stream":true,"stream_options":{"include_usage":true}}""")]
    // Nested namesakes are not the request's.
    [InlineData("""{"metadata":{"stream_options":null},"messages":[{"content":"\"stream_options\":{}"}],"stream":true}""",
        """{"stream_options":{"include_usage":true},"metadata":{"stream_options":null},"messages":[{"content":"\"stream_options\":{}"}],"stream":true}""")]
    public void The_patched_request_asks_for_usage_and_nothing_else_changes(string request, string expected)
    {
        byte[] original = Encoding.UTF8.GetBytes(request);
        Assert.False(IncludeUsagePatch.ClientAskedForUsage(original));
        Assert.True(IncludeUsagePatch.TryCreate(original, out var splice));

        byte[] patched = splice.ApplyTo(original);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected), JsonNode.Parse(patched)));
        Assert.True(IncludeUsagePatch.ClientAskedForUsage(patched));
        Assert.False(IncludeUsagePatch.TryCreate(patched, out _));

        // Every byte outside the splice is the client's, in place.
        Assert.Equal(original.Length + splice.Growth, patched.Length);
        Assert.Equal(original[..splice.Offset], patched[..splice.Offset]);
        Assert.Equal(original[(splice.Offset + splice.Length)..], patched[(splice.Offset + splice.Replacement.Length)..]);
        Assert.True(splice.Length is 0 or 4 or 5);
        if (splice.Length > 0)
        {
            Assert.Contains(Encoding.UTF8.GetString(original, splice.Offset, splice.Length), new[] { "null", "false" });
        }
    }

    [Theory]
    [InlineData("""{"model":"m","messages":[]}""")] // does not stream
    [InlineData("""{"model":"m","stream":false}""")]
    [InlineData("""{"model":"m","stream":"true"}""")]
    [InlineData("""{"stream":true,"stream_options":{"include_usage":true}}""")] // already asks
    [InlineData("""{"stream":true,"stream_options":"on"}""")] // the target rejects these anyway
    [InlineData("""{"stream":true,"stream_options":{"include_usage":"yes"}}""")]
    [InlineData("""[{"stream":true}]""")]
    [InlineData("""{"stream":true""")]
    [InlineData("")]
    public void No_splice_when_none_is_needed_or_possible(string request) =>
        Assert.False(IncludeUsagePatch.TryCreate(Encoding.UTF8.GetBytes(request), out _));

    [Theory]
    [InlineData("""{"stream":true,"stream_options":{"include_usage":true}}""", true)]
    [InlineData("""{"stream_options":{"include_usage":true}}""", true)]
    [InlineData("""{"stream":true,"stream_options":{"include_usage":false}}""", false)]
    [InlineData("""{"stream":true,"metadata":{"stream_options":{"include_usage":true}}}""", false)]
    [InlineData("""{"stream_options":{"include_usage":true}""", false)]
    public void Client_asked_for_usage_only_when_it_set_include_usage_true(string request, bool asked) =>
        Assert.Equal(asked, IncludeUsagePatch.ClientAskedForUsage(Encoding.UTF8.GetBytes(request)));
}
