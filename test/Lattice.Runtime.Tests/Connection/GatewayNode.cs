using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Threading.Channels;
using Lattice.Protocol.Runtime;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Lattice.Runtime.Tests.Connection;

/// <summary>
/// One gateway node as a daemon sees it, on a real loopback HTTP server: <c>/v1/runtimes/connect</c> upgrades to a
/// WebSocket, reads the hello and welcomes the daemon (or answers <see cref="RefuseWith"/>); <c>/v1/runtimes/pair</c>
/// takes the bootstrap token <c>lbt_test</c>. <see cref="KillAsync"/> drops every connection and closes the port, as
/// a node that dies does.
/// </summary>
public sealed class GatewayNode : IAsyncDisposable
{
    public const string Credential = "lrt_test";
    public const string BootstrapToken = "lbt_test";

    private readonly WebApplication _app;
    private readonly CancellationTokenSource _killed = new();
    private readonly Channel<Link> _links = Channel.CreateUnbounded<Link>();
    private readonly ConcurrentDictionary<HttpContext, byte> _open = new();
    private int _attempts;
    private int _pairings;

    private GatewayNode(WebApplication app, string url)
    {
        _app = app;
        Url = url;
    }

    /// <summary>The node's origin, <c>http://127.0.0.1:port</c>.</summary>
    public string Url { get; }

    /// <summary>Connection attempts to <c>/v1/runtimes/connect</c> so far, refused ones included.</summary>
    public int Attempts => Volatile.Read(ref _attempts);

    /// <summary>Requests to <c>/v1/runtimes/pair</c> so far.</summary>
    public int Pairings => Volatile.Read(ref _pairings);

    /// <summary>When set, the connect endpoint answers this status instead of upgrading.</summary>
    public int? RefuseWith { get; set; }

    /// <summary>When set, the node ends each link right after its welcome.</summary>
    public bool DropAfterWelcome { get; set; }

    public static async Task<GatewayNode> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        GatewayNode? node = null;
        app.UseWebSockets();
        app.MapPost(RuntimeLink.PairPath, async (HttpContext context) =>
        {
            Interlocked.Increment(ref node!._pairings);
            using var body = await System.Text.Json.JsonDocument.ParseAsync(context.Request.Body);
            if (body.RootElement.GetProperty("bootstrapToken").GetString() != BootstrapToken)
            {
                context.Response.StatusCode = 401;
                await context.Response.WriteAsync("""{"error":{"message":"The bootstrap token is invalid, used or expired."}}""");
                return;
            }
            await context.Response.WriteAsJsonAsync(new { latticeId = "lat_test", runtimeCredential = Credential });
        });
        app.Map(RuntimeLink.ConnectPath, (HttpContext context) => node!.ConnectAsync(context));
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');
        node = new GatewayNode(app, address);
        return node;
    }

    /// <summary>An origin where nothing listens: connecting there is refused at once.</summary>
    public static string DownUrl()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return $"http://127.0.0.1:{port}";
    }

    /// <summary>The next daemon this node welcomed.</summary>
    public async Task<Link> NextLinkAsync() => await _links.Reader.ReadAsync().AsTask().WaitAsync(GatewaySide.Timeout);

    /// <summary>Drops every open connection and stops listening.</summary>
    public async Task KillAsync()
    {
        foreach (var (context, _) in _open)
        {
            context.Abort();
        }
        await _killed.CancelAsync();
        await _app.StopAsync(CancellationToken.None).WaitAsync(GatewaySide.Timeout);
    }

    private async Task ConnectAsync(HttpContext context)
    {
        Interlocked.Increment(ref _attempts);
        if (context.Request.Headers.Authorization != "Bearer " + Credential)
        {
            context.Response.StatusCode = 401;
            return;
        }
        if (RefuseWith is { } status)
        {
            context.Response.StatusCode = status;
            return;
        }
        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        _open[context] = 0;
        try
        {
            var link = new Link(socket);
            var hello = await link.ReceiveAsync(_killed.Token);
            Assert.Equal(FrameType.Hello, hello.Type);
            await link.SendAsync(Frame.Json(FrameType.Welcome, 0, new WelcomeMessage("lat_test", 5), ProtocolJsonContext.Default.WelcomeMessage));
            _links.Writer.TryWrite(link);
            if (DropAfterWelcome)
            {
                return;
            }
            // The link lives until the daemon or a kill ends it.
            await link.Closed.Task.WaitAsync(_killed.Token);
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException or IOException)
        {
        }
        finally
        {
            _open.TryRemove(context, out _);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_killed.IsCancellationRequested)
        {
            await KillAsync();
        }
        await _app.DisposeAsync();
        _killed.Dispose();
    }

    /// <summary>The gateway's end of one welcomed link.</summary>
    public sealed class Link(WebSocket socket)
    {
        private readonly byte[] _buffer = new byte[1 << 20];

        /// <summary>Completed by the test to let the node end the link.</summary>
        public TaskCompletionSource Closed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task DispatchAsync(uint id, string json) =>
            SendAsync(Frame.Dispatch(id, new DispatchHeader("chat.completions", "fixed", "application/json", false), Encoding.UTF8.GetBytes(json)));

        public Task<ReceivedFrame> ReceiveAsync(CancellationToken cancellationToken = default) => GatewaySide.ReceiveAsync(socket, _buffer, cancellationToken);

        public Task SendAsync(byte[] frame) =>
            socket.SendAsync(frame, WebSocketMessageType.Binary, true, CancellationToken.None).WaitAsync(GatewaySide.Timeout);
    }
}
