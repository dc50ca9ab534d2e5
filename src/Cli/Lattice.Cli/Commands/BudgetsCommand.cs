using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace Lattice.Cli.Commands;

/// <summary>
/// <c>lattice budgets list|show|create|set|delete</c>: monthly USD spend limits on the workspace, a key, an OAuth app or
/// each user of an app, through the admin API.
/// </summary>
internal static class BudgetsCommand
{
    public static Command Create()
    {
        var admin = new AdminOptions();
        var json = new Option<bool>("--json") { Description = "Print the API's JSON instead of a table." };
        var budgetId = new Argument<string>("budget-id") { Description = "The id of the budget (bud_…)." };

        var list = new Command("list", "List the workspace's budgets with this month's spend.") { json };
        list.SetAction((parse, ct) => admin.SendAsync(parse, HttpMethod.Get, t => $"/admin/v1/workspaces/{Uri.EscapeDataString(t.Workspace)}/budgets", null,
            result => Console.Write(parse.GetValue(json) ? result.ToJsonString() + Environment.NewLine : BudgetReport.Table(result["data"]!.AsArray())), ct));

        var user = new Option<string?>("--user") { Description = "For a per-user app budget: show this user's spend (their user id)." };
        var show = new Command("show", "Show one budget with this month's spend.") { budgetId, user, json };
        show.SetAction((parse, ct) =>
        {
            var path = $"/admin/v1/budgets/{Uri.EscapeDataString(parse.GetValue(budgetId)!)}"
                + (parse.GetValue(user) is { } userId ? "?user_id=" + Uri.EscapeDataString(userId) : "");
            return admin.SendAsync(parse, HttpMethod.Get, _ => path, null,
                result => Console.Write(parse.GetValue(json) ? result.ToJsonString() + Environment.NewLine : BudgetReport.Detail(result)), ct, needWorkspace: false);
        });

        var amount = new Option<string>("--amount") { Description = "USD a calendar month (UTC), such as 25 or 0.50.", Required = true, HelpName = "USD" };
        var key = new Option<string?>("--key") { Description = "Budget this developer key (key_…); the workspace when neither --key nor --app is given." };
        var app = new Option<string?>("--app") { Description = "Budget this OAuth app (its client id)." };
        var perUser = new Option<bool>("--per-user") { Description = "With --app: each user of the app gets the amount to themselves." };
        var alertUrl = new Option<string?>("--alert-url") { Description = "POST a signed alert here at 50 %, 80 % and 100 % of the amount.", HelpName = "URL" };
        var create = new Command("create", "Create a budget; requests that would go over it get 429 insufficient_quota.") { amount, key, app, perUser, alertUrl };
        create.SetAction(async (parse, ct) =>
        {
            if (!BudgetReport.TryCreateBody(parse.GetValue(amount)!, parse.GetValue(key), parse.GetValue(app), parse.GetValue(perUser), parse.GetValue(alertUrl),
                    out var body, out var error))
            {
                await Console.Error.WriteLineAsync(error);
                return 2;
            }
            return await admin.SendAsync(parse, HttpMethod.Post, t => $"/admin/v1/workspaces/{Uri.EscapeDataString(t.Workspace)}/budgets", body, result =>
            {
                Console.WriteLine($"Created {result["id"]}: {BudgetReport.Summary(result)}.");
                if (result["alert_secret"] is { } secret)
                {
                    Console.WriteLine($"Alert signing secret (shown once): {secret}");
                }
            }, ct);
        });

        var newAmount = new Option<string>("--amount") { Description = "The new USD a month.", Required = true, HelpName = "USD" };
        var set = new Command("set", "Change a budget's amount; this month's spend counts against the new amount.") { budgetId, newAmount };
        set.SetAction(async (parse, ct) =>
        {
            if (!BudgetReport.TryParseAmount(parse.GetValue(newAmount)!, out var usd, out var error))
            {
                await Console.Error.WriteLineAsync(error);
                return 2;
            }
            return await admin.SendAsync(parse, HttpMethod.Patch, _ => $"/admin/v1/budgets/{Uri.EscapeDataString(parse.GetValue(budgetId)!)}",
                new JsonObject { ["amount_usd"] = usd }, result => Console.WriteLine($"Updated {result["id"]}: {BudgetReport.Summary(result)}."), ct, needWorkspace: false);
        });

        var delete = new Command("delete", "Delete a budget; its subject can spend without this limit at once.") { budgetId };
        delete.SetAction((parse, ct) => admin.SendAsync(parse, HttpMethod.Delete, _ => $"/admin/v1/budgets/{Uri.EscapeDataString(parse.GetValue(budgetId)!)}", null,
            _ => Console.WriteLine($"Deleted {parse.GetValue(budgetId)}."), ct, needWorkspace: false));

        return admin.Group("budgets", "Monthly spend limits in USD on the workspace, a key, an app or each user of an app.", list, show, create, set, delete);
    }
}

/// <summary>What <c>lattice budgets</c> sends and prints: the create body from its flags, and the budget table.</summary>
internal static class BudgetReport
{
    /// <summary>An amount of USD as the API takes it (a decimal string, at most 12 decimals), or a message saying why not.</summary>
    public static bool TryParseAmount(string text, out string usd, out string error)
    {
        usd = "";
        error = $"--amount '{text}' is not an amount of USD: give a number from 0 to 1000000000 with at most 12 decimals, such as 25 or 0.50.";
        if (!decimal.TryParse(text.Trim(), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value)
            || value > 1_000_000_000m || decimal.Round(value, 12) != value)
        {
            return false;
        }
        usd = value.ToString(CultureInfo.InvariantCulture);
        return true;
    }

    /// <summary>The body of <c>POST …/budgets</c> from <c>lattice budgets create</c>'s flags, or a message naming the conflict.</summary>
    public static bool TryCreateBody(string amount, string? key, string? app, bool perUser, string? alertUrl, out JsonObject body, out string error)
    {
        body = [];
        if (!TryParseAmount(amount, out var usd, out error))
        {
            return false;
        }
        if (key is not null && app is not null)
        {
            error = "A budget is on one thing: give --key or --app, not both.";
            return false;
        }
        if (perUser && app is null)
        {
            error = "--per-user needs --app: it budgets each user of that app.";
            return false;
        }
        if (alertUrl is not null && (!Uri.TryCreate(alertUrl, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https")))
        {
            error = $"--alert-url '{alertUrl}' is not an http(s) URL.";
            return false;
        }
        body["scope"] = key is not null ? "key" : app is null ? "workspace" : perUser ? "app_user" : "app";
        if ((key ?? app) is { } subject)
        {
            body["subject_id"] = subject;
        }
        body["amount_usd"] = usd;
        if (alertUrl is not null)
        {
            body["alert_url"] = alertUrl;
        }
        return true;
    }

    /// <summary>One row per budget: whose, the amount, this month's spend and reservations, and the share spent.</summary>
    public static string Table(IEnumerable<JsonNode?> budgets)
    {
        string[][] cells =
        [
            ["ID", "SCOPE", "SUBJECT", "AMOUNT (USD)", "SPENT", "RESERVED", "USED"],
            .. budgets.Select(b => new[]
            {
                Text(b!["id"]), Text(b["scope"]), Subject(b), Text(b["amount_usd"]), Text(b["spent_usd"]), Text(b["reserved_usd"]), Used(b),
            }),
        ];
        var widths = Enumerable.Range(0, cells[0].Length).Select(c => cells.Max(row => row[c].Length)).ToArray();
        var text = new StringBuilder();
        foreach (var row in cells)
        {
            for (var c = 0; c < row.Length; c++)
            {
                // Names left, amounts right; the last column unpadded.
                var cell = c < 3 ? row[c].PadRight(widths[c]) : row[c].PadLeft(widths[c]);
                text.Append(c == 0 ? "" : "  ").Append(cell);
            }
            text.Append('\n');
        }
        return text.ToString();
    }

    /// <summary>One budget: its row, then the month it counts, and for a per-user budget whose spend is shown.</summary>
    public static string Detail(JsonNode budget)
    {
        var text = new StringBuilder(Table([budget]));
        text.Append("Period: ").Append(Day(budget["period_start"])).Append(" to ").Append(Day(budget["period_end"])).Append(" (UTC)\n");
        if (Text(budget["scope"]) == "app_user" && budget["user_id"] is null)
        {
            text.Append("Each user of the app has this amount; pass --user <id> to see one user's spend.\n");
        }
        return text.ToString();
    }

    /// <summary><c>25 USD a month on key key_…</c>, or <c>… on each user of app app_…</c>.</summary>
    public static string Summary(JsonNode budget) =>
        $"{Text(budget["amount_usd"])} USD a month on {(Text(budget["scope"]) == "app_user" ? "each user of app" : Text(budget["scope"]))} {Text(budget["subject_id"])}";

    /// <summary>Spent ÷ amount, rounded down to a tenth of a percent (so 100.0 % means the budget is used up); - when unknown.</summary>
    public static string Used(JsonNode budget)
    {
        if (budget["spent_usd"] is not { } spentNode || Usd(budget["amount_usd"]) is not { } amount || Usd(spentNode) is not { } spent || amount == 0)
        {
            return "-";
        }
        return (decimal.Floor(spent * 1000m / amount) / 10m).ToString("0.0", CultureInfo.InvariantCulture) + " %";
    }

    private static string Subject(JsonNode budget) =>
        budget["user_id"] is { } userId ? $"{Text(budget["subject_id"])} user {Text(userId)}" : Text(budget["subject_id"]);

    private static string Text(JsonNode? node) => node?.GetValue<string>() ?? "-";

    private static decimal? Usd(JsonNode? node) =>
        decimal.TryParse(node?.GetValue<string>(), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value) ? value : null;

    private static string Day(JsonNode? unixSeconds) =>
        unixSeconds is null ? "-" : DateTimeOffset.FromUnixTimeSeconds(unixSeconds.GetValue<long>()).ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
}
