using System.Text.Json.Nodes;
using Lattice.Cli.Commands;

namespace Lattice.Cli.Tests.Commands;

/// <summary>The table <c>lattice usage</c> prints, from the data of <c>GET /v1/usage</c> pages.</summary>
public sealed class UsageReportTests
{
    // 2026-03-01 and 2026-03-02, 00:00 UTC.
    private const long Day1 = 1772323200;
    private const long Day2 = Day1 + 86400;

    private static JsonNode Bucket(long start, params JsonObject[] results) => new JsonObject
    {
        ["object"] = "bucket",
        ["start_time"] = start,
        ["end_time"] = start + 86400,
        ["results"] = new JsonArray(results),
    };

    private static JsonObject Result(string? model, string? key, long requests, long input, long output, string cost) => new()
    {
        ["object"] = "organization.usage.completions.result",
        ["num_model_requests"] = requests,
        ["input_tokens"] = input,
        ["output_tokens"] = output,
        ["cost_usd"] = cost,
        ["model"] = model,
        ["key_id"] = key,
    };

    [Fact]
    public void By_model_sums_every_bucket_into_one_row_per_model_and_a_total()
    {
        var text = UsageReport.Render(
        [
            Bucket(Day1, Result("lovelace:chat", null, 2, 1200, 300, "0.0015"), Result("lovelace:embed", null, 1, 50, 0, "0.000001")),
            Bucket(Day2, Result("lovelace:chat", null, 1000, 1_000_000, 25_000, "3.000000000001")),
        ], UsageReport.Model);
        Assert.Equal(
            "MODEL           REQUESTS  INPUT TOKENS  OUTPUT TOKENS      COST (USD)\n" +
            "lovelace:chat      1,002     1,001,200         25,300  3.001500000001\n" +
            "lovelace:embed         1            50              0        0.000001\n" +
            "TOTAL              1,003     1,001,250         25,300  3.001501000001\n",
            text);
    }

    [Fact]
    public void By_key_names_requests_without_a_key_and_by_day_shows_quiet_days()
    {
        var byKey = UsageReport.Render([Bucket(Day1, Result(null, "key_abc", 1, 10, 5, "0.5"), Result(null, null, 2, 20, 10, "0.5"))], UsageReport.Key);
        Assert.Equal(
            "KEY              REQUESTS  INPUT TOKENS  OUTPUT TOKENS  COST (USD)\n" +
            "(access tokens)         2            20             10         0.5\n" +
            "key_abc                 1            10              5         0.5\n" +
            "TOTAL                   3            30             15           1\n",
            byKey);

        var byDay = UsageReport.Render([Bucket(Day1), Bucket(Day2, Result(null, null, 4, 8, 2, "0"))], UsageReport.Day);
        Assert.Equal(
            "DAY         REQUESTS  INPUT TOKENS  OUTPUT TOKENS  COST (USD)\n" +
            "2026-03-01         0             0              0           0\n" +
            "2026-03-02         4             8              2           0\n" +
            "TOTAL              4             8              2           0\n",
            byDay);
    }

    [Theory]
    [InlineData("model", "&group_by=model")]
    [InlineData("key", "&group_by=key_id")]
    [InlineData("day", "")]
    public void Each_grouping_asks_the_api_for_its_group_by(string by, string query)
    {
        Assert.Equal(query, UsageReport.GroupBy(by));
    }
}
