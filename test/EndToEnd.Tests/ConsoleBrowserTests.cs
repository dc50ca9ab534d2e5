using Xunit.Abstractions;

namespace Lattice.EndToEnd.Tests;

/// <summary>
/// The web console in a real browser: <c>test/EndToEnd.Node/console.browser.mjs</c> drives Debian's Chromium
/// (<c>/usr/bin/chromium</c>) with playwright-core against the gateway <c>lattice up</c> started — the one-click
/// sign-in link it printed, the overview, a key shown once and then used, its request in the usage log, a personal
/// runtime paired and revoked; and <c>console.operator.browser.mjs</c>, the operator pages and the usage charts per model
/// and key. Set <c>LATTICE_CONSOLE_SCREENSHOTS</c> to a directory (e.g. <c>docs/console</c>) to
/// save screenshots of the pages there.
/// </summary>
[Collection(StackCollection.Name)]
[Trait("Category", "Console")]
public sealed class ConsoleBrowserTests(StackFixture stack, ITestOutputHelper output)
{
    private static readonly TimeSpan TestTimeout = TimeSpan.FromMinutes(5);

    [Fact]
    public Task The_console_signs_in_manages_keys_and_runtimes_and_shows_usage_in_chromium() =>
        RunAsync("console.browser.mjs", []);

    /// <summary><c>console.operator.browser.mjs</c>: an operator's catalog and task-class pages, and the usage charts per model and key.</summary>
    [Fact]
    public Task The_console_shows_usage_per_model_and_key_and_lets_an_operator_edit_the_catalog_in_chromium() =>
        RunAsync("console.operator.browser.mjs", new() { ["LATTICE_ADMIN_KEY"] = stack.AdminKey });

    /// <summary>
    /// <c>test/EndToEnd.Node/console-workspace.browser.mjs</c>: OAuth apps and grants, members and invitations, a key's and
    /// the workspace's limits, a budget, and a request on the month's invoice (made with a model priced here, since
    /// free requests are not invoiced).
    /// </summary>
    [Fact]
    public async Task The_console_manages_apps_members_limits_and_budgets_and_shows_invoices_in_chromium()
    {
        await stack.AddModelAsync(PricedModel, stack.StandInUrl + "/v1", "standin-chat", prices: new() { ["per_request"] = 0.25 });
        await RunAsync("console-workspace.browser.mjs", new() { ["LATTICE_CHAT_MODEL"] = PricedModel });
    }

    private const string PricedModel = "lovelace:console-priced";

    private async Task RunAsync(string file, Dictionary<string, string?> env)
    {
        await NodeProject.EnsureInstalledAsync(output);
        env["LATTICE_BASE_URL"] = stack.BaseUrl;
        env["LATTICE_API_KEY"] = stack.ApiKey;
        env["LATTICE_CONSOLE_SIGN_IN_URL"] = stack.ConsoleSignInUrl;
        env["LATTICE_USER_EMAIL"] = stack.UserEmail;
        env["LATTICE_USER_PASSWORD"] = stack.UserPassword;
        env.TryAdd("LATTICE_CHAT_MODEL", "lovelace:chat");
        env["LATTICE_SCREENSHOTS"] = Environment.GetEnvironmentVariable("LATTICE_CONSOLE_SCREENSHOTS") is { Length: > 0 } dir ? Path.GetFullPath(dir) : null;
        var run = await NodeProject.TestAsync([file], env, TestTimeout);
        Assert.True(run.ExitCode == 0, $"node --test {file} in {NodeProject.ProjectDirectory} {run.Describe()}");
        output.WriteLine(run.Output);
    }
}
