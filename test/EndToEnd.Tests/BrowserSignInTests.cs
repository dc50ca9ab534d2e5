using Xunit.Abstractions;

namespace Lattice.EndToEnd.Tests;

/// <summary>
/// Sign in with Lattice in a real browser: <c>test/EndToEnd.Node/identity.browser.mjs</c> drives Debian's Chromium
/// (<c>/usr/bin/chromium</c>, installed by <c>.ci/run</c>) with playwright-core through the sign-in, consent and
/// device code pages of the gateway process.
/// </summary>
[Collection(StackCollection.Name)]
public sealed class BrowserSignInTests(StackFixture stack, ITestOutputHelper output)
{
    private static readonly TimeSpan TestTimeout = TimeSpan.FromMinutes(5);

    [Fact]
    public async Task Sign_in_consent_and_device_pages_work_in_chromium()
    {
        await NodeProject.EnsureInstalledAsync(output);
        var run = await NodeProject.TestAsync(["identity.browser.mjs"], new Dictionary<string, string?>
        {
            ["LATTICE_BASE_URL"] = stack.BaseUrl,
            ["LATTICE_API_KEY"] = stack.ApiKey,
            ["LATTICE_ADMIN_KEY"] = stack.AdminKey,
            ["LATTICE_WORKSPACE_ID"] = stack.WorkspaceId,
        }, TestTimeout);
        Assert.True(run.ExitCode == 0, $"node --test in {NodeProject.ProjectDirectory} {run.Describe()}");
        output.WriteLine(run.Output);
    }
}
