using System.Net.WebSockets;
using System.Text.Json.Nodes;
using Lattice.Protocol.Runtime;
using Lattice.Protocol.Sealing;
using Lattice.Runtime.Config;
using Lattice.Runtime.Connection;
using Lattice.Runtime.Engines;
using Lattice.Runtime.Hosting;

namespace Lattice.Gateway.Tests.Runtimes;

/// <summary>Sealed dispatch, first slice: the daemon's work key reaches its record through the hello and survives restarts.</summary>
public sealed class WorkKeyTests(LiveGateway gateway) : IClassFixture<LiveGateway>, IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly string _dataDir = Path.Combine(Path.GetTempPath(), "lattice-workkey-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dataDir))
        {
            Directory.Delete(_dataDir, recursive: true);
        }
    }

    /// <summary>Runs the daemon as <c>lattice daemon</c> does until it is connected (the gateway has stored the hello's key before its welcome).</summary>
    private async Task<(Task<LinkExit> Run, CancellationTokenSource Stop)> StartDaemonAsync(RuntimeCredentials credentials)
    {
        var connected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var stop = new CancellationTokenSource();
        var config = new DaemonConfig(4, _dataDir, [credentials.Gateway], [], null);
        var run = DaemonRunner.RunAsync(credentials, new EngineSet([new FixedEngine()]), config, s =>
        {
            if (s.StartsWith("connected", StringComparison.Ordinal))
            {
                connected.TrySetResult();
            }
        }, stop.Token);
        await connected.Task.WaitAsync(Timeout);
        return (run, stop);
    }

    private async Task<string?> PublishedKeyAsync(string latticeId)
    {
        using var http = gateway.Client(gateway.KeyA);
        var record = JsonNode.Parse(await http.GetStringAsync($"v1/personal-runtimes/{latticeId}"))!;
        return record["publicWorkKey"]?.GetValue<string>();
    }

    [Fact]
    public async Task The_hello_publishes_the_daemons_work_key_and_a_restart_keeps_it()
    {
        var (id, token) = await TestRuntimes.CreateAsync(gateway, gateway.KeyA);
        Assert.Null(await PublishedKeyAsync(id));
        var credentials = await RuntimeCredentials.PairAsync(new Uri(gateway.Origin), token, CancellationToken.None);

        var (run, stop) = await StartDaemonAsync(credentials);
        string first;
        using (var key = WorkKey.Load(_dataDir))
        {
            Assert.NotNull(key);
            first = key.PublicKeyText;
        }
        Assert.Equal(first, await PublishedKeyAsync(id));
        Assert.Equal(SealedFormat.PublicKeyBytes, System.Buffers.Text.Base64Url.DecodeFromChars(first).Length);
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(WorkKey.PathIn(_dataDir)));
        }
        await stop.CancelAsync();
        await run.WaitAsync(Timeout);

        (run, stop) = await StartDaemonAsync(credentials);
        using (var key = WorkKey.Load(_dataDir))
        {
            Assert.Equal(first, key!.PublicKeyText);
        }
        Assert.Equal(first, await PublishedKeyAsync(id));
        await stop.CancelAsync();
        await run.WaitAsync(Timeout);
    }

    [Fact]
    public async Task A_daemon_without_a_work_key_leaves_the_record_as_it_was()
    {
        // An older daemon sends no key: the link works and the record keeps no key.
        await using var runtime = await TestRuntimes.ConnectAsync(gateway, gateway.KeyA, new FixedEngine());
        Assert.Null(await PublishedKeyAsync(runtime.LatticeId));
    }

    [Fact]
    public async Task A_hello_whose_work_key_is_not_a_p256_point_is_refused_and_nothing_is_stored()
    {
        var (id, token) = await TestRuntimes.CreateAsync(gateway, gateway.KeyA);
        var credentials = await RuntimeCredentials.PairAsync(new Uri(gateway.Origin), token, CancellationToken.None);
        using var timeout = new CancellationTokenSource(Timeout);
        using var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("Authorization", "Bearer " + credentials.Credential);
        await socket.ConnectAsync(new Uri("ws" + gateway.Origin["http".Length..] + RuntimeLink.ConnectPath), timeout.Token);
        // 0x04 and 64 zero bytes: the right length and prefix, not a point on the curve.
        var notAPoint = WorkKey.Base64Url([0x04, .. new byte[64]]);
        var hello = Frame.Json(FrameType.Hello, 0, new HelloMessage("test", 1, [], PublicWorkKey: notAPoint), ProtocolJsonContext.Default.HelloMessage);
        await socket.SendAsync(hello, WebSocketMessageType.Binary, true, timeout.Token);

        var first = await socket.ReceiveAsync(new byte[4096], timeout.Token);
        Assert.Equal(WebSocketMessageType.Close, first.MessageType);
        Assert.Equal(WebSocketCloseStatus.ProtocolError, first.CloseStatus);
        Assert.Null(await PublishedKeyAsync(id));
    }
}
