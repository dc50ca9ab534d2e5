using System.Net.WebSockets;
using System.Text;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Dispatch;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.Metering;
using Lattice.Gateway.Runtimes;
using Lattice.Gateway.Tasks;
using Lattice.Protocol;
using Lattice.Protocol.Runtime;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Lattice.Gateway.Tests.Runtimes;

/// <summary>
/// The runtime execution timeout is time without progress: every frame of the dispatch starts it again, so a stream
/// that keeps producing is never cut, and only silence for the whole timeout ends a dispatch. A fake clock, no waits.
/// </summary>
public sealed class IdleTimeoutTests : IAsyncDisposable
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan Idle = TimeSpan.FromMinutes(5);

    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private readonly WebSocket _daemon;
    private readonly RuntimeConnection _connection;
    private readonly Task _run;
    private readonly Candidate _candidate;
    private readonly RuntimeTarget _target;

    public IdleTimeoutTests()
    {
        var (gateway, daemon) = SocketPair.Create();
        _daemon = daemon;
        _connection = new RuntimeConnection(gateway, "lat_idle", "ws_1", false, new HelloMessage("1", 1, []), _time, NullLogger.Instance);
        _run = _connection.RunAsync(CancellationToken.None);
        _target = new RuntimeTarget(Options.Create(new GatewayOptions { RuntimeTimeout = Idle }), _time);
        _candidate = new Candidate(ServedByKinds.PersonalRuntime, "lat_idle", CapacityClasses.Personal, "fixed", Prices.Free, _target,
            new RuntimeTarget.Link(_connection, new CapabilityInfo(BuiltInTaskClasses.ChatCompletions, "fixed", "fixed", null)));
    }

    public async ValueTask DisposeAsync()
    {
        _connection.Abort();
        await _run.WaitAsync(Wait);
    }

    private TaskRequest Request()
    {
        var body = """{"model":"lattice:personal:lat_idle","messages":[{"role":"user","content":"hi"}],"stream":true}"""u8.ToArray();
        return new TaskRequest
        {
            Task = new TaskClass(BuiltInTaskClasses.ChatCompletions, InputSchema.TryCreate("{}", out _)!, true, TaskContentKind.Json,
                "/chat/completions", "usage", true, DateTimeOffset.UnixEpoch),
            Model = "lattice:personal:lat_idle",
            Caller = new Caller(CredentialKind.ApiKey, "ws_1", "key_1", [Scopes.Inference]),
            Input = new TaskInput { Body = body, Length = body.Length, Model = "lattice:personal:lat_idle", Stream = true, ContentType = "application/json" },
            RequestId = "req_idle",
            ReceivedAt = _time.GetUtcNow(),
            StartTimestamp = _time.GetTimestamp(),
        };
    }

    /// <summary>The next frame the gateway sends the daemon.</summary>
    private async Task<(FrameType Type, uint Id)> ReceiveAsync()
    {
        var buffer = new byte[64 * 1024];
        var result = await _daemon.ReceiveAsync(buffer.AsMemory(), CancellationToken.None).AsTask().WaitAsync(Wait);
        Assert.True(Frame.TryRead(buffer.AsMemory(0, result.Count), out var type, out var id, out _));
        return (type, id);
    }

    private Task SendAsync(byte[] frame) => _daemon.SendAsync(frame, WebSocketMessageType.Binary, true, CancellationToken.None);

    private Task SendDataAsync(uint id, string text) => SendAsync(Frame.Raw(FrameType.Data, id, Encoding.UTF8.GetBytes(text)));

    /// <summary>Sends the dispatch and has the daemon start a stream; returns the answer being read.</summary>
    private async Task<(TargetResponse Response, uint Id)> OpenAsync()
    {
        var opening = _target.OpenAsync(Request(), _candidate, CancellationToken.None).AsTask();
        var (type, id) = await ReceiveAsync();
        Assert.Equal(FrameType.Dispatch, type);
        await SendAsync(Frame.Json(FrameType.ResponseStart, id, new ResponseStart(200, "text/event-stream"), ProtocolJsonContext.Default.ResponseStart));
        var opened = await opening.WaitAsync(Wait);
        Assert.NotNull(opened.Response);
        return (opened.Response, id);
    }

    private static async Task<string> ReadDataAsync(TargetResponse response)
    {
        var read = await response.ReadAsync().AsTask().WaitAsync(Wait);
        Assert.False(read.Completed, $"the answer ended: {read.Error?.Code}");
        return Encoding.UTF8.GetString(read.Data.Span);
    }

    [Fact]
    public async Task A_stream_that_keeps_producing_is_never_cut()
    {
        var (response, id) = await OpenAsync();
        await using (response)
        {
            // Twelve frames four minutes apart: 48 minutes in all, never five without progress.
            for (var i = 0; i < 12; i++)
            {
                await SendDataAsync(id, $"data: {{\"i\":{i}}}\n\n");
                Assert.Equal($"data: {{\"i\":{i}}}\n\n", await ReadDataAsync(response));
                _time.Advance(Idle - TimeSpan.FromMinutes(1));
            }
            await SendAsync(Frame.Raw(FrameType.End, id, "{}"u8));
            var end = await response.ReadAsync().AsTask().WaitAsync(Wait);
            Assert.True(end.Completed);
            Assert.Null(end.Error);
        }
    }

    [Fact]
    public async Task Silence_for_the_whole_timeout_ends_the_stream_with_the_timeout_error()
    {
        var (response, id) = await OpenAsync();
        await using (response)
        {
            await SendDataAsync(id, "data: {\"i\":0}\n\n");
            Assert.Equal("data: {\"i\":0}\n\n", await ReadDataAsync(response));

            // A second short of the timeout is not yet idle: the next frame still comes through.
            _time.Advance(Idle - TimeSpan.FromSeconds(1));
            await SendDataAsync(id, "data: {\"i\":1}\n\n");
            Assert.Equal("data: {\"i\":1}\n\n", await ReadDataAsync(response));

            var pending = response.ReadAsync().AsTask();
            _time.Advance(Idle);
            var read = await pending.WaitAsync(Wait);
            Assert.True(read.Completed);
            Assert.Equal(ErrorCodes.PersonalLatticeExecutionTimeout, read.Error?.Code);
            Assert.Equal(504, read.Error?.Status);
        }
        // The runtime is told to stop.
        Assert.Equal((FrameType.Cancel, id), await ReceiveAsync());
    }

    [Fact]
    public async Task A_runtime_that_never_starts_answering_times_out_after_the_timeout()
    {
        var opening = _target.OpenAsync(Request(), _candidate, CancellationToken.None).AsTask();
        var (type, id) = await ReceiveAsync();
        Assert.Equal(FrameType.Dispatch, type);

        _time.Advance(Idle);
        var failed = await opening.WaitAsync(Wait);
        Assert.Null(failed.Response);
        Assert.Equal(DispatchFailure.Timeout, failed.Failure);
        Assert.Equal(ErrorCodes.PersonalLatticeExecutionTimeout, failed.Error.Code);
        Assert.Equal((FrameType.Cancel, id), await ReceiveAsync());
    }
}
