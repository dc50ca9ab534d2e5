using System.Text.Json.Nodes;
using Lattice.Cli.Commands;

namespace Lattice.Cli.Tests.Commands;

/// <summary>What <c>lattice budgets</c> sends (the create body from its flags) and prints (the budget table).</summary>
public sealed class BudgetReportTests
{
    // 2026-03-01 and 2026-04-01, 00:00 UTC.
    private const long March = 1772323200;
    private const long April = 1775001600;

    private static JsonNode Budget(string id, string scope, string subject, string amount, string? spent, string? reserved, string? user = null) => new JsonObject
    {
        ["id"] = id,
        ["object"] = "budget",
        ["workspace_id"] = "ws_1",
        ["scope"] = scope,
        ["subject_id"] = subject,
        ["amount_usd"] = amount,
        ["period"] = "month",
        ["period_start"] = March,
        ["period_end"] = April,
        ["spent_usd"] = spent,
        ["reserved_usd"] = reserved,
        ["user_id"] = user,
        ["created_at"] = March + 60,
    };

    [Theory]
    [InlineData("25", null, null, false, null, """{"scope":"workspace","amount_usd":"25"}""")]
    [InlineData("0.50", "key_abc", null, false, null, """{"scope":"key","subject_id":"key_abc","amount_usd":"0.50"}""")]
    [InlineData("10", null, "app_x", false, null, """{"scope":"app","subject_id":"app_x","amount_usd":"10"}""")]
    [InlineData("2.000000000001", null, "app_x", true, "https://hooks.example.com/b", """{"scope":"app_user","subject_id":"app_x","amount_usd":"2.000000000001","alert_url":"https://hooks.example.com/b"}""")]
    [InlineData("0", "key_abc", null, false, "http://127.0.0.1:9000/alerts", """{"scope":"key","subject_id":"key_abc","amount_usd":"0","alert_url":"http://127.0.0.1:9000/alerts"}""")]
    public void Create_flags_become_the_apis_body(string amount, string? key, string? app, bool perUser, string? alertUrl, string expected)
    {
        Assert.True(BudgetReport.TryCreateBody(amount, key, app, perUser, alertUrl, out var body, out var error), error);
        Assert.Equal(expected, body.ToJsonString());
    }

    [Theory]
    [InlineData("-5", null, null, false, null, "--amount '-5' is not an amount of USD: give a number from 0 to 1000000000 with at most 12 decimals, such as 25 or 0.50.")]
    [InlineData("1e3", null, null, false, null, "--amount '1e3' is not an amount of USD: give a number from 0 to 1000000000 with at most 12 decimals, such as 25 or 0.50.")]
    [InlineData("0.0000000000001", null, null, false, null, "--amount '0.0000000000001' is not an amount of USD: give a number from 0 to 1000000000 with at most 12 decimals, such as 25 or 0.50.")]
    [InlineData("1000000000.01", null, null, false, null, "--amount '1000000000.01' is not an amount of USD: give a number from 0 to 1000000000 with at most 12 decimals, such as 25 or 0.50.")]
    [InlineData("$5", null, null, false, null, "--amount '$5' is not an amount of USD: give a number from 0 to 1000000000 with at most 12 decimals, such as 25 or 0.50.")]
    [InlineData("5", "key_abc", "app_x", false, null, "A budget is on one thing: give --key or --app, not both.")]
    [InlineData("5", null, null, true, null, "--per-user needs --app: it budgets each user of that app.")]
    [InlineData("5", "key_abc", null, true, null, "--per-user needs --app: it budgets each user of that app.")]
    [InlineData("5", null, null, false, "hooks.example.com", "--alert-url 'hooks.example.com' is not an http(s) URL.")]
    [InlineData("5", null, null, false, "ftp://example.com/x", "--alert-url 'ftp://example.com/x' is not an http(s) URL.")]
    public void Bad_create_flags_are_refused_with_a_message(string amount, string? key, string? app, bool perUser, string? alertUrl, string message)
    {
        Assert.False(BudgetReport.TryCreateBody(amount, key, app, perUser, alertUrl, out _, out var error));
        Assert.Equal(message, error);
    }

    [Fact]
    public void The_table_shows_amount_spend_reservations_and_the_share_spent()
    {
        var text = BudgetReport.Table(
        [
            Budget("bud_ws", "workspace", "ws_1", "25", "12.5", "0.25"),
            Budget("bud_key", "key", "key_abc", "0.5", "0.499999999999", "0"),
            Budget("bud_users", "app_user", "app_x", "2", null, null),
            Budget("bud_zero", "app", "app_y", "0", "0", "0"),
            Budget("bud_over", "key", "key_def", "1", "1.2", "0"),
        ]);
        Assert.Equal(
            "ID         SCOPE      SUBJECT  AMOUNT (USD)           SPENT  RESERVED     USED\n" +
            "bud_ws     workspace  ws_1               25            12.5      0.25   50.0 %\n" +
            "bud_key    key        key_abc           0.5  0.499999999999         0   99.9 %\n" +
            "bud_users  app_user   app_x               2               -         -        -\n" +
            "bud_zero   app        app_y               0               0         0        -\n" +
            "bud_over   key        key_def             1             1.2         0  120.0 %\n",
            text);
    }

    [Fact]
    public void Show_adds_the_period_and_for_a_per_user_budget_whose_spend_it_is()
    {
        Assert.Equal(
            "ID         SCOPE     SUBJECT           AMOUNT (USD)  SPENT  RESERVED    USED\n" +
            "bud_users  app_user  app_x user usr_7             2    0.5       0.1  25.0 %\n" +
            "Period: 2026-03-01 to 2026-04-01 (UTC)\n",
            BudgetReport.Detail(Budget("bud_users", "app_user", "app_x", "2", "0.5", "0.1", "usr_7")));
        Assert.Equal(
            "ID         SCOPE     SUBJECT  AMOUNT (USD)  SPENT  RESERVED  USED\n" +
            "bud_users  app_user  app_x               2      -         -     -\n" +
            "Period: 2026-03-01 to 2026-04-01 (UTC)\n" +
            "Each user of the app has this amount; pass --user <id> to see one user's spend.\n",
            BudgetReport.Detail(Budget("bud_users", "app_user", "app_x", "2", null, null)));
    }

    [Fact]
    public void The_summary_names_the_amount_and_what_it_is_on()
    {
        Assert.Equal("0.5 USD a month on key key_abc", BudgetReport.Summary(Budget("bud_1", "key", "key_abc", "0.5", "0", "0")));
        Assert.Equal("2 USD a month on each user of app app_x", BudgetReport.Summary(Budget("bud_2", "app_user", "app_x", "2", null, null)));
    }
}
