using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Lattice.Testing;
using Xunit.Abstractions;

namespace Lattice.EndToEnd.Tests;

/// <summary>
/// The sample app (<c>samples/Lattice.Samples.SealedChat</c>) as a user meets it: its own process, registered on the
/// gateway as a confidential OAuth app, and a personal runtime paired with <c>lattice relay connect</c> whose fixed
/// engine streams "tick " three times. <c>test/EndToEnd.Node/sample.browser.mjs</c> drives Debian's Chromium with
/// playwright-core through sign-in, consent, runtime choice and a sealed answer, then stops the daemon
/// (reconnect_runtime) and revokes the grant (reauthorize).
/// </summary>
[Collection(StackCollection.Name)]
[Trait("Category", "Sample")]
public sealed class SampleAppBrowserTests(StackFixture stack, ITestOutputHelper output)
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(120);
    private static readonly TimeSpan TestTimeout = TimeSpan.FromMinutes(5);
    private const string FixedConfig = """
        [[engines]]
        kind = "fixed"
          [[engines.models]]
          name = "sample"
          chunks = 3
        """;

    [Fact]
    public async Task The_sealed_chat_sample_signs_in_streams_from_the_chosen_runtime_and_shows_its_failure_screens_in_chromium()
    {
        var root = Path.Combine(Path.GetTempPath(), "lattice-sample-e2e-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(root);
        try
        {
            var origin = stack.BaseUrl[..^"/v1".Length];
            var configPath = Path.Combine(root, "config.toml");
            await File.WriteAllTextAsync(configPath, FixedConfig);
            var (latticeId, daemon) = await RuntimeStackFixture.PairDaemonAsync(origin, stack.ApiKey, "sample runtime", configPath, Path.Combine(root, "daemon"));
            await using var _ = daemon;

            var sampleUrl = $"http://127.0.0.1:{ProcessHost.FreeTcpPort()}";
            using var admin = stack.AdminClient();
            var app = await PostAsync(admin, $"admin/v1/workspaces/{stack.WorkspaceId}/apps", new JsonObject
            {
                ["name"] = "Sealed Chat",
                ["redirect_uris"] = new JsonArray(sampleUrl + "/callback"),
                ["scopes"] = new JsonArray("lattice:compute:inference", "offline_access"),
                ["confidential"] = true,
            });
            const string Password = "correct horse battery staple";
            var email = $"sample-{Guid.NewGuid():N}@example.test";
            var user = await PostAsync(admin, "admin/v1/users", new JsonObject { ["email"] = email, ["name"] = "Sample User", ["password"] = Password });
            await PostAsync(admin, $"admin/v1/workspaces/{stack.WorkspaceId}/members", new JsonObject { ["user_id"] = user["id"]!.GetValue<string>() });

            await using var sample = await ProcessHost.StartDotnetAsync("Lattice.Samples.SealedChat", ["--urls", sampleUrl], new Dictionary<string, string?>
            {
                ["SealedChat__Gateway"] = origin,
                ["SealedChat__ClientId"] = app["client_id"]!.GetValue<string>(),
                ["SealedChat__ClientSecret"] = app["client_secret"]!.GetValue<string>(),
                ["SealedChat__PublicUrl"] = sampleUrl,
            }, line => line.StartsWith("sealed chat listening on", StringComparison.Ordinal), StartTimeout);

            await NodeProject.EnsureInstalledAsync(output);
            var run = await NodeProject.TestAsync(["sample.browser.mjs"], new Dictionary<string, string?>
            {
                ["LATTICE_BASE_URL"] = stack.BaseUrl,
                ["LATTICE_API_KEY"] = stack.ApiKey,
                ["LATTICE_ADMIN_KEY"] = stack.AdminKey,
                ["LATTICE_WORKSPACE_ID"] = stack.WorkspaceId,
                ["LATTICE_SAMPLE_URL"] = sampleUrl,
                ["LATTICE_SAMPLE_CLIENT_ID"] = app["client_id"]!.GetValue<string>(),
                ["LATTICE_SAMPLE_USER_ID"] = user["id"]!.GetValue<string>(),
                ["LATTICE_SAMPLE_USER_EMAIL"] = email,
                ["LATTICE_SAMPLE_USER_PASSWORD"] = Password,
                ["LATTICE_SAMPLE_RUNTIME_ID"] = latticeId,
                ["LATTICE_SAMPLE_DAEMON_PID"] = daemon.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture),
            }, TestTimeout);
            Assert.True(run.ExitCode == 0, $"node --test in {NodeProject.ProjectDirectory} {run.Describe()}\nSample app output:\n{sample.Output}");
            output.WriteLine(run.Output);
        }
        finally
        {
            try
            {
                Directory.Delete(root, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static async Task<JsonNode> PostAsync(HttpClient admin, string path, JsonObject body)
    {
        using var response = await admin.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"POST {path} -> {(int)response.StatusCode} {text}");
        return JsonNode.Parse(text)!;
    }
}
