using System.Globalization;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections.Features;

namespace Lattice.StandIn.OpenAi;

internal enum FaultKind
{
    None,
    Fail500,
    Fail500Endless,
    Fail503Html,
    Slow,
    Drop,
    /// <summary>As <see cref="Drop"/>, but the connection is reset (TCP RST) instead of closed.</summary>
    Reset,
    Drip,
    BadRequest,
    Gate,
    /// <summary>A streamed chat answer waits at a gate after its last word, before the finish chunk.</summary>
    Pause,
    Overloaded,
}

/// <summary>Fault simulation selected by the request's "model" field.</summary>
internal readonly record struct Fault(FaultKind Kind, int DelayMs, string? GateName = null)
{
    public const string Fail500Model = "standin-fail-500";
    /// <summary>A 500 whose JSON error body never ends (until the client goes away).</summary>
    public const string Fail500EndlessModel = "standin-fail-500-endless";
    public const string Fail503HtmlModel = "standin-fail-503-html";
    public const string SlowPrefix = "standin-slow-";
    /// <summary><c>standin-drop</c> drops the stream 100 ms after its first chunk; <c>standin-drop-&lt;gate&gt;</c> once gate <c>&lt;gate&gt;</c> lets it (see <see cref="StandInGates"/>).</summary>
    public const string DropModel = "standin-drop";
    /// <summary><c>standin-reset</c> (and <c>standin-reset-&lt;gate&gt;</c>): as <c>standin-drop</c>, but the connection is reset (RST), as a crashed or cut-off upstream's is.</summary>
    public const string ResetModel = "standin-reset";
    public const string DripModel = "standin-drip";
    public const string BadRequestModel = "standin-bad-request";
    public const string GatePrefix = "standin-held-";
    /// <summary><c>standin-pause-&lt;gate&gt;</c>: a streamed chat answer stops after its last word until gate <c>&lt;gate&gt;</c> lets it, then finishes; anything else is held before answering, as <see cref="GatePrefix"/>.</summary>
    public const string PausePrefix = "standin-pause-";
    /// <summary>529, Anthropic's "overloaded" status (on the chat route too, in OpenAI's envelope).</summary>
    public const string OverloadedModel = "standin-overloaded-529";

    public const int DripDelayMs = 300;
    public const int DropDelayMs = 100;

    private static readonly byte[] s_html = "<html>down</html>"u8.ToArray();

    /// <summary>Drops or resets the stream mid-way (<see cref="FaultKind.Drop"/> or <see cref="FaultKind.Reset"/>).</summary>
    public bool Breaks => Kind is FaultKind.Drop or FaultKind.Reset;

    /// <summary>
    /// Ends the connection without finishing the response: closed (FIN) for a drop; for a reset, linger 0 first, so the
    /// kernel sends RST and the peer reads "connection reset by peer".
    /// </summary>
    public void Break(HttpContext ctx)
    {
        if (Kind == FaultKind.Reset && ctx.Features.Get<IConnectionSocketFeature>()?.Socket is { } socket)
        {
            socket.LingerState = new LingerOption(true, 0);
            socket.Close(0);
        }
        ctx.Abort();
    }

    public static Fault From(string? model)
    {
        if (model is null || !model.StartsWith("standin-", StringComparison.Ordinal))
        {
            return default;
        }

        return model switch
        {
            Fail500Model => new Fault(FaultKind.Fail500, 0),
            Fail500EndlessModel => new Fault(FaultKind.Fail500Endless, 0),
            Fail503HtmlModel => new Fault(FaultKind.Fail503Html, 0),
            DropModel => new Fault(FaultKind.Drop, 0),
            ResetModel => new Fault(FaultKind.Reset, 0),
            _ when model.StartsWith(ResetModel + "-", StringComparison.Ordinal) => new Fault(FaultKind.Reset, 0, model[(ResetModel.Length + 1)..]),
            _ when model.StartsWith(DropModel + "-", StringComparison.Ordinal) => new Fault(FaultKind.Drop, 0, model[(DropModel.Length + 1)..]),
            DripModel => new Fault(FaultKind.Drip, 0),
            BadRequestModel => new Fault(FaultKind.BadRequest, 0),
            OverloadedModel => new Fault(FaultKind.Overloaded, 0),
            _ when model.StartsWith(GatePrefix, StringComparison.Ordinal) => new Fault(FaultKind.Gate, 0, model[GatePrefix.Length..]),
            _ when model.StartsWith(PausePrefix, StringComparison.Ordinal) => new Fault(FaultKind.Pause, 0, model[PausePrefix.Length..]),
            _ when model.StartsWith(SlowPrefix, StringComparison.Ordinal)
                && int.TryParse(model.AsSpan(SlowPrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out int ms)
                => new Fault(FaultKind.Slow, ms),
            _ => default,
        };
    }

    /// <summary>
    /// Applies the faults that happen before any response is written. Returns true when the request has been
    /// fully handled (error written, connection aborted, or client went away while waiting).
    /// Streaming-only faults (drop while streaming, drip) are left to the caller. Errors are in Anthropic's envelope
    /// when <paramref name="anthropic"/> (the Messages route), else OpenAI's. <paramref name="pausesStream"/>: the caller
    /// pauses its own stream (<see cref="FaultKind.Pause"/>), so a streamed request is not held here.
    /// </summary>
    public async ValueTask<bool> ApplyBeforeResponseAsync(HttpContext ctx, bool streaming, bool anthropic = false, bool pausesStream = false)
    {
        switch (Kind)
        {
            case FaultKind.Fail500 when anthropic:
                await Messages.Error(ctx, StatusCodes.Status500InternalServerError, "api_error", "The stand-in failed on purpose.");
                return true;
            case FaultKind.Fail500:
                await JsonOut.Error(ctx, StatusCodes.Status500InternalServerError,
                    "The stand-in failed on purpose.", "server_error", null, "standin_failure");
                return true;
            case FaultKind.Fail500Endless:
                ctx.Response.StatusCode = StatusCodes.Status500InternalServerError;
                ctx.Response.ContentType = "application/json";
                try
                {
                    await ctx.Response.Body.WriteAsync("{\"error\":{\"type\":\"server_error\",\"message\":\""u8.ToArray(), ctx.RequestAborted);
                    var filler = new byte[16 * 1024];
                    filler.AsSpan().Fill((byte)'x');
                    while (!ctx.RequestAborted.IsCancellationRequested)
                    {
                        await ctx.Response.Body.WriteAsync(filler, ctx.RequestAborted);
                    }
                }
                catch (Exception ex) when (ex is OperationCanceledException or IOException)
                {
                }
                return true;
            case FaultKind.Overloaded when anthropic:
                await Messages.Error(ctx, 529, "overloaded_error", "Overloaded");
                return true;
            case FaultKind.Overloaded:
                await JsonOut.Error(ctx, 529, "The stand-in is overloaded on purpose.", "server_error", null, "overloaded");
                return true;
            case FaultKind.BadRequest when anthropic:
                await Messages.Error(ctx, StatusCodes.Status400BadRequest, "invalid_request_error", "Upstream says the request is bad.");
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
            case FaultKind.Gate:
            case FaultKind.Pause when !(streaming && pausesStream):
                try
                {
                    await StandInGates.Get(GateName!).PassAsync(ctx.RequestAborted);
                }
                catch (OperationCanceledException)
                {
                    return true;
                }

                return false;
            case FaultKind.Drop or FaultKind.Reset when !streaming:
                Break(ctx);
                return true;
            default:
                return false;
        }
    }
}
