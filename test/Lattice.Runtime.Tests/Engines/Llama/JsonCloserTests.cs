using System.Text.Json;
using Lattice.Runtime.Engines.Llama;

namespace Lattice.Runtime.Tests.Engines.Llama;

public sealed class JsonCloserTests
{
    public static TheoryData<string> Documents() =>
    [
        """{"name":"Lily","age":3,"happy":true,"tags":["a","b"],"score":-1.5e+3,"pet":{"kind":"cat","legs":4},"none":null,"f":false}""",
        """ { "a" : [ 1 , 2.25 , { "b" : [ ] } , [ ] , { } ] , "c" : "x\"y\\z\n\u00e9\uD83D\uDE00" } """,
        """[{"v":1,"kids":[{"v":2,"kids":[]}]},[[["deep"]]],0,-0.5,1E-2]""",
        "\"just a string with \\\"quotes\\\" and \\u0041\"",
        "-12.5e-10",
        "null",
        "{}",
        "[]",
    ];

    [Theory]
    [MemberData(nameof(Documents))]
    public void Every_prefix_plus_its_suffix_is_a_json_document(string document)
    {
        for (var length = 0; length <= document.Length; length++)
        {
            var closer = new JsonCloser();
            var prefix = document[..length];
            closer.Feed(prefix);
            var closed = prefix + closer.Suffix();
            try
            {
                using var parsed = JsonDocument.Parse(closed);
            }
            catch (JsonException e)
            {
                Assert.Fail($"'{closed}' (prefix of {length}) does not parse: {e.Message}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Documents))]
    public void A_complete_document_needs_nothing_and_feeding_in_pieces_is_the_same(string document)
    {
        var whole = new JsonCloser();
        whole.Feed(document);
        Assert.Equal("", whole.Suffix());

        var pieces = new JsonCloser();
        for (var i = 0; i < document.Length; i += 3)
        {
            pieces.Feed(document.AsSpan(i, Math.Min(3, document.Length - i)));
            var copy = pieces;
            var prefix = document[..Math.Min(document.Length, i + 3)];
            var fresh = new JsonCloser();
            fresh.Feed(prefix);
            Assert.Equal(fresh.Suffix(), copy.Suffix());
        }
    }

    [Theory]
    [InlineData("", "{}")]
    [InlineData("{", "}")]
    [InlineData("{\"na", "\":null}")]
    [InlineData("{\"name\"", ":null}")]
    [InlineData("{\"name\":", "null}")]
    [InlineData("{\"name\":\"Li", "\"}")]
    [InlineData("{\"name\":\"Li\\", "n\"}")]
    [InlineData("{\"name\":\"\\u00", "00\"}")]
    [InlineData("{\"a\":[1,", "null]}")]
    [InlineData("{\"a\":[1.", "0]}")]
    [InlineData("{\"a\":tr", "ue}")]
    [InlineData("{\"a\":1,", "\"\":null}")]
    [InlineData("[{\"a\":[", "]}]")]
    public void The_suffix_is_the_shortest_closing(string prefix, string suffix)
    {
        var closer = new JsonCloser();
        closer.Feed(prefix);
        Assert.Equal(suffix, closer.Suffix());
    }
}
