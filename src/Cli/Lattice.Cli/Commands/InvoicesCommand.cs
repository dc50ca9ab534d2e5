using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace Lattice.Cli.Commands;

/// <summary>
/// <c>lattice invoices</c>: the workspace's monthly invoices (<c>GET /v1/invoices</c>), one in detail
/// (<c>show &lt;id&gt;</c>), or its lines as CSV (<c>csv &lt;id&gt;</c>), with a developer key.
/// </summary>
internal static class InvoicesCommand
{
    public static Command Create()
    {
        var developer = new DeveloperOptions();
        var json = new Option<bool>("--json") { Description = "Print the API's JSON instead of a table.", Recursive = true };

        var list = new Command("invoices", "List the workspace's monthly invoices, newest first.") { json };
        developer.AddTo(list);
        list.SetAction(async (parse, ct) =>
        {
            if (developer.Resolve(parse) is not { } api)
            {
                return 2;
            }
            if (await api.SendAsync(HttpMethod.Get, "/v1/invoices", null, ct) is not { } result)
            {
                return 1;
            }
            Console.Write(parse.GetValue(json) ? result.ToJsonString() + Environment.NewLine : InvoiceReport.RenderList(result["data"]!.AsArray()));
            return 0;
        });

        var id = new Argument<string>("id") { Description = "The invoice id (in_…)." };
        var show = new Command("show", "Show one invoice: its lines, quantities, unit prices and amounts.") { id };
        show.SetAction(async (parse, ct) =>
        {
            if (developer.Resolve(parse) is not { } api)
            {
                return 2;
            }
            if (await api.SendAsync(HttpMethod.Get, "/v1/invoices/" + Uri.EscapeDataString(parse.GetValue(id)!), null, ct) is not { } invoice)
            {
                return 1;
            }
            Console.Write(parse.GetValue(json) ? invoice.ToJsonString() + Environment.NewLine : InvoiceReport.RenderInvoice(invoice));
            return 0;
        });

        var csvId = new Argument<string>("id") { Description = "The invoice id (in_…)." };
        var csv = new Command("csv", "Print an invoice's lines as CSV.") { csvId };
        csv.SetAction(async (parse, ct) =>
        {
            if (developer.Resolve(parse) is not { } api)
            {
                return 2;
            }
            if (await api.SendForTextAsync(HttpMethod.Get, "/v1/invoices/" + Uri.EscapeDataString(parse.GetValue(csvId)!) + "/lines.csv", null, ct) is not { } text)
            {
                return 1;
            }
            Console.Write(text);
            return 0;
        });

        list.Subcommands.Add(show);
        list.Subcommands.Add(csv);
        return list;
    }
}

/// <summary>The tables <c>lattice invoices</c> prints.</summary>
internal static class InvoiceReport
{
    /// <summary>One row per invoice: id, month (UTC), status, total.</summary>
    public static string RenderList(IEnumerable<JsonNode?> invoices)
    {
        string[][] rows =
        [
            ["ID", "MONTH", "STATUS", "TOTAL (USD)"],
            .. invoices.Select(i => new[]
            {
                i!["id"]!.GetValue<string>(),
                Month(i["period_start"]!.GetValue<long>()),
                i["status"]!.GetValue<string>(),
                i["total_usd"]!.GetValue<string>(),
            }),
        ];
        return Table(rows, rightAligned: 3);
    }

    /// <summary>The invoice's heading, then one row per line and the total.</summary>
    public static string RenderInvoice(JsonNode invoice)
    {
        var text = new StringBuilder()
            .Append(CultureInfo.InvariantCulture, $"{invoice["id"]!.GetValue<string>()}  {Month(invoice["period_start"]!.GetValue<long>())}  {invoice["status"]!.GetValue<string>()}\n\n");
        string[][] rows =
        [
            ["MODEL", "TASK", "REQUESTS", "INPUT TOKENS", "OUTPUT TOKENS", "AMOUNT (USD)"],
            .. invoice["lines"]!.AsArray().Select(l => new[]
            {
                l!["model"]!.GetValue<string>(),
                l["task"]!.GetValue<string>(),
                Number(l["quantities"]!["requests"]!.GetValue<long>()),
                Number(l["quantities"]!["input_tokens"]!.GetValue<long>()),
                Number(l["quantities"]!["output_tokens"]!.GetValue<long>()),
                l["amount_usd"]!.GetValue<string>(),
            }),
            ["TOTAL", "", "", "", "", invoice["total_usd"]!.GetValue<string>()],
        ];
        return text.Append(Table(rows, rightAligned: 2)).ToString();
    }

    private static string Month(long unixSeconds) =>
        DateTimeOffset.FromUnixTimeSeconds(unixSeconds).ToString("yyyy-MM", CultureInfo.InvariantCulture);

    private static string Number(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    /// <summary>Columns padded to their widest cell; from <paramref name="rightAligned"/> on, aligned right.</summary>
    private static string Table(string[][] rows, int rightAligned)
    {
        var columns = rows[0].Length;
        var widths = Enumerable.Range(0, columns).Select(c => rows.Max(r => r[c].Length)).ToArray();
        var text = new StringBuilder();
        foreach (var row in rows)
        {
            var cells = row.Select((cell, c) => c >= rightAligned ? cell.PadLeft(widths[c]) : cell.PadRight(widths[c]));
            text.Append(string.Join("  ", cells).TrimEnd()).Append('\n');
        }
        return text.ToString();
    }
}
