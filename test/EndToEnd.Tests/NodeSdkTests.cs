namespace Lattice.EndToEnd.Tests;

/// <summary>
/// Runs the tests in <c>test/EndToEnd.Node</c> (<c>node --test</c>), which drive the gateway with the unmodified
/// official <c>openai</c> and <c>@anthropic-ai/sdk</c> npm packages, after installing the project's packages (<see cref="NodeProject"/>).
/// </summary>
[Collection(StackCollection.Name)]
public sealed class NodeSdkTests(StackFixture stack, Xunit.Abstractions.ITestOutputHelper output)
{
    private static readonly TimeSpan TestTimeout = TimeSpan.FromMinutes(5);

    [Fact]
    public async Task Openai_npm_sdk_tests_pass_against_the_gateway()
    {
        await NodeProject.EnsureInstalledAsync(output);
        var run = await NodeProject.TestAsync([], new Dictionary<string, string?>
        {
            ["LATTICE_BASE_URL"] = stack.BaseUrl,
            ["LATTICE_API_KEY"] = stack.ApiKey,
            ["LATTICE_STANDIN_URL"] = stack.StandInUrl,
            ["LATTICE_ADMIN_KEY"] = stack.AdminKey,
            ["LATTICE_WORKSPACE_ID"] = stack.WorkspaceId,
        }, TestTimeout);
        Assert.True(run.ExitCode == 0, $"node --test in {NodeProject.ProjectDirectory} {run.Describe()}");
        output.WriteLine(run.Output);
    }
}
