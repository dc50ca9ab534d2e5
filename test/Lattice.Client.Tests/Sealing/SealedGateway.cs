using System.Collections.Concurrent;
using Lattice.Gateway.Tests.Runtimes;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;

namespace Lattice.Client.Tests.Sealing;

/// <summary>A live gateway logging everything, at Trace and from every category, into <see cref="Logs"/>.</summary>
public sealed class SealedGateway() : LiveGateway(new Dictionary<string, string?>
{
    ["Logging:LogLevel:Default"] = "Trace",
    ["Logging:LogLevel:Microsoft"] = "Trace",
    ["Logging:LogLevel:Microsoft.AspNetCore"] = "Trace",
    ["Logging:LogLevel:Microsoft.EntityFrameworkCore"] = "Trace",
    ["Logging:LogLevel:System"] = "Trace",
    ["Logging:LogLevel:System.Net.Http"] = "Trace",
})
{
    public CapturingLoggerProvider Logs { get; } = new();

    protected override void Configure(WebApplicationBuilder builder) => builder.Logging.AddProvider(Logs);
}

/// <summary>Keeps every log entry as text: level, category, message, every structured value, scopes and exceptions.</summary>
public sealed class CapturingLoggerProvider : ILoggerProvider
{
    private readonly ConcurrentQueue<(LogLevel Level, string Text)> _entries = new();

    public IReadOnlyCollection<(LogLevel Level, string Text)> Entries => _entries;

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    private sealed class Logger(CapturingLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull
        {
            owner._entries.Enqueue((LogLevel.None, "scope " + category + " " + Describe(state)));
            return null;
        }

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner._entries.Enqueue((logLevel, $"{category} {eventId} {formatter(state, exception)} {Describe(state)} {exception}"));

        private static string Describe(object? state) => state is IEnumerable<KeyValuePair<string, object?>> values
            ? string.Join(' ', values.Select(v => $"{v.Key}={v.Value}"))
            : state?.ToString() ?? "";
    }
}

/// <summary>Every byte a client sends to the gateway and gets back, as it crosses the wire (answers read whole first).</summary>
public sealed class WireCapture : DelegatingHandler
{
    private readonly ConcurrentQueue<byte[]> _bytes = new();

    public WireCapture() : base(new SocketsHttpHandler { UseProxy = false })
    {
    }

    public int Requests { get; private set; }

    /// <summary>The sealed request bodies sent, in order.</summary>
    public ConcurrentQueue<byte[]> SealedBodies { get; } = new();

    public bool Contains(string text)
    {
        var needle = System.Text.Encoding.UTF8.GetBytes(text);
        return _bytes.Any(b => b.AsSpan().IndexOf(needle) >= 0);
    }

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        Requests++;
        if (request.Content is not null)
        {
            var sent = await request.Content.ReadAsByteArrayAsync(cancellationToken);
            _bytes.Enqueue(sent);
            if (Lattice.Protocol.Sealing.SealedHttp.IsSealed(request.Content.Headers.ContentType?.ToString()))
            {
                SealedBodies.Enqueue(sent);
            }
        }
        var response = await base.SendAsync(request, cancellationToken);
        var body = await response.Content.ReadAsByteArrayAsync(cancellationToken);
        _bytes.Enqueue(body);
        var copy = new ByteArrayContent(body);
        foreach (var header in response.Content.Headers)
        {
            copy.Headers.TryAddWithoutValidation(header.Key, header.Value);
        }
        response.Content = copy;
        return response;
    }
}
