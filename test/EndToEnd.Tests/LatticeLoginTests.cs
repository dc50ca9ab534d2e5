using System.ClientModel;
using System.Diagnostics;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Lattice.Testing;
using OpenAI;
using OpenAI.Chat;

namespace Lattice.EndToEnd.Tests;

/// <summary>
/// <c>lattice login</c> / <c>logout</c> as a person uses them: the CLI runs the device authorization grant as a real
/// process while the "person" signs in as the dev user and answers the consent page over HTTP with cookies.
/// </summary>
[Collection(StackCollection.Name)]
public sealed partial class LatticeLoginTests(StackFixture stack)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private string Origin => stack.BaseUrl[..^"/v1".Length];

    private Dictionary<string, string> Env() => File.ReadAllLines(Path.Combine(stack.DataDirectory, "env"))
        .Where(l => l.Contains('=') && !l.StartsWith('#'))
        .ToDictionary(l => l[..l.IndexOf('=')], l => l[(l.IndexOf('=') + 1)..]);

    /// <summary>Starts <c>lattice login</c> and returns it once it has printed the user code.</summary>
    private static async Task<(ProcessHost Login, string UserCode)> StartLoginAsync(string dataDir, params string[] extra)
    {
        var login = await ProcessHost.StartAsync(ProcessHost.DotnetHost,
            [StackFixture.LatticeDll, "login", "--data-dir", dataDir, .. extra],
            new Dictionary<string, string?> { ["LATTICE_BASE_URL"] = null },
            // Ready once it has printed everything up to the wait (the code, then the link that carries it).
            line => line.StartsWith("Waiting for approval", StringComparison.Ordinal), Timeout);
        var line = await login.WaitForOutputAsync(l => l.StartsWith("  Code: ", StringComparison.Ordinal), Timeout);
        return (login, line["  Code: ".Length..].Trim());
    }

    /// <summary>The person: signs in as the dev user, opens the verification page with the code, and answers the consent form.</summary>
    private async Task<string> ApproveAsync(string userCode, string decision)
    {
        var env = Env();
        using var http = new HttpClient(new SocketsHttpHandler { CookieContainer = new CookieContainer(), UseProxy = false, AllowAutoRedirect = true })
        {
            BaseAddress = new Uri(Origin),
            Timeout = TimeSpan.FromSeconds(30),
        };
        var verifyPath = "/connect/verify?user_code=" + Uri.EscapeDataString(userCode);

        var loginPage = await http.GetStringAsync("/account/login");
        var antiforgery = HiddenInputs(loginPage)["__af"];
        using var signIn = await http.PostAsync("/account/login", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["__af"] = antiforgery,
            ["email"] = env["LATTICE_USER_EMAIL"],
            ["password"] = env["LATTICE_USER_PASSWORD"],
            ["returnUrl"] = verifyPath,
        }));
        Assert.True(signIn.IsSuccessStatusCode, await signIn.Content.ReadAsStringAsync());

        using var consent = await http.GetAsync(verifyPath);
        var consentPage = await consent.Content.ReadAsStringAsync();
        Assert.True(consent.IsSuccessStatusCode, consentPage);
        Assert.Contains("Lattice CLI", consentPage, StringComparison.Ordinal);
        var form = HiddenInputs(consentPage).ToList();
        form.AddRange(GrantedScopes().Matches(consentPage).Select(m => new KeyValuePair<string, string>("granted_scope", WebUtility.HtmlDecode(m.Groups[1].Value))));
        form.Add(new("decision", decision));
        using var answer = await http.PostAsync("/connect/verify", new FormUrlEncodedContent(form));
        return await answer.Content.ReadAsStringAsync();
    }

    private static Dictionary<string, string> HiddenInputs(string html) =>
        HiddenInput().Matches(html).ToDictionary(m => WebUtility.HtmlDecode(m.Groups[1].Value), m => WebUtility.HtmlDecode(m.Groups[2].Value));

    [GeneratedRegex("""<input type="hidden" name="([^"]*)" value="([^"]*)">""")]
    private static partial Regex HiddenInput();

    [GeneratedRegex("""<input type="checkbox" name="granted_scope" value="([^"]*)" checked>""")]
    private static partial Regex GrantedScopes();

    private static async Task<(int Exit, string Output)> LatticeAsync(params string[] args)
    {
        var psi = new ProcessStartInfo(ProcessHost.DotnetHost) { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(StackFixture.LatticeDll);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(Timeout);
        await process.WaitForExitAsync(cts.Token);
        return (process.ExitCode, await stdout + await stderr);
    }

    private static string TempDataDir() => Path.Combine(Path.GetTempPath(), "lattice-login-" + Guid.NewGuid().ToString("N"));

    [Fact]
    public void Up_prints_how_to_sign_in_and_keeps_the_dev_user_in_the_env_file()
    {
        var env = Env();
        Assert.Equal("dev@lattice.localhost", env["LATTICE_USER_EMAIL"]);
        Assert.NotEmpty(env["LATTICE_USER_PASSWORD"]);
        Assert.Contains($"Sign in    {Origin}/account/login", stack.Gateway.Output, StringComparison.Ordinal);
        Assert.Contains("lattice login", stack.Gateway.Output, StringComparison.Ordinal);
        Assert.Contains("\nLATTICE_API_KEY=", stack.Gateway.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Login_with_the_device_flow_stores_the_token_for_its_owner_only()
    {
        // The gateway comes from the env file `lattice up` wrote.
        var (login, userCode) = await StartLoginAsync(stack.DataDirectory);
        await using (login)
        {
            Assert.Contains(Origin + "/connect/verify", login.Output, StringComparison.Ordinal);
            Assert.Contains("user_code=", login.Output, StringComparison.Ordinal);

            var done = await ApproveAsync(userCode, "accept");
            Assert.Contains("Device connected", done, StringComparison.Ordinal);

            Assert.True(await login.WaitForExitAsync(Timeout) == 0, login.Output);
            var path = Path.Combine(stack.DataDirectory, "oauth-token.json");
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
            }
            using var file = JsonDocument.Parse(File.ReadAllText(path));
            var accessToken = file.RootElement.GetProperty("access_token").GetString()!;
            Assert.StartsWith("eyJ", accessToken, StringComparison.Ordinal);
            Assert.False(string.IsNullOrEmpty(file.RootElement.GetProperty("refresh_token").GetString()));
            Assert.True(file.RootElement.GetProperty("expires_at").GetInt64() > DateTimeOffset.UtcNow.ToUnixTimeSeconds());
            Assert.Equal(stack.WorkspaceId, file.RootElement.GetProperty("workspace_id").GetString());

            Assert.Contains("Signed in as dev@lattice.localhost", login.Output, StringComparison.Ordinal);
            Assert.DoesNotContain(accessToken, login.Output, StringComparison.Ordinal);
            Assert.DoesNotContain(file.RootElement.GetProperty("refresh_token").GetString()!, login.Output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task The_openai_sdk_works_with_the_access_token_until_logout()
    {
        var dataDir = TempDataDir();
        try
        {
            var (login, userCode) = await StartLoginAsync(dataDir, "--gateway", Origin);
            await using (login)
            {
                await ApproveAsync(userCode, "accept");
                Assert.True(await login.WaitForExitAsync(Timeout) == 0, login.Output);
            }
            using var file = JsonDocument.Parse(File.ReadAllText(Path.Combine(dataDir, "oauth-token.json")));
            var accessToken = file.RootElement.GetProperty("access_token").GetString()!;

            // The official SDK, unmodified, with the access token as its API key.
            var client = new OpenAIClient(new ApiKeyCredential(accessToken), new OpenAIClientOptions { Endpoint = new Uri(stack.BaseUrl), NetworkTimeout = TimeSpan.FromSeconds(30) });
            var models = await client.GetOpenAIModelClient().GetModelsAsync().WaitAsync(Timeout);
            Assert.Contains(models.Value, m => m.Id == "lovelace:chat");
            ChatCompletion completion = await client.GetChatClient("lovelace:chat").CompleteChatAsync([new UserChatMessage("hello from oauth")]).WaitAsync(Timeout);
            Assert.Equal("You said: hello from oauth", completion.Content[0].Text);

            var (exit, output) = await LatticeAsync("logout", "--data-dir", dataDir);
            Assert.True(exit == 0, output);
            Assert.Contains("Signed out", output, StringComparison.Ordinal);
            Assert.False(File.Exists(Path.Combine(dataDir, "oauth-token.json")));

            // Logout revoked the grant: the access token stops working (the revocation set is current within a second).
            var chat = client.GetChatClient("lovelace:chat");
            var deadline = DateTimeOffset.UtcNow + TimeSpan.FromSeconds(5);
            ClientResultException? rejected = null;
            while (rejected is null && DateTimeOffset.UtcNow < deadline)
            {
                try
                {
                    await chat.CompleteChatAsync([new UserChatMessage("still there?")]).WaitAsync(Timeout);
                    await Task.Delay(200);
                }
                catch (ClientResultException ex)
                {
                    rejected = ex;
                }
            }
            Assert.NotNull(rejected);
            Assert.Equal(401, rejected.Status);
        }
        finally
        {
            if (Directory.Exists(dataDir))
            {
                Directory.Delete(dataDir, recursive: true);
            }
        }
    }

    [Fact]
    public async Task A_denied_request_makes_login_fail_with_a_clear_message()
    {
        var dataDir = TempDataDir();
        try
        {
            var (login, userCode) = await StartLoginAsync(dataDir, "--gateway", Origin);
            await using (login)
            {
                var done = await ApproveAsync(userCode, "deny");
                Assert.Contains("Request denied", done, StringComparison.Ordinal);
                Assert.Equal(1, await login.WaitForExitAsync(Timeout));
                Assert.Contains("Sign-in was denied", login.Output, StringComparison.Ordinal);
            }
            Assert.False(File.Exists(Path.Combine(dataDir, "oauth-token.json")));
        }
        finally
        {
            if (Directory.Exists(dataDir))
            {
                Directory.Delete(dataDir, recursive: true);
            }
        }
    }
}
