using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Lattice.Testing;

namespace Lattice.EndToEnd.Tests;

/// <summary><c>lattice up</c>'s env file, <c>lattice keys</c>, <c>limits</c> and <c>budgets</c>, as a user runs them.</summary>
[Collection(StackCollection.Name)]
public sealed class LatticeCliTests(StackFixture stack)
{
    private async Task<(int Exit, string Output)> LatticeAsync(params string[] args)
    {
        var psi = new ProcessStartInfo(ProcessHost.DotnetHost) { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(StackFixture.LatticeDll);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        psi.ArgumentList.Add("--data-dir");
        psi.ArgumentList.Add(stack.DataDirectory);
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(cts.Token);
        return (process.ExitCode, await stdout + await stderr);
    }

    [Fact]
    public void Lattice_up_runs_with_the_GC_gen0_budget_fixed_in_the_same_process_with_its_diagnostics_endpoint()
    {
        // The gateway re-executes itself with DOTNET_GCgen0size set (Hosting/Gen0Budget): same process id, the variable
        // in its environment, and the runtime's diagnostics socket (dumps, counters) bound by the program that runs.
        var pid = stack.Gateway.ProcessId;
        var environment = File.ReadAllText($"/proc/{pid}/environ").Split('\0');
        var expected = Environment.GetEnvironmentVariable("DOTNET_GCgen0size") ?? "0x2000000";
        Assert.Contains($"DOTNET_GCgen0size={expected}", environment);
        Assert.Contains(File.ReadAllLines("/proc/net/unix"), line => line.Contains($"/dotnet-diagnostic-{pid}-", StringComparison.Ordinal));
    }

    private async Task<HttpStatusCode> ChatStatusAsync(string key)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        using var request = new HttpRequestMessage(HttpMethod.Post, stack.BaseUrl + "/chat/completions")
        {
            Content = new StringContent("""{"model":"lovelace:chat","messages":[{"role":"user","content":"hi"}]}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var response = await http.SendAsync(request);
        return response.StatusCode;
    }

    [Fact]
    public void Up_writes_an_env_file_only_its_owner_can_read()
    {
        var path = Path.Combine(stack.DataDirectory, "env");
        var text = File.ReadAllText(path);
        Assert.Contains("LATTICE_BASE_URL=" + stack.BaseUrl, text, StringComparison.Ordinal);
        Assert.Contains("LATTICE_API_KEY=sk_", text, StringComparison.Ordinal);
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        }
        Assert.Contains("Lattice is running.", stack.Gateway.Output, StringComparison.Ordinal);
        Assert.Contains("Base URL   " + stack.BaseUrl, stack.Gateway.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Ups_printed_example_is_answered_with_a_story()
    {
        // The example up prints is a story opening for this machine's bundled story model.
        Assert.Contains("\"content\":\"Once upon a time\"", stack.Gateway.Output, StringComparison.Ordinal);
        var model = File.ReadAllLines(Path.Combine(stack.DataDirectory, "env"))
            .Single(l => l.StartsWith("LATTICE_RUNTIME_MODEL=", StringComparison.Ordinal))["LATTICE_RUNTIME_MODEL=".Length..];

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
        using var request = new HttpRequestMessage(HttpMethod.Post, stack.BaseUrl + "/chat/completions")
        {
            Content = new StringContent($$"""{"model":"{{model}}","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":40,"temperature":0}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", stack.ApiKey);
        using var response = await http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        var answer = System.Text.Json.Nodes.JsonNode.Parse(text)!;
        Assert.Equal(model, answer["model"]!.GetValue<string>());
        // Served as the completion model it is (no chat template): the story llama2.c itself writes from that opening.
        Assert.StartsWith(", there was a little girl named Lily. She loved to play outside in the park.",
            answer["choices"]![0]!["message"]!["content"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    /// <summary><c>lattice keys create</c> with <paramref name="args"/>: the new key's id and secret, and what it printed.</summary>
    private async Task<(string Id, string Key, string Output)> CreateKeyAsync(params string[] args)
    {
        var (exit, output) = await LatticeAsync(["keys", "create", .. args]);
        Assert.True(exit == 0, output);
        var key = output.Split('\n').Single(l => l.StartsWith("Key (shown once): ", StringComparison.Ordinal))["Key (shown once): ".Length..].Trim();
        var id = output.Split(' ', '\n').First(w => w.StartsWith("key_", StringComparison.Ordinal));
        return (id, key, output);
    }

    [Fact]
    public async Task Keys_create_list_revoke_through_the_cli()
    {
        var (id, key, _) = await CreateKeyAsync("--name", "from-cli", "--expires-in", "30d");
        Assert.Equal(HttpStatusCode.OK, await ChatStatusAsync(key));

        var (exit, output) = await LatticeAsync("keys", "list");
        Assert.True(exit == 0, output);
        var line = output.Split('\n').Single(l => l.StartsWith(id, StringComparison.Ordinal));
        Assert.Contains("from-cli", line, StringComparison.Ordinal);
        Assert.Contains("active", line, StringComparison.Ordinal);
        Assert.DoesNotContain(key, output, StringComparison.Ordinal);

        (exit, output) = await LatticeAsync("keys", "revoke", id);
        Assert.True(exit == 0, output);
        Assert.Equal(HttpStatusCode.Unauthorized, await ChatStatusAsync(key));
        (_, output) = await LatticeAsync("keys", "list");
        Assert.Contains("revoked", output.Split('\n').Single(l => l.StartsWith(id, StringComparison.Ordinal)), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Usage_prints_a_table_and_the_apis_json()
    {
        // Until the ledger writes records, the dev workspace's usage is empty: the shape is what is checked here.
        var (exit, output) = await LatticeAsync("usage", "--since", "2d", "--by", "day");
        Assert.True(exit == 0, output);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Matches(@"^DAY\s+REQUESTS\s+INPUT TOKENS\s+OUTPUT TOKENS\s+COST \(USD\)$", lines[0]);
        Assert.Matches(@"^TOTAL\s+\d[\d,]*\s+\d[\d,]*\s+\d[\d,]*\s+\d", lines[^1]);
        Assert.InRange(lines.Length, 4, 5);

        (exit, output) = await LatticeAsync("usage", "--json");
        Assert.True(exit == 0, output);
        OpenApiContract.AssertValid("UsageResponse", output.Trim());
    }

    [Fact]
    public async Task Apps_create_list_delete_through_the_cli()
    {
        var (exit, output) = await LatticeAsync("apps", "create", "--name", "From CLI", "--redirect-uri", "http://127.0.0.1:7777/callback",
            "--redirect-uri", "com.example.app:/cb", "--scope", "lattice:compute:inference", "--scope", "offline_access", "--confidential", "--device-flow");
        Assert.True(exit == 0, output);
        var clientId = output.Split('\n').Single(l => l.StartsWith("Client ID: ", StringComparison.Ordinal))["Client ID: ".Length..].Trim();
        var secret = output.Split('\n').Single(l => l.StartsWith("Client secret (shown once): ", StringComparison.Ordinal))["Client secret (shown once): ".Length..].Trim();
        Assert.StartsWith("app_", clientId, StringComparison.Ordinal);
        Assert.NotEmpty(secret);

        (exit, output) = await LatticeAsync("apps", "list");
        Assert.True(exit == 0, output);
        var line = output.Split('\n').Single(l => l.StartsWith(clientId, StringComparison.Ordinal));
        Assert.Contains("From CLI", line, StringComparison.Ordinal);
        Assert.Contains("confidential", line, StringComparison.Ordinal);
        Assert.Contains("code,device", line, StringComparison.Ordinal);
        Assert.Contains("http://127.0.0.1:7777/callback", line, StringComparison.Ordinal);
        var scopes = output.Split('\n').SkipWhile(l => !l.StartsWith(clientId, StringComparison.Ordinal)).ElementAt(1);
        Assert.Contains("scopes:", scopes, StringComparison.Ordinal);
        Assert.Contains("lattice:compute:inference", scopes, StringComparison.Ordinal);
        Assert.Contains("offline_access", scopes, StringComparison.Ordinal);
        Assert.DoesNotContain(secret, output, StringComparison.Ordinal);

        (exit, output) = await LatticeAsync("apps", "delete", clientId);
        Assert.True(exit == 0, output);
        (exit, output) = await LatticeAsync("apps", "list");
        Assert.True(exit == 0, output);
        Assert.DoesNotContain(clientId, output, StringComparison.Ordinal);
        (exit, output) = await LatticeAsync("apps", "delete", clientId);
        Assert.Equal(1, exit);
        Assert.Contains("404", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Members_invite_list_and_the_link_lets_the_person_join()
    {
        var email = $"invitee-{Guid.NewGuid():N}@example.test";
        var (exit, output) = await LatticeAsync("members", "invite", email, "--role", "owner");
        Assert.True(exit == 0, output);
        Assert.Contains($"Invited {email} as owner (ivt_", output, StringComparison.Ordinal);
        var link = output.Split('\n').Single(l => l.Contains("/account/invitations/inv_", StringComparison.Ordinal)).Trim();
        Assert.StartsWith(stack.BaseUrl.Replace("/v1", "", StringComparison.Ordinal) + "/account/invitations/inv_", link, StringComparison.Ordinal);

        (exit, output) = await LatticeAsync("members", "list");
        Assert.True(exit == 0, output);
        Assert.Contains("dev@lattice.localhost", output, StringComparison.Ordinal);
        Assert.Matches($@"ivt_\S+\s+owner\s+{System.Text.RegularExpressions.Regex.Escape(email)}", output);

        // The person opens the link, creates their account and joins.
        using var http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false, CookieContainer = new CookieContainer() });
        var page = await http.GetStringAsync(link);
        var antiforgery = System.Text.RegularExpressions.Regex.Match(page, "name=\"__af\" value=\"([^\"]+)\"").Groups[1].Value;
        using var joined = await http.PostAsync(link, new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["__af"] = WebUtility.HtmlDecode(antiforgery), ["name"] = "Invitee", ["password"] = "a long enough password",
        }));
        Assert.Equal(HttpStatusCode.OK, joined.StatusCode);
        Assert.Contains("You are now a member of dev.", await joined.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        (exit, output) = await LatticeAsync("members", "list");
        var row = output.Split('\n').Single(l => l.EndsWith(email, StringComparison.Ordinal) && l.StartsWith("usr_", StringComparison.Ordinal));
        var userId = row.Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
        Assert.Contains(" owner ", row, StringComparison.Ordinal);

        (exit, output) = await LatticeAsync("members", "remove", userId);
        Assert.True(exit == 0, output);
        (exit, output) = await LatticeAsync("members", "list");
        Assert.DoesNotContain(userId, output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_key_created_with_one_request_a_minute_gets_429_on_its_second()
    {
        var (id, key, output) = await CreateKeyAsync("--name", "rpm-1", "--rpm", "1", "--tpm", "100000", "--concurrency", "4");
        Assert.Contains("Limits: rpm=1 tpm=100000 conc=4\n", output, StringComparison.Ordinal);

        Assert.Equal(HttpStatusCode.OK, await ChatStatusAsync(key));
        Assert.Equal(HttpStatusCode.TooManyRequests, await ChatStatusAsync(key));

        var (exit, list) = await LatticeAsync("keys", "list");
        Assert.True(exit == 0, list);
        Assert.EndsWith(" rpm=1 tpm=100000 conc=4", list.Split('\n').Single(l => l.StartsWith(id, StringComparison.Ordinal)), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Limits_set_merges_with_the_current_ones_get_shows_them_clear_removes_them()
    {
        var (id, _, _) = await CreateKeyAsync("--name", "limits-cli");

        var (exit, output) = await LatticeAsync("limits", "set", "--key", id, "--concurrency", "2");
        Assert.True(exit == 0, output);
        Assert.Equal($"key {id}: conc=2\n", output);
        (exit, output) = await LatticeAsync("limits", "set", "--key", id, "--rpm", "100", "--tpm", "5000");
        Assert.Equal($"key {id}: rpm=100 tpm=5000 conc=2\n", output);
        (exit, output) = await LatticeAsync("limits", "get", "--key", id);
        Assert.True(exit == 0, output);
        Assert.Equal($"key {id}: rpm=100 tpm=5000 conc=2\n", output);
        (exit, output) = await LatticeAsync("limits", "set", "--key", id, "--tpm", "none", "--rpm", "0");
        Assert.Equal($"key {id}: conc=2\n", output);
        (exit, output) = await LatticeAsync("limits", "get", "--key", id, "--json");
        Assert.True(exit == 0, output);
        Assert.Equal($$"""{"scope":"key","id":"{{id}}","limits":{"requests_per_minute":null,"tokens_per_minute":null,"max_concurrent":2},"object":"limits"}""", output.Trim());

        (exit, output) = await LatticeAsync("limits", "clear", "--key", id);
        Assert.True(exit == 0, output);
        Assert.Equal($"key {id}: no limits\n", output);

        (exit, output) = await LatticeAsync("limits", "get");
        Assert.True(exit == 0, output);
        Assert.StartsWith($"workspace {stack.WorkspaceId}: ", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Budgets_create_list_set_show_delete_through_the_cli()
    {
        var (id, _, _) = await CreateKeyAsync("--name", "budget-cli");

        var (exit, output) = await LatticeAsync("budgets", "create", "--key", id, "--amount", "0.5");
        Assert.True(exit == 0, output);
        Assert.Matches($@"^Created bud_\w+: 0\.5 USD a month on key {id}\.\n$", output);
        var budgetId = output.Split(' ')[1].TrimEnd(':');

        (exit, output) = await LatticeAsync("budgets", "list", "--json");
        Assert.True(exit == 0, output);
        var budget = System.Text.Json.Nodes.JsonNode.Parse(output)!["data"]!.AsArray().Single(b => (string?)b!["id"] == budgetId)!;
        Assert.Equal("key", (string?)budget["scope"]);
        Assert.Equal(id, (string?)budget["subject_id"]);
        Assert.Equal("0.5", (string?)budget["amount_usd"]);
        Assert.Equal("0", (string?)budget["spent_usd"]);
        Assert.Equal("month", (string?)budget["period"]);

        (exit, output) = await LatticeAsync("budgets", "list");
        Assert.True(exit == 0, output);
        Assert.Matches($@"^{budgetId}\s+key\s+{id}\s+0\.5\s+0\s+0\s+0\.0 %$", output.Split('\n').Single(l => l.StartsWith(budgetId, StringComparison.Ordinal)));

        (exit, output) = await LatticeAsync("budgets", "set", budgetId, "--amount", "2");
        Assert.True(exit == 0, output);
        Assert.Equal($"Updated {budgetId}: 2 USD a month on key {id}.\n", output);
        (exit, output) = await LatticeAsync("budgets", "show", budgetId, "--json");
        Assert.True(exit == 0, output);
        Assert.Equal("2", (string?)System.Text.Json.Nodes.JsonNode.Parse(output)!["amount_usd"]);

        (exit, output) = await LatticeAsync("budgets", "delete", budgetId);
        Assert.True(exit == 0, output);
        (exit, output) = await LatticeAsync("budgets", "show", budgetId);
        Assert.Equal(1, exit);
        Assert.Contains($"The gateway said 404: The budget '{budgetId}' does not exist.", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--amount 'lots' is not an amount of USD", "budgets", "create", "--amount", "lots")]
    [InlineData("--per-user needs --app", "budgets", "create", "--amount", "5", "--per-user")]
    [InlineData("Option '--amount' is required.", "budgets", "create")]
    [InlineData("--rpm 'fast' is not a limit", "limits", "set", "--rpm", "fast")]
    [InlineData("Nothing to set", "limits", "set")]
    [InlineData("--concurrency '1.5' is not a limit", "keys", "create", "--concurrency", "1.5")]
    [InlineData("--expires-in 'soon' is not a lifetime", "keys", "create", "--expires-in", "soon")]
    public async Task Bad_input_is_refused_with_a_message_and_exit_code_2_before_asking_the_gateway(string says, params string[] args)
    {
        var (exit, output) = await LatticeAsync(args);
        Assert.True(exit == 2, output);
        Assert.Contains(says, output, StringComparison.Ordinal);
        Assert.DoesNotContain("The gateway said", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("The gateway said 404: The key 'key_missing' does not exist.", "limits", "get", "--key", "key_missing")]
    [InlineData("not an acceptable redirect URI", "apps", "create", "--name", "bad", "--redirect-uri", "http://example.com/cb", "--scope", "lattice:compute:inference")]
    public async Task A_refusal_by_the_gateway_prints_its_message_and_exits_1(string says, params string[] args)
    {
        var (exit, output) = await LatticeAsync(args);
        Assert.Equal(1, exit);
        Assert.Contains(says, output, StringComparison.Ordinal);
    }
}
