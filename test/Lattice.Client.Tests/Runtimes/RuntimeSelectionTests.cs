using Lattice.Gateway.Tests.Identity;
using Lattice.Gateway.Tests.Runtimes;
using Lattice.Runtime.Connection;
using Lattice.Runtime.Engines;
using Microsoft.Extensions.AI;

namespace Lattice.Client.Tests.Runtimes;

/// <summary>
/// Runtime selection against a real gateway and a real daemon connection (the runtime's own client, in process, with
/// its fixed engine): list the reachable ones, choose by capability, pin one, and the private-only policy.
/// </summary>
public sealed class RuntimeSelectionTests(OAuthGateway gateway) : IClassFixture<OAuthGateway>
{
    private LatticeClient Lattice(string key, CapacityPolicy policy = CapacityPolicy.Any) => new(new LatticeClientOptions
    {
        Endpoint = new Uri(gateway.Origin),
        TokenProvider = new DeveloperKeyTokenProvider(key),
        CapacityPolicy = policy,
        Retry = new LatticeRetryOptions { MaxRetries = 0 },
    });

    private async Task<TestRuntimes.Runtime> ConnectAsync(LatticeClient lattice, string name, IEngine engine)
    {
        var created = await lattice.Runtimes.CreateAsync(name);
        var credentials = await RuntimeCredentials.PairAsync(new Uri(gateway.Origin), created.BootstrapToken, CancellationToken.None);
        return await TestRuntimes.StartAsync(credentials, engine);
    }

    [Fact]
    public async Task A_reachable_runtime_is_chosen_by_capability_pinned_and_serves_the_chat()
    {
        var tenant = await gateway.NewTenantAsync("runtimes");
        using var lattice = Lattice(tenant.Key);
        var idle = await lattice.Runtimes.CreateAsync("unpaired one");
        await using var laptop = await ConnectAsync(lattice, "laptop", new FixedEngine("fixed-chat"));

        var all = await lattice.Runtimes.ListAsync();
        Assert.Equal(2, all.Count);
        Assert.Equal(RuntimeStatus.Unpaired, all.Single(r => r.LatticeId == idle.Runtime.LatticeId).State);
        var reachable = Assert.Single(await lattice.Runtimes.ListReachableAsync("chat.completions"));
        Assert.Equal(laptop.LatticeId, reachable.LatticeId);
        Assert.True(reachable.Serves("chat.completions", "fixed-chat"));
        Assert.Empty(await lattice.Runtimes.ListReachableAsync("embeddings"));
        await Assert.ThrowsAsync<NoReachableRuntimeException>(() => lattice.Runtimes.ChooseAsync("chat.completions", "another-model"));

        var chosen = await lattice.Runtimes.ChooseAsync("chat.completions");
        Assert.Equal(laptop.LatticeId, chosen.LatticeId);
        Assert.Contains(await lattice.Catalog.ListModelsAsync(), m => m.Id == chosen.ModelId && m.IsPersonalRuntime);

        using var pinned = lattice.WithRuntime(chosen);
        var answer = await pinned.GetChatClient().GetResponseAsync("hi");
        Assert.Equal("Hello from the fixed engine.", answer.Text);
        var streamed = new List<ChatResponseUpdate>();
        await foreach (var update in pinned.GetChatClient().GetStreamingResponseAsync("hi"))
        {
            streamed.Add(update);
        }
        Assert.Equal(string.Concat(Enumerable.Repeat("tick ", 8)), streamed.ToChatResponse().Text);

        // Revoked: the pinned runtime is never replaced by other capacity.
        await lattice.Runtimes.RevokeAsync(chosen.LatticeId);
        var unreachable = await Assert.ThrowsAsync<RuntimeUnreachableException>(() => pinned.GetChatClient().GetResponseAsync("hi"));
        Assert.StartsWith("req_", unreachable.RequestId);
        Assert.Equal(RuntimeStatus.Revoked, (await lattice.Runtimes.GetAsync(chosen.LatticeId)).State);
    }

    [Fact]
    public async Task A_private_only_client_never_sends_a_request_that_other_capacity_could_serve()
    {
        var tenant = await gateway.NewTenantAsync("private");
        using var open = Lattice(tenant.Key);
        await using var laptop = await ConnectAsync(open, "laptop", new FixedEngine("fixed-chat"));
        using var privateOnly = Lattice(tenant.Key, CapacityPolicy.PrivateOnly);

        var refused = await Assert.ThrowsAsync<PrivateOnlyViolationException>(() => privateOnly.GetChatClient("lovelace:chat").GetResponseAsync("hi"));
        Assert.Equal("lovelace:chat", refused.Model);
        Assert.Null(refused.RequestId); // refused by the client: nothing reached the gateway
        await Assert.ThrowsAsync<PrivateOnlyViolationException>(() => privateOnly.InvokeAsync("chat.completions", new() { ["model"] = "lovelace:chat" }));

        var runtime = await privateOnly.Runtimes.ChooseAsync("chat.completions");
        var answer = await privateOnly.WithRuntime(runtime).GetChatClient().GetResponseAsync("hi");
        Assert.Equal("Hello from the fixed engine.", answer.Text);
    }

    [Fact]
    public async Task A_runtime_that_drops_mid_stream_ends_the_stream_with_relay_unavailable()
    {
        var tenant = await gateway.NewTenantAsync("flaky");
        using var lattice = Lattice(tenant.Key);
        var runtime = await ConnectAsync(lattice, "flaky", new SlowEngine("slow-chat", TimeSpan.FromMilliseconds(20), 100_000));
        using var pinned = lattice.WithRuntime(await lattice.Runtimes.GetAsync(runtime.LatticeId));
        var updates = 0;
        var dropped = await Assert.ThrowsAsync<RelayUnavailableException>(async () =>
        {
            await foreach (var update in pinned.GetChatClient().GetStreamingResponseAsync("hi"))
            {
                if (++updates == 1)
                {
                    await runtime.DisposeAsync(); // the daemon goes away while its answer streams
                }
            }
        });
        Assert.StartsWith("req_", dropped.RequestId);
        Assert.Equal(0, (int)dropped.StatusCode); // an error event after a 200 had started
    }

    [Fact]
    public async Task Marketplace_only_capacity_is_no_capacity_for_a_private_only_credential()
    {
        using var lattice = Lattice(gateway.A.Key);
        var refused = await Assert.ThrowsAsync<NoCapacityException>(() => lattice.GetChatClient("lovelace:market-only").GetResponseAsync("hi"));
        Assert.Contains("lattice:compute:marketplace", refused.Message, StringComparison.Ordinal);
        Assert.StartsWith("req_", refused.RequestId);
    }
}
