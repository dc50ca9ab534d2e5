using System.ClientModel;
using System.ClientModel.Primitives;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using OpenAI;
using OpenAI.Chat;

namespace Lattice.EndToEnd.Tests;

/// <summary>
/// The official OpenAI .NET SDK, unmodified and with its default retry policy, against a rate-limited key of the
/// real gateway process: it gets the 429, waits the retry-after it was told, retries and succeeds.
/// </summary>
[Collection(StackCollection.Name)]
public sealed class RateLimitSdkTests(StackFixture stack)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task The_dotnet_sdk_waits_out_a_429_and_retries_to_success()
    {
        var gate = "dn" + Guid.NewGuid().ToString("N")[..12];
        var model = "lovelace:held-" + gate;
        await stack.AddModelAsync(model, stack.StandInUrl + "/v1", "standin-held-" + gate);
        using var admin = stack.AdminClient();
        using var created = await admin.PostAsJsonAsync($"admin/v1/workspaces/{stack.WorkspaceId}/keys",
            new JsonObject { ["name"] = "dotnet limited", ["limits"] = new JsonObject { ["max_concurrent"] = 1 } });
        var key = (await created.Content.ReadFromJsonAsync<JsonObject>())!["key"]!.GetValue<string>();

        // The first request holds the key's only slot until the stand-in's gate opens.
        var holder = new OpenAIClient(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(stack.BaseUrl), NetworkTimeout = Timeout });
        var first = holder.GetChatClient(model).CompleteChatAsync([new UserChatMessage("first")]);
        using var standIn = new HttpClient { BaseAddress = new Uri(stack.StandInUrl) };
        while ((await standIn.GetFromJsonAsync<JsonObject>($"/_standin/held?gate={gate}"))!["waiting"]!.GetValue<int>() < 1)
        {
            await Task.Delay(10);
        }

        // The second goes through a transport that only watches: when it sees the refusal it opens the gate, so the
        // slot is free when the SDK's own retry policy tries again.
        var watcher = new Watcher(() => standIn.PostAsync($"/_standin/release?gate={gate}", null));
        using var http = new HttpClient(watcher) { Timeout = Timeout };
        var client = new OpenAIClient(new ApiKeyCredential(key), new OpenAIClientOptions
        {
            Endpoint = new Uri(stack.BaseUrl),
            NetworkTimeout = Timeout,
            Transport = new HttpClientPipelineTransport(http),
        });
        ChatCompletion second = await client.GetChatClient("lovelace:chat").CompleteChatAsync([new UserChatMessage("second")]).WaitAsync(Timeout);

        Assert.Equal("You said: second", second.Content[0].Text);
        Assert.Equal(HttpStatusCode.TooManyRequests, watcher.Seen[0].Status);
        Assert.Equal("1", watcher.Seen[0].RetryAfter);
        Assert.Equal(HttpStatusCode.OK, watcher.Seen[^1].Status);
        // It waited at least the second it was told before trying again.
        Assert.True(watcher.Seen[1].At - watcher.Seen[0].At >= TimeSpan.FromSeconds(1), $"retried after {watcher.Seen[1].At - watcher.Seen[0].At}");
        ChatCompletion held = await first.WaitAsync(Timeout);
        Assert.Equal("You said: first", held.Content[0].Text);
    }

    /// <summary>Passes every request through unchanged and notes each answer's status and retry-after.</summary>
    private sealed class Watcher(Func<Task> onFirstRefusal) : DelegatingHandler(new SocketsHttpHandler())
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();

        public List<(HttpStatusCode Status, string? RetryAfter, TimeSpan At)> Seen { get; } = [];

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var response = await base.SendAsync(request, cancellationToken);
            lock (Seen)
            {
                Seen.Add((response.StatusCode, response.Headers.TryGetValues("retry-after", out var v) ? v.Single() : null, _clock.Elapsed));
            }
            if (response.StatusCode == HttpStatusCode.TooManyRequests && Seen.Count == 1)
            {
                await onFirstRefusal();
            }
            return response;
        }
    }
}
