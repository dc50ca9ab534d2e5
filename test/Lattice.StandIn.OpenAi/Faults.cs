using System.Globalization;

namespace Lattice.StandIn.OpenAi;

internal enum FaultKind
{
    None,
    Fail500,
    Fail503Html,
    Slow,
    Drop,
    Drip,
    BadRequest,
    Held,
}

/// <summary>Fault simulation selected by the request's "model" field.</summary>
internal readonly record struct Fault(FaultKind Kind, int DelayMs, string? Gate = null)
{
    /// <summary><c>standin-held-&lt;gate&gt;</c>: answers only once <c>POST /_standin/release?gate=&lt;gate&gt;</c> lets it through.</summary>
    public const string HeldPrefix = "standin-held-";
    public const string Fail500Model = "standin-fail-500";
    public const string Fail503HtmlModel = "standin-fail-503-html";
    public const string SlowPrefix = "standin-slow-";
    public const string DropModel = "standin-drop";
    public const string DripModel = "standin-drip";
    public const string BadRequestModel = "standin-bad-request";

    public const int DripDelayMs = 300;
    public const int DropDelayMs = 100;

    private static readonly byte[] s_html = "<html>down</html>"u8.ToArray();

    public static Fault From(string? model)
    {
        if (model is null || !model.StartsWith("standin-", StringComparison.Ordinal))
        {
            return default;
        }

        return model switch
        {
            Fail500Model => new Fault(FaultKind.Fail500, 0),
            Fail503HtmlModel => new Fault(FaultKind.Fail503Html, 0),
            DropModel => new Fault(FaultKind.Drop, 0),
            DripModel => new Fault(FaultKind.Drip, 0),
            BadRequestModel => new Fault(FaultKind.BadRequest, 0),
            _ when model.StartsWith(HeldPrefix, StringComparison.Ordinal) && model.Length > HeldPrefix.Length
                => new Fault(FaultKind.Held, 0, model[HeldPrefix.Length..]),
            _ when model.StartsWith(SlowPrefix, StringComparison.Ordinal)
                && int.TryParse(model.AsSpan(SlowPrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out int ms)
                => new Fault(FaultKind.Slow, ms),
            _ => default,
        };
    }

    /// <summary>
    /// Applies the faults that happen before any response is written. Returns true when the request has been
    /// fully handled (error written, connection aborted, or client went away while waiting).
    /// Streaming-only faults (drop while streaming, drip) are left to the caller.
    /// </summary>
    public async ValueTask<bool> ApplyBeforeResponseAsync(HttpContext ctx, bool streaming)
    {
        switch (Kind)
        {
            case FaultKind.Fail500:
                await JsonOut.Error(ctx, StatusCodes.Status500InternalServerError,
                    "The stand-in failed on purpose.", "server_error", null, "standin_failure");
                return true;
            case FaultKind.Fail503Html:
                ctx.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
                ctx.Response.ContentType = "text/html";
                ctx.Response.ContentLength = s_html.Length;
                await ctx.Response.Body.WriteAsync(s_html, ctx.RequestAborted);
                return true;
            case FaultKind.BadRequest:
                await JsonOut.Error(ctx, StatusCodes.Status400BadRequest,
                    "Upstream says the request is bad.", "invalid_request_error", "messages", "standin_bad");
                return true;
            case FaultKind.Slow:
                try
                {
                    await Task.Delay(DelayMs, ctx.RequestAborted);
                }
                catch (OperationCanceledException)
                {
                    return true;
                }

                return false;
            case FaultKind.Held:
                try
                {
                    await Gates.WaitAsync(Gate!, ctx.RequestAborted);
                }
                catch (OperationCanceledException)
                {
                    return true;
                }

                return false;
            case FaultKind.Drop when !streaming:
                ctx.Abort();
                return true;
            default:
                return false;
        }
    }
}

/// <summary>
/// Named gates for <c>standin-held-&lt;gate&gt;</c> requests: each waits for one release. Tests see how many are
/// waiting (<c>GET /_standin/held?gate=</c>) and let them through one by one (<c>POST /_standin/release?gate=&amp;count=</c>).
/// </summary>
internal static class Gates
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Gate> s_gates = new(StringComparer.Ordinal);

    public static async Task WaitAsync(string name, CancellationToken cancellationToken)
    {
        var gate = s_gates.GetOrAdd(name, static _ => new Gate());
        Interlocked.Increment(ref gate.Waiting);
        try
        {
            await gate.Permits.WaitAsync(cancellationToken);
        }
        finally
        {
            Interlocked.Decrement(ref gate.Waiting);
        }
    }

    public static int Waiting(string name) => s_gates.TryGetValue(name, out var gate) ? Volatile.Read(ref gate.Waiting) : 0;

    public static void Release(string name, int count) => s_gates.GetOrAdd(name, static _ => new Gate()).Permits.Release(count);

    private sealed class Gate
    {
        public readonly SemaphoreSlim Permits = new(0);
        public int Waiting;
    }
}
