using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Tests.Runtimes;
using Lattice.Protocol.Metering;
using Lattice.Runtime.Engines;

namespace Lattice.Gateway.Tests.Metering;

/// <summary>Requests served over runtime links are metered from the runtime's own end frame.</summary>
public sealed class RuntimeMeteringTests(LiveGateway gateway) : IClassFixture<LiveGateway>
{
    private static StringContent Chat(string model, bool stream = false) => new(
        $$"""{"model":"{{model}}","messages":[{"role":"user","content":"hi"}],"stream":{{(stream ? "true" : "false")}}}""", Encoding.UTF8, "application/json");

    private async Task<UsageRecord> SendAsync(string key, string model, bool stream = false)
    {
        using var http = gateway.Client(key);
        using var response = await http.PostAsync("v1/chat/completions", Chat(model, stream));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await response.Content.ReadAsStringAsync();
        return await Ledger.RecordAsync(gateway.Services, response.Headers.GetValues("x-request-id").Single());
    }

    [Fact]
    public async Task A_personal_runtime_request_is_recorded_with_the_runtimes_counts_and_costs_nothing()
    {
        await using var runtime = await TestRuntimes.ConnectAsync(gateway, gateway.KeyA, new FixedEngine());
        var model = "lattice:personal:" + runtime.LatticeId;

        var record = await SendAsync(gateway.KeyA, model);
        Assert.Equal(UsageStatuses.Ok, record.Status);
        Assert.Equal(ServedByKinds.PersonalRuntime, record.ServedBy);
        Assert.Equal(runtime.LatticeId, record.ServedById);
        Assert.Equal(CapacityClasses.Personal, record.Capacity);
        Assert.Equal(model, record.Model);
        Assert.Equal(new Usage(1, 5, 6), record.Usage);
        Assert.Equal(0, record.CostPicoUsd);

        var streamed = await SendAsync(gateway.KeyA, model, stream: true);
        Assert.True(streamed.Stream);
        // The fixed engine reports one completion token per chunk it streams (eight).
        Assert.Equal(new Usage(1, 8, 9), streamed.Usage);
    }

    [Fact]
    public async Task An_offline_hosted_runtime_is_skipped_for_the_next_candidate()
    {
        await using var first = await TestRuntimes.ConnectHostedAsync(gateway, new FixedEngine());
        await using var second = await TestRuntimes.ConnectHostedAsync(gateway, new FixedEngine());
        var model = "lovelace:two-racks-" + first.LatticeId;
        await LiveGateway.PostAsync(gateway.Admin, "admin/v1/models", new JsonObject
        {
            ["id"] = model,
            ["offers"] = new JsonArray(
                new JsonObject { ["runtime"] = first.LatticeId, ["upstream_model"] = "fixed", ["priority"] = 0 },
                new JsonObject { ["runtime"] = second.LatticeId, ["upstream_model"] = "fixed", ["priority"] = 1 }),
        });

        var served = await SendAsync(gateway.KeyB, model);
        Assert.Equal(ServedByKinds.HostedRuntime, served.ServedBy);
        Assert.Equal(first.LatticeId, served.ServedById);
        Assert.Equal(CapacityClasses.Hosted, served.Capacity);

        await first.DisposeAsync(); // the first rack goes offline
        var failedOver = await SendAsync(gateway.KeyB, model);
        Assert.Equal(UsageStatuses.Ok, failedOver.Status);
        Assert.Equal(second.LatticeId, failedOver.ServedById);
        Assert.Equal(new Usage(1, 5, 6), failedOver.Usage);
    }

    [Fact]
    public async Task A_client_that_leaves_a_runtime_stream_is_metered_with_the_runtimes_count_up_to_the_cancel()
    {
        await using var runtime = await TestRuntimes.ConnectAsync(gateway, gateway.KeyA,
            new FixedEngine(streamChunks: 10_000, chunkDelay: TimeSpan.FromMilliseconds(5)));
        using var http = gateway.Client(gateway.KeyA);
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = Chat("lattice:personal:" + runtime.LatticeId, stream: true) };
        string id;
        using (var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            id = response.Headers.GetValues("x-request-id").Single();
            await using var body = await response.Content.ReadAsStreamAsync();
            using var reader = new StreamReader(body);
            for (var events = 0; events < 3;)
            {
                if ((await reader.ReadLineAsync())?.StartsWith("data: ", StringComparison.Ordinal) == true)
                {
                    events++;
                }
            }
        }
        var record = await Ledger.RecordAsync(gateway.Services, id);
        Assert.Equal(UsageStatuses.Cancelled, record.Status);
        Assert.Equal(ServedByKinds.PersonalRuntime, record.ServedBy);
        // The runtime's own count, not an estimate: at least the chunks the client read, far fewer than the whole answer.
        Assert.False(record.Usage.Estimated);
        Assert.Equal(1, record.Usage.PromptTokens);
        Assert.InRange(record.Usage.CompletionTokens, 3, 9_999);
    }

    [Fact]
    public async Task A_runtime_that_counts_nothing_is_counted_by_the_gateway_and_marked_estimated()
    {
        await using var runtime = await TestRuntimes.ConnectAsync(gateway, gateway.KeyA, new SilentEngine());
        var record = await SendAsync(gateway.KeyA, "lattice:personal:" + runtime.LatticeId);
        Assert.Equal(UsageStatuses.Ok, record.Status);
        Assert.True(record.Usage.Estimated);
        var estimator = (Lattice.Gateway.Metering.TokenEstimator)gateway.Services.GetService(typeof(Lattice.Gateway.Metering.TokenEstimator))!;
        Assert.Equal(estimator.CountTokens(SilentEngine.Answer, record.Model), record.Usage.CompletionTokens);
        Assert.True(record.Usage.PromptTokens > 0);
    }

    /// <summary>Like a runtime forwarding to a local server that reports no usage: answers, and counts nothing.</summary>
    private sealed class SilentEngine : IEngine
    {
        public const string Answer = "Nothing was counted here";

        public string Kind => "silent";
        public IReadOnlyList<EngineCapability> Capabilities { get; } = [new("chat.completions", "silent", null)];
        public Task LoadAsync(IProgress<double>? progress, CancellationToken cancellationToken) => Task.CompletedTask;

        public async Task<EngineUsage> ExecuteAsync(EngineRequest request, IEngineOutput output, CancellationToken cancellationToken)
        {
            await output.StartAsync(200, "application/json", cancellationToken);
            await output.WriteAsync(Encoding.UTF8.GetBytes(
                $$"""{"id":"x","object":"chat.completion","created":1,"model":"silent","choices":[{"index":0,"message":{"role":"assistant","content":"{{Answer}}"},"finish_reason":"stop"}]}"""),
                cancellationToken);
            return new EngineUsage();
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
