using System.Text.Json.Nodes;
using Lattice.Cli.Commands;

namespace Lattice.Cli.Tests.Commands;

/// <summary>The tables <c>lattice invoices</c> and <c>lattice invoices show</c> print, from the API's invoice objects.</summary>
public sealed class InvoiceReportTests
{
    // 2026-03-01 and 2026-04-01, 00:00 UTC.
    private const long March = 1772323200;
    private const long April = 1775001600;

    private static JsonObject Line(string model, string task, long requests, long input, long output, string amount) => new()
    {
        ["model"] = model,
        ["task"] = task,
        ["quantities"] = new JsonObject { ["requests"] = requests, ["input_tokens"] = input, ["cached_input_tokens"] = 0, ["output_tokens"] = output, ["audio_seconds"] = 0 },
        ["unit_prices"] = null,
        ["amount_usd"] = amount,
    };

    private static JsonObject Invoice(string id, long start, string status, string total, params JsonObject[] lines) => new()
    {
        ["id"] = id,
        ["object"] = "invoice",
        ["period_start"] = start,
        ["status"] = status,
        ["lines"] = new JsonArray(lines),
        ["total_usd"] = total,
    };

    [Fact]
    public void The_list_has_one_row_per_invoice_with_its_month_status_and_total()
    {
        var text = InvoiceReport.RenderList(
        [
            Invoice("in_202604_0123456789ab", April, "draft", "0.5"),
            Invoice("in_202603_0123456789ab", March, "final", "1234.000000000001"),
        ]);
        Assert.Equal(
            "ID                      MONTH    STATUS        TOTAL (USD)\n" +
            "in_202604_0123456789ab  2026-04  draft                 0.5\n" +
            "in_202603_0123456789ab  2026-03  final   1234.000000000001\n",
            text);
    }

    [Fact]
    public void An_invoice_shows_its_lines_and_total()
    {
        var text = InvoiceReport.RenderInvoice(Invoice("in_202603_0123456789ab", March, "final", "3.000001",
            Line("lovelace:chat", "chat.completions", 1000, 1_000_000, 25_000, "3"),
            Line("lovelace:embed", "embeddings", 1, 50, 0, "0.000001")));
        Assert.Equal(
            "in_202603_0123456789ab  2026-03  final\n\n" +
            "MODEL           TASK              REQUESTS  INPUT TOKENS  OUTPUT TOKENS  AMOUNT (USD)\n" +
            "lovelace:chat   chat.completions     1,000     1,000,000         25,000             3\n" +
            "lovelace:embed  embeddings               1            50              0      0.000001\n" +
            "TOTAL                                                                        3.000001\n",
            text);
    }
}
