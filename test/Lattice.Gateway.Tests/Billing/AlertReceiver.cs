using System.Text;
using System.Threading.Channels;
using Lattice.Gateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Lattice.Gateway.Tests.Billing;

/// <summary>An alert receiver on loopback: records each request and answers 500 to the first N, 200 after.</summary>
internal sealed class AlertReceiver : IAsyncDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    public sealed record Request(string Signature, string? ContentType, string Body, int Status);

    private readonly Channel<Request> _requests = Channel.CreateUnbounded<Request>();
    private WebApplication _app = null!;
    private int _failFirst;
    private int _count;

    public string Url { get; private set; } = "";
    public int Count => Volatile.Read(ref _count);

    public void FailFirst(int n) => Volatile.Write(ref _failFirst, n);

    public static async Task<AlertReceiver> StartAsync()
    {
        var receiver = new AlertReceiver();
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        receiver._app = builder.Build();
        receiver._app.MapPost("/hooks/budget", receiver.HandleAsync);
        await receiver._app.StartAsync().WaitAsync(Timeout);
        var address = receiver._app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        receiver.Url = address.TrimEnd('/') + "/hooks/budget";
        return receiver;
    }

    private async Task HandleAsync(HttpContext context)
    {
        using var reader = new StreamReader(context.Request.Body, Encoding.UTF8);
        var body = await reader.ReadToEndAsync();
        var n = Interlocked.Increment(ref _count);
        var status = n <= Volatile.Read(ref _failFirst) ? 500 : 200;
        _requests.Writer.TryWrite(new Request(context.Request.Headers["Lattice-Signature"].ToString(), context.Request.ContentType, body, status));
        context.Response.StatusCode = status;
    }

    public async Task<Request> NextAsync() => await _requests.Reader.ReadAsync().AsTask().WaitAsync(Timeout);

    public async ValueTask DisposeAsync() => await _app.ShutDownAsync();
}
