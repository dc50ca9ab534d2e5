using System.Text.Json.Nodes;
using Lattice.Cli.Commands;

namespace Lattice.Cli.Tests.Commands;

/// <summary>How <c>--rpm</c>, <c>--tpm</c> and <c>--concurrency</c> become the admin API's <c>limits</c> object, and how limits print.</summary>
public sealed class LimitSettingsTests
{
    private static LimitSettings.Flag Flag(string name) => LimitSettings.Flags.Single(f => f.Name == name);

    [Theory]
    [InlineData("--rpm", "60", 60L)]
    [InlineData("--rpm", "2147483647", 2147483647L)]
    [InlineData("--tpm", "1000000000000", 1000000000000L)]
    [InlineData("--concurrency", " 4 ", 4L)]
    [InlineData("--rpm", "0", null)]
    [InlineData("--tpm", "none", null)]
    [InlineData("--concurrency", "NONE", null)]
    public void A_flag_is_a_positive_whole_number_or_0_or_none_for_no_limit(string flag, string text, long? expected)
    {
        Assert.True(LimitSettings.TryParse(Flag(flag), text, out var value, out var error), error);
        Assert.Equal(expected, value);
    }

    [Theory]
    [InlineData("--rpm", "-1", "--rpm '-1' is not a limit: give a whole number from 1 to 2147483647, or 0 or none for no limit.")]
    [InlineData("--rpm", "2147483648", "--rpm '2147483648' is not a limit: give a whole number from 1 to 2147483647, or 0 or none for no limit.")]
    [InlineData("--tpm", "1000000000001", "--tpm '1000000000001' is not a limit: give a whole number from 1 to 1000000000000, or 0 or none for no limit.")]
    [InlineData("--concurrency", "2.5", "--concurrency '2.5' is not a limit: give a whole number from 1 to 2147483647, or 0 or none for no limit.")]
    [InlineData("--concurrency", "lots", "--concurrency 'lots' is not a limit: give a whole number from 1 to 2147483647, or 0 or none for no limit.")]
    [InlineData("--tpm", "", "--tpm '' is not a limit: give a whole number from 1 to 1000000000000, or 0 or none for no limit.")]
    public void Anything_else_is_refused_naming_the_flag_and_the_range(string flag, string text, string message)
    {
        Assert.False(LimitSettings.TryParse(Flag(flag), text, out _, out var error));
        Assert.Equal(message, error);
    }

    [Fact]
    public void Set_keeps_the_limits_not_given_changes_those_given_and_drops_those_removed()
    {
        var current = JsonNode.Parse("""{"requests_per_minute":60,"tokens_per_minute":100000,"max_concurrent":4}""");
        Assert.Equal("""{"requests_per_minute":30,"tokens_per_minute":100000,"max_concurrent":4}""",
            LimitSettings.Merge(current, new Dictionary<string, long?> { ["requests_per_minute"] = 30 }).ToJsonString());
        Assert.Equal("""{"requests_per_minute":60,"max_concurrent":4}""",
            LimitSettings.Merge(current, new Dictionary<string, long?> { ["tokens_per_minute"] = null }).ToJsonString());
        Assert.Equal("{}",
            LimitSettings.Merge(current, new Dictionary<string, long?> { ["requests_per_minute"] = null, ["tokens_per_minute"] = null, ["max_concurrent"] = null }).ToJsonString());
    }

    [Fact]
    public void Set_on_no_limits_sends_only_the_ones_given_in_the_apis_order()
    {
        Assert.Equal("""{"tokens_per_minute":100000,"max_concurrent":2}""",
            LimitSettings.Merge(null, new Dictionary<string, long?> { ["max_concurrent"] = 2, ["tokens_per_minute"] = 100000, ["requests_per_minute"] = null }).ToJsonString());
    }

    [Fact]
    public void Limits_print_compactly_with_a_dash_for_none()
    {
        Assert.Equal("rpm=60 tpm=100000 conc=4", LimitSettings.Compact(JsonNode.Parse("""{"requests_per_minute":60,"tokens_per_minute":100000,"max_concurrent":4}""")));
        Assert.Equal("conc=2", LimitSettings.Compact(JsonNode.Parse("""{"requests_per_minute":null,"max_concurrent":2}""")));
        Assert.Equal("-", LimitSettings.Compact(null));
        Assert.Equal("-", LimitSettings.Compact(JsonNode.Parse("{}")));
    }

    [Fact]
    public void A_limits_answer_prints_whose_limits_they_are()
    {
        Assert.Equal("key key_abc: rpm=1 tpm=5000000",
            LimitSettings.Describe(JsonNode.Parse("""{"scope":"key","id":"key_abc","limits":{"requests_per_minute":1,"tokens_per_minute":5000000,"max_concurrent":null},"object":"limits"}""")!));
        Assert.Equal("workspace ws_1: no limits",
            LimitSettings.Describe(JsonNode.Parse("""{"scope":"workspace","id":"ws_1","limits":null,"object":"limits"}""")!));
    }
}
