using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.OpenAi;
using Lattice.Protocol;
using Lattice.Protocol.Sealing;

namespace Lattice.Gateway.Tasks;

/// <summary>
/// Reads a sealed request (<see cref="SealedHttp.ContentType"/>): the model, stream flag and request id come from its
/// headers, the body is kept as the ciphertext it is. Only a personal runtime can open one, so nothing else may be named.
/// </summary>
public static class SealedInputReader
{
    public static async ValueTask<(TaskInput? Input, GatewayError Error)> ReadAsync(HttpContext context, RequestBodies bodies, Caller caller, TaskClass task)
    {
        var headers = context.Request.Headers;
        if (task.ContentKind == TaskContentKind.Multipart)
        {
            return (null, Unsupported($"The task '{task.Name}' takes multipart/form-data; sealed requests carry JSON task inputs only.", null));
        }
        if (headers[SealedHttp.ModelHeader] is not { Count: 1 } modelHeader || modelHeader[0] is not { Length: > 0 } model)
        {
            return (null, GatewayError.InvalidRequest($"A sealed request names its model in the '{SealedHttp.ModelHeader}' header.",
                SealedHttp.ModelHeader, ErrorCodes.MissingRequiredParameter));
        }
        if (ModelId.Parse(model).Kind != ModelIdKind.PersonalRuntime)
        {
            return (null, Unsupported($"Only a personal runtime ({ModelId.PersonalPrefix}…) can open a sealed request; '{model}' is not one.", SealedHttp.ModelHeader));
        }
        if (headers[SealedHttp.RequestIdHeader] is not { Count: 1 } idHeader || idHeader[0] is not { Length: > 0 } requestId)
        {
            return (null, GatewayError.InvalidRequest($"A sealed request carries the request id it is bound to in the '{SealedHttp.RequestIdHeader}' header.",
                SealedHttp.RequestIdHeader, ErrorCodes.MissingRequiredParameter));
        }
        if (!SealedHttp.IsValidRequestId(requestId))
        {
            return (null, GatewayError.InvalidRequest(
                $"'{SealedHttp.RequestIdHeader}' must be 1 to {SealedHttp.MaxRequestIdLength} letters, digits, '_' or '-'.", SealedHttp.RequestIdHeader));
        }
        bool stream;
        switch (headers[SealedHttp.StreamHeader].ToString())
        {
            case "" or "false":
                stream = false;
                break;
            case "true":
                stream = true;
                break;
            default:
                return (null, GatewayError.InvalidRequest($"'{SealedHttp.StreamHeader}' must be 'true' or 'false'.", SealedHttp.StreamHeader));
        }
        if (stream && !task.Streams)
        {
            return (null, GatewayError.InvalidRequest($"The task '{task.Name}' does not stream; send '{SealedHttp.StreamHeader}: false'.", SealedHttp.StreamHeader));
        }

        var (body, length, readError) = await bodies.ReadAsync(context, caller, bodies.LimitFor(task), task.Name);
        if (readError is { } error)
        {
            return (null, error);
        }
        if (length < SealedFormat.RequestOverhead || body[0] != SealedFormat.Version)
        {
            return (null, GatewayError.InvalidRequest("The body is not a sealed request (version 3).", null));
        }
        return (new TaskInput
        {
            Body = body,
            Length = length,
            Model = model,
            Stream = stream,
            ContentType = "application/json",
            SealedRequestId = requestId,
        }, default);
    }

    internal static GatewayError Unsupported(string message, string? param) =>
        new(StatusCodes.Status400BadRequest, ErrorTypes.InvalidRequest, ErrorCodes.SealedDispatchUnsupported, message, param);
}
