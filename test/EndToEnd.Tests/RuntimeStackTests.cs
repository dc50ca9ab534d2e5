using System.ClientModel;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lattice.Testing;
using OpenAI;
using OpenAI.Audio;
using OpenAI.Chat;
using OpenAI.Embeddings;

namespace Lattice.EndToEnd.Tests;

/// <summary>Personal runtimes with real processes: a gateway, daemons paired with `lattice relay connect`, real engines.</summary>
public sealed class RuntimeStackTests(RuntimeStackFixture stack) : IClassFixture<RuntimeStackFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private OpenAIClient Sdk() =>
        new(new ApiKeyCredential(stack.ApiKey), new OpenAIClientOptions { Endpoint = new Uri(stack.BaseUrl), NetworkTimeout = Timeout });

    /// <summary>stories260K's greedy continuation of "Once upon a time" in its ChatML template, 30 tokens.</summary>
    private const string GreedyStory = "\"Here?\" Asked Jack.\nThey ran around and saw a big,";

    private static ChatCompletionOptions Greedy(int maxTokens) => new() { Temperature = 0f, MaxOutputTokenCount = maxTokens };

    [Fact]
    public async Task Chat_through_the_personal_runtime_is_the_models_greedy_text_streamed_or_not()
    {
        var chat = Sdk().GetChatClient(stack.Model);
        ChatCompletion first = await chat.CompleteChatAsync([new UserChatMessage("Once upon a time")], Greedy(30)).WaitAsync(Timeout);
        ChatCompletion second = await chat.CompleteChatAsync([new UserChatMessage("Once upon a time")], Greedy(30)).WaitAsync(Timeout);
        var text = first.Content[0].Text;
        Assert.Equal(GreedyStory, text);
        Assert.Equal(text, second.Content[0].Text);
        Assert.Equal(ChatFinishReason.Length, first.FinishReason);
        Assert.Equal(30, first.Usage.OutputTokenCount);

        var streamed = new StringBuilder();
        await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage("Once upon a time")], Greedy(30)))
        {
            foreach (var part in update.ContentUpdate)
            {
                streamed.Append(part.Text);
            }
        }
        Assert.Equal(text, streamed.ToString());
    }

    [Fact]
    public async Task Embeddings_through_the_personal_runtime_rank_related_sentences_higher()
    {
        var client = Sdk().GetEmbeddingClient(stack.Model);
        OpenAIEmbeddingCollection vectors = await client.GenerateEmbeddingsAsync(["A cat sits on the mat", "A kitten rests on the rug", "Stock markets fell sharply today"]).WaitAsync(Timeout);
        var v = vectors.Select(e => e.ToFloats().ToArray()).ToArray();
        Assert.All(v, x => Assert.Equal(384, x.Length));
        static double Cos(float[] a, float[] b) => a.Zip(b, (x, y) => (double)x * y).Sum() / Math.Sqrt(a.Sum(x => (double)x * x) * b.Sum(x => (double)x * x));
        Assert.True(Cos(v[0], v[1]) > Cos(v[0], v[2]) + 0.1, $"related {Cos(v[0], v[1])}, unrelated {Cos(v[0], v[2])}");
    }

    [Fact]
    public async Task Transcription_through_the_personal_runtime()
    {
        var audio = Sdk().GetAudioClient(stack.Model);
        await using var wav = File.OpenRead(Path.Combine(RepoPaths.SharedDir, "models", "audio", "jfk.wav"));
        AudioTranscription result = await audio.TranscribeAudioAsync(wav, "jfk.wav", new AudioTranscriptionOptions { ResponseFormat = AudioTranscriptionFormat.Verbose }).WaitAsync(Timeout);
        Assert.Equal("Hello world.", result.Text.Trim());
        Assert.Equal(11.0, result.Duration!.Value.TotalSeconds, 0);
    }

    [Fact]
    public async Task Fifty_concurrent_streams_over_one_link_complete_with_distinct_ids()
    {
        using var http = stack.Client(stack.ApiKey);
        var results = await Task.WhenAll(Enumerable.Range(0, 50).Select(async i =>
        {
            using var response = await http.PostAsync("v1/chat/completions", new StringContent(
                $$"""{"model":"{{stack.Model}}","messages":[{"role":"user","content":"Story {{i}}"}],"max_tokens":12,"stream":true}""", Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var body = await response.Content.ReadAsStringAsync();
            Assert.EndsWith("data: [DONE]\n\n", body, StringComparison.Ordinal);
            var ids = body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Where(e => e != "data: [DONE]")
                .Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement.GetProperty("id").GetString()).Distinct().ToList();
            return Assert.Single(ids);
        })).WaitAsync(TimeSpan.FromMinutes(3));
        Assert.Equal(50, results.Distinct().Count());
    }

    [Fact]
    public async Task A_hosted_daemon_serves_a_lovelace_model()
    {
        using var admin = stack.Client(stack.AdminKey);
        using var created = await admin.PostAsJsonAsync("admin/v1/runtimes", new JsonObject { ["display_name"] = "hosted-e2e" });
        var hosted = JsonNode.Parse(await created.Content.ReadAsStringAsync())!;
        var id = hosted["lattice_id"]!.GetValue<string>();
        await using var daemon = await stack.StartDaemonAsync(["relay", "connect", "--gateway", stack.Origin, "--token", hosted["bootstrap_token"]!.GetValue<string>()],
            Path.Combine(Path.GetTempPath(), "lattice-hosted-" + Guid.NewGuid().ToString("N")));
        using var model = await admin.PostAsJsonAsync("admin/v1/models", new JsonObject
        {
            ["id"] = "lovelace:stories260k",
            ["offers"] = new JsonArray(new JsonObject { ["runtime"] = id, ["upstream_model"] = "stories260K" }),
        });
        Assert.Equal(HttpStatusCode.Created, model.StatusCode);

        var chat = Sdk().GetChatClient("lovelace:stories260k");
        ChatCompletion viaCatalog = await chat.CompleteChatAsync([new UserChatMessage("Once upon a time")], Greedy(30)).WaitAsync(Timeout);
        ChatCompletion viaPersonal = await Sdk().GetChatClient(stack.Model).CompleteChatAsync([new UserChatMessage("Once upon a time")], Greedy(30)).WaitAsync(Timeout);
        Assert.Equal(GreedyStory, viaCatalog.Content[0].Text);
        Assert.Equal(viaPersonal.Content[0].Text, viaCatalog.Content[0].Text);
    }

    [Fact]
    public async Task The_ledger_counts_a_greedy_request_alike_streamed_or_not_on_a_personal_and_a_hosted_runtime()
    {
        using var admin = stack.Client(stack.AdminKey);
        using var created = await admin.PostAsJsonAsync("admin/v1/runtimes", new JsonObject { ["display_name"] = "hosted-metered" });
        var hosted = JsonNode.Parse(await created.Content.ReadAsStringAsync())!;
        await using var daemon = await stack.StartDaemonAsync(["relay", "connect", "--gateway", stack.Origin, "--token", hosted["bootstrap_token"]!.GetValue<string>()],
            Path.Combine(Path.GetTempPath(), "lattice-hosted-" + Guid.NewGuid().ToString("N")));
        using var model = await admin.PostAsJsonAsync("admin/v1/models", new JsonObject
        {
            ["id"] = "lovelace:stories260k-metered",
            ["offers"] = new JsonArray(new JsonObject { ["runtime"] = hosted["lattice_id"]!.GetValue<string>(), ["upstream_model"] = "stories260K" }),
        });
        Assert.Equal(HttpStatusCode.Created, model.StatusCode);

        foreach (var (modelId, servedBy) in new[] { (stack.Model, "personal_runtime"), ("lovelace:stories260k-metered", "hosted_runtime") })
        {
            using var http = stack.Client(stack.ApiKey);
            var ids = new List<string>();
            foreach (var variant in new[] { "", ",\"stream\":true", ",\"stream\":true,\"stream_options\":{\"include_usage\":true}" })
            {
                using var response = await http.PostAsync("v1/chat/completions", new StringContent(
                    $$"""{"model":"{{modelId}}","messages":[{"role":"user","content":"Once upon a time"}],"temperature":0,"max_tokens":30{{variant}}}""",
                    Encoding.UTF8, "application/json"));
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                Assert.Contains(variant.Length == 0 ? "Jack" : "data: [DONE]", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
                ids.Add(response.Headers.GetValues("x-request-id").Single());
            }

            var records = await UsageRecordsAsync(http, modelId, ids);
            Assert.All(records, r => Assert.Equal("ok", r["status"]!.GetValue<string>()));
            Assert.All(records, r => Assert.Equal(servedBy, r["served_by"]!["type"]!.GetValue<string>()));
            Assert.All(records, r => Assert.False(r["estimated"]!.GetValue<bool>()));
            var usages = records.Select(r => r["usage"]!.ToJsonString()).Distinct().ToList();
            Assert.Single(usages);
            Assert.Equal(30, records[0]["usage"]!["completion_tokens"]!.GetValue<long>());
            Assert.Equal([false, true, true], records.Select(r => r["stream"]!.GetValue<bool>()));
        }
    }

    /// <summary>The usage API's records of <paramref name="ids"/>, in that order, once all are visible.</summary>
    private static async Task<List<JsonNode>> UsageRecordsAsync(HttpClient http, string model, List<string> ids)
    {
        using var timeout = new CancellationTokenSource(Timeout);
        while (true)
        {
            var page = JsonNode.Parse(await http.GetStringAsync($"v1/usage/requests?limit=100&model={Uri.EscapeDataString(model)}", timeout.Token))!;
            var byId = page["data"]!.AsArray().ToDictionary(r => r!["request_id"]!.GetValue<string>(), r => r!);
            if (ids.All(byId.ContainsKey))
            {
                return ids.Select(id => byId[id]).ToList();
            }
            await Task.Delay(50, timeout.Token);
        }
    }

    [Fact]
    public async Task A_killed_daemon_ends_the_stream_with_an_error_event_and_a_restarted_one_reconnects()
    {
        var (id, daemon) = await stack.StartTickerAsync();
        var dataDir = daemon.Description;
        using var http = stack.Client(stack.ApiKey);
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
        {
            Content = new StringContent($$"""{"model":"lattice:personal:{{id}}","messages":[{"role":"user","content":"tick"}],"stream":true}""", Encoding.UTF8, "application/json"),
        };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: ", await reader.ReadLineAsync().WaitAsync(Timeout), StringComparison.Ordinal);

        await daemon.DisposeAsync();

        var rest = await reader.ReadToEndAsync().WaitAsync(Timeout);
        Assert.DoesNotContain("[DONE]", rest, StringComparison.Ordinal);
        Assert.Contains("\"code\":\"personal_lattice_relay_unavailable\"", rest.TrimEnd('\n').Split("\n\n")[^1], StringComparison.Ordinal);

        using var offline = await http.PostAsync("v1/chat/completions", new StringContent($$"""{"model":"lattice:personal:{{id}}","messages":[{"role":"user","content":"x"}]}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Conflict, offline.StatusCode);
        _ = dataDir;

        // The main daemon restarts with its stored credential and serves again.
        await stack.RestartDaemonAsync();
        ChatCompletion after = await Sdk().GetChatClient(stack.Model).CompleteChatAsync([new UserChatMessage("Once upon a time")], Greedy(5)).WaitAsync(Timeout);
        Assert.Equal(5, after.Usage.OutputTokenCount);
    }

    [Fact]
    public async Task Revoking_during_a_stream_fails_it_and_stops_the_daemon()
    {
        var (id, daemon) = await stack.StartTickerAsync();
        await using (daemon)
        {
            using var http = stack.Client(stack.ApiKey);
            using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
            {
                Content = new StringContent($$"""{"model":"lattice:personal:{{id}}","messages":[{"role":"user","content":"tick"}],"stream":true}""", Encoding.UTF8, "application/json"),
            };
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: ", await reader.ReadLineAsync().WaitAsync(Timeout), StringComparison.Ordinal);

            using (var revoke = await http.PostAsync($"v1/personal-runtimes/{id}/revoke", null))
            {
                Assert.Equal(HttpStatusCode.OK, revoke.StatusCode);
            }
            var rest = await reader.ReadToEndAsync().WaitAsync(Timeout);
            Assert.DoesNotContain("[DONE]", rest, StringComparison.Ordinal);
            Assert.Contains("personal_lattice_relay_unavailable", rest, StringComparison.Ordinal);

            await daemon.WaitForOutputAsync(l => l.Contains("refused this runtime's credential", StringComparison.Ordinal), Timeout);
            var deadline = DateTime.UtcNow + Timeout;
            while (!daemon.HasExited && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }
            Assert.Equal(3, daemon.ExitCode);
        }
    }

    [Fact]
    public async Task Status_and_ping_report_on_the_daemon()
    {
        var ping = await RunLatticeAsync("ping");
        Assert.True(ping.Exit == 0, ping.Output);
        Assert.Contains($"runtime {stack.LatticeId} is reachable", ping.Output, StringComparison.Ordinal);
        var status = await RunLatticeAsync("status");
        Assert.Contains(stack.LatticeId, status.Output, StringComparison.Ordinal);
        Assert.Contains("chat.completions:stories260K", status.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_bad_config_is_reported_with_its_key_and_line()
    {
        var bad = Path.Combine(Path.GetTempPath(), Guid.NewGuid().ToString("N") + ".toml");
        await File.WriteAllTextAsync(bad, "[daemon]\nconcurrency = \"many\"\n");
        try
        {
            var result = await RunLatticeAsync("daemon", "--config", bad);
            Assert.Equal(2, result.Exit);
            Assert.Contains($"{bad}:2: 'daemon.concurrency' expected an integer", result.Output, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", result.Output, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(bad);
        }
    }

    private async Task<(int Exit, string Output)> RunLatticeAsync(params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(ProcessHost.DotnetHost) { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(StackFixture.LatticeDll);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        if (!args.Contains("--config"))
        {
            psi.ArgumentList.Add("--config");
            psi.ArgumentList.Add(stack.ConfigPath);
        }
        psi.ArgumentList.Add("--data-dir");
        psi.ArgumentList.Add(stack.DaemonDataDir);
        using var process = System.Diagnostics.Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(Timeout);
        await process.WaitForExitAsync(cts.Token);
        return (process.ExitCode, await stdout + await stderr);
    }
}
