using System.Buffers;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Tasks;
using Lattice.Protocol;
using Lattice.Protocol.Runtime;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Runtimes;

/// <summary>Sends a task input over a runtime's link and relays the response frames to the client as they arrive.</summary>
public sealed class RuntimeForwarder(IOptions<GatewayOptions> options)
{
    private readonly TimeSpan _timeout = options.Value.RuntimeTimeout;

    public static GatewayError Unreachable(string latticeId) =>
        new(StatusCodes.Status409Conflict, ErrorTypes.InvalidRequest, ErrorCodes.RuntimeUnreachable,
            $"The runtime '{latticeId}' is not connected.", "model");

    private static GatewayError LinkLost() =>
        new(StatusCodes.Status503ServiceUnavailable, ErrorTypes.Api, ErrorCodes.PersonalLatticeRelayUnavailable,
            "The runtime's connection was lost during the request.");

    private static GatewayError TimedOut() =>
        new(StatusCodes.Status504GatewayTimeout, ErrorTypes.Api, ErrorCodes.PersonalLatticeExecutionTimeout,
            "The runtime did not finish in time.");

    public async Task ForwardAsync(HttpContext context, TaskClass task, TaskInput input, RuntimeConnection connection, CapabilityInfo capability)
    {
        var aborted = context.RequestAborted;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        cts.CancelAfter(_timeout);

        RuntimeDispatch dispatch;
        try
        {
            dispatch = await connection.StartDispatchAsync(
                new DispatchHeader(task.Name, capability.Model, input.ContentType, input.Stream),
                input.Body.AsMemory(0, input.Length), cts.Token);
        }
        catch (RuntimeLinkLostException)
        {
            await OpenAiErrors.WriteAsync(context, Unreachable(connection.LatticeId));
            return;
        }
        catch (OperationCanceledException)
        {
            if (!aborted.IsCancellationRequested)
            {
                await OpenAiErrors.WriteAsync(context, TimedOut());
            }
            return;
        }

        var response = context.Response;
        var started = false;
        var sse = false;
        var unflushed = false;
        try
        {
            while (true)
            {
                if (!dispatch.Events.TryPeek(out _))
                {
                    // Nothing more has arrived: what was written goes to the client now, before waiting.
                    if (unflushed)
                    {
                        unflushed = false;
                        var flushed = await response.BodyWriter.FlushAsync(aborted);
                        if (flushed.IsCanceled || flushed.IsCompleted)
                        {
                            connection.Cancel(dispatch);
                            return;
                        }
                    }
                    if (!await dispatch.Events.WaitToReadAsync(cts.Token))
                    {
                        break;
                    }
                }
                while (dispatch.Events.TryRead(out var e))
                {
                    switch (e.Type)
                    {
                        case FrameType.ResponseStart:
                            if (Frame.ReadJson(e.Payload, ProtocolJsonContext.Default.ResponseStart) is { } start && !started)
                            {
                                response.StatusCode = start.Status is >= 200 and < 600 ? start.Status : StatusCodes.Status502BadGateway;
                                response.ContentType = start.ContentType;
                                sse = start.ContentType.StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase);
                                if (sse)
                                {
                                    response.Headers.CacheControl = "no-cache";
                                }
                                started = true;
                            }
                            e.Release();
                            break;
                        case FrameType.Data:
                            if (!started)
                            {
                                response.ContentType = "application/json";
                                started = true;
                            }
                            // Copied into the response without a flush: frames that arrived together leave together
                            // (the flush above, or the end of the response, sends them). Nothing waits for more.
                            response.BodyWriter.Write(e.Payload.Span);
                            e.Release();
                            unflushed = true;
                            break;
                        case FrameType.End:
                            // Returning completes the response, which flushes what is written.
                            e.Release();
                            return;
                        case FrameType.Error:
                            var error = Frame.ReadJson(e.Payload, ProtocolJsonContext.Default.DispatchError);
                            e.Release();
                            await FailAsync(context, sse, new GatewayError(StatusCodes.Status502BadGateway, ErrorTypes.Api,
                                error?.Code ?? ErrorCodes.UpstreamError, error?.Message ?? "The runtime failed to serve the request."));
                            return;
                        default:
                            e.Release();
                            break;
                    }
                }
            }
        }
        catch (RuntimeLinkLostException)
        {
            await FailAsync(context, sse, LinkLost());
            return;
        }
        catch (OperationCanceledException)
        {
            connection.Cancel(dispatch);
            if (!aborted.IsCancellationRequested)
            {
                await FailAsync(context, sse, TimedOut());
            }
            return;
        }
        finally
        {
            if (aborted.IsCancellationRequested)
            {
                connection.Cancel(dispatch);
            }
            connection.Complete(dispatch.Id);
        }

        // The channel completed without an End: the link is gone.
        await FailAsync(context, sse, LinkLost());
    }

    private static async Task FailAsync(HttpContext context, bool sse, GatewayError error)
    {
        if (!context.Response.HasStarted)
        {
            await OpenAiErrors.WriteAsync(context, error);
            return;
        }
        if (!sse)
        {
            // A JSON body cut short cannot be mended: break the connection so the client sees a failure.
            context.Abort();
            return;
        }
        try
        {
            await context.Response.BodyWriter.WriteAsync(OpenAiErrors.SseEvent(error), context.RequestAborted);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
        }
    }
}
