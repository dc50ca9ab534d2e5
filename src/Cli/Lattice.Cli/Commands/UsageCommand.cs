using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace Lattice.Cli.Commands;

/// <summary><c>lattice usage</c>: what the workspace's developer key has used and what it cost, from <c>GET /v1/usage</c>.</summary>
internal static class UsageCommand
{
    public static Command Create()
    {
        var developer = new DeveloperOptions();
        var since = new Option<string>("--since") { Description = "How far back: 24h (default), 7d, 90m.", DefaultValueFactory = _ => "24h" };
        var by = new Option<string>("--by") { Description = "One row per model (default), key or day.", DefaultValueFactory = _ => "model" };
        by.AcceptOnlyFromAmong(UsageReport.Model, UsageReport.Key, UsageReport.Day);
        var json = new Option<bool>("--json") { Description = "Print the API's JSON (one page with every bucket) instead of a table." };

        var command = new Command("usage", "Show requests, tokens and cost for the workspace.") { since, by, json };
        developer.AddTo(command);
        command.SetAction(async (parse, ct) =>
        {
            if (KeysCommand.ParseLifetime(parse.GetValue(since)!) is not { } window)
            {
                await Console.Error.WriteLineAsync($"--since '{parse.GetValue(since)}' is not a duration such as 24h, 7d or 90m.");
                return 2;
            }
            if (developer.Resolve(parse) is not { } api)
            {
                return 2;
            }

            var grouping = parse.GetValue(by)!;
            var end = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            var start = Math.Max(0, end - (long)window.TotalSeconds);
            var query = $"/v1/usage?start_time={start}&end_time={end}&bucket_width=1d&limit=31" + UsageReport.GroupBy(grouping);
            var buckets = new JsonArray();
            string? page = null;
            do
            {
                var result = await api.SendAsync(HttpMethod.Get, page is null ? query : query + "&page=" + Uri.EscapeDataString(page), null, ct);
                if (result is null)
                {
                    return 1;
                }
                foreach (var bucket in result["data"]!.AsArray())
                {
                    buckets.Add(bucket!.DeepClone());
                }
                page = result["has_more"]!.GetValue<bool>() ? result["next_page"]!.GetValue<string>() : null;
            }
            while (page is not null);

            Console.Write(parse.GetValue(json)
                ? new JsonObject { ["object"] = "page", ["data"] = buckets, ["has_more"] = false, ["next_page"] = null }.ToJsonString() + Environment.NewLine
                : UsageReport.Render(buckets, grouping));
            return 0;
        });
        return command;
    }
}

/// <summary>The table <c>lattice usage</c> prints: one row per model, key or day, then the total.</summary>
internal static class UsageReport
{
    public const string Model = "model";
    public const string Key = "key";
    public const string Day = "day";

    /// <summary>The <c>group_by</c> a grouping asks the API for.</summary>
    public static string GroupBy(string by) => by switch
    {
        Model => "&group_by=model",
        Key => "&group_by=key_id",
        _ => "",
    };

    private sealed record Row(string Label, long Requests, long Input, long Output, decimal Cost);

    /// <summary>Renders <paramref name="buckets"/> (the <c>data</c> of <c>/v1/usage</c> pages) grouped <paramref name="by"/>.</summary>
    public static string Render(IEnumerable<JsonNode?> buckets, string by)
    {
        var rows = new Dictionary<string, Row>(StringComparer.Ordinal);
        foreach (var bucket in buckets)
        {
            var day = DateTimeOffset.FromUnixTimeSeconds(bucket!["start_time"]!.GetValue<long>()).ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
            if (by == Day)
            {
                // Quiet days get a row too.
                rows.TryAdd(day, new Row(day, 0, 0, 0, 0m));
            }
            foreach (var result in bucket["results"]!.AsArray())
            {
                var label = by switch
                {
                    Model => result!["model"]?.GetValue<string>() ?? "(none)",
                    // Requests made with OAuth access tokens have no developer key.
                    Key => result!["key_id"]?.GetValue<string>() ?? "(access tokens)",
                    _ => day,
                };
                var add = new Row(label,
                    result!["num_model_requests"]!.GetValue<long>(),
                    result["input_tokens"]!.GetValue<long>(),
                    result["output_tokens"]!.GetValue<long>(),
                    decimal.Parse(result["cost_usd"]!.GetValue<string>(), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture));
                rows[label] = rows.TryGetValue(label, out var row)
                    ? row with { Requests = row.Requests + add.Requests, Input = row.Input + add.Input, Output = row.Output + add.Output, Cost = row.Cost + add.Cost }
                    : add;
            }
        }

        var ordered = rows.Values.OrderBy(r => r.Label, StringComparer.Ordinal).ToList();
        var total = new Row("TOTAL", ordered.Sum(r => r.Requests), ordered.Sum(r => r.Input), ordered.Sum(r => r.Output), ordered.Sum(r => r.Cost));
        var header = new Row(by.ToUpperInvariant(), 0, 0, 0, 0m);
        string[][] cells =
        [
            [header.Label, "REQUESTS", "INPUT TOKENS", "OUTPUT TOKENS", "COST (USD)"],
            .. ordered.Append(total).Select(r => new[] { r.Label, Number(r.Requests), Number(r.Input), Number(r.Output), Usd(r.Cost) }),
        ];
        var widths = Enumerable.Range(0, 5).Select(c => cells.Max(row => row[c].Length)).ToArray();
        var text = new StringBuilder();
        foreach (var row in cells)
        {
            text.Append(row[0].PadRight(widths[0]));
            for (var c = 1; c < 5; c++)
            {
                text.Append("  ").Append(row[c].PadLeft(widths[c]));
            }
            text.Append('\n');
        }
        return text.ToString();
    }

    private static string Number(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    /// <summary>Exact, with only the decimals needed: the API's own cost strings summed as decimals.</summary>
    private static string Usd(decimal value) => (value / 1.000000000000000000000000000000000m).ToString(CultureInfo.InvariantCulture);
}
