using Lattice.Protocol;

namespace Lattice.Gateway.OpenAi;

/// <summary>A failure at a boundary, as a value: the status and the OpenAI envelope fields. Every surface writes it in its own shape.</summary>
public readonly record struct GatewayError(int Status, string Type, string? Code, string Message, string? Param = null)
{
    public static GatewayError InvalidRequest(string message, string? param = null, string? code = ErrorCodes.InvalidValue) =>
        new(StatusCodes.Status400BadRequest, ErrorTypes.InvalidRequest, code, message, param);

    public static GatewayError InvalidJson(string detail) =>
        new(StatusCodes.Status400BadRequest, ErrorTypes.InvalidRequest, ErrorCodes.InvalidJson,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. "
            + "The OpenAI API expects a JSON payload, but what was sent was not valid JSON.) " + detail);

    public static GatewayError TooLarge(long limit) =>
        new(StatusCodes.Status413PayloadTooLarge, ErrorTypes.InvalidRequest, ErrorCodes.RequestTooLarge,
            $"The request body is larger than the limit of {limit} bytes.");

    public static GatewayError UnsupportedMediaType(string expected) =>
        new(StatusCodes.Status415UnsupportedMediaType, ErrorTypes.InvalidRequest, ErrorCodes.UnsupportedMediaType,
            $"This endpoint expects a body of type '{expected}'.");

    public static GatewayError Unauthenticated(string message) =>
        new(StatusCodes.Status401Unauthorized, ErrorTypes.InvalidRequest, ErrorCodes.InvalidApiKey, message);

    public static GatewayError MissingScope(string scope) =>
        new(StatusCodes.Status403Forbidden, ErrorTypes.Permission, ErrorCodes.InsufficientScopes,
            $"The credential lacks the scope this request needs: {scope}.", null);

    public static GatewayError ModelNotFound(string model) =>
        new(StatusCodes.Status404NotFound, ErrorTypes.InvalidRequest, ErrorCodes.ModelNotFound,
            $"The model '{model}' does not exist or you do not have access to it.", "model");

    public static GatewayError ModelDoesNotServe(string model, string task) =>
        new(StatusCodes.Status400BadRequest, ErrorTypes.InvalidRequest, ErrorCodes.ModelNotSupported,
            $"The model '{model}' does not serve the task '{task}'.", "model");

    public static GatewayError TaskNotFound(string task) =>
        new(StatusCodes.Status404NotFound, ErrorTypes.InvalidRequest, ErrorCodes.TaskNotFound,
            $"The task '{task}' does not exist.", null);

    public static GatewayError NotFound(string message) =>
        new(StatusCodes.Status404NotFound, ErrorTypes.InvalidRequest, ErrorCodes.NotFound, message);

    public static GatewayError UpstreamFailed(string message) =>
        new(StatusCodes.Status502BadGateway, ErrorTypes.Api, ErrorCodes.UpstreamError, message);

    public static GatewayError UpstreamTimedOut() =>
        new(StatusCodes.Status504GatewayTimeout, ErrorTypes.Api, ErrorCodes.UpstreamTimeout,
            "The upstream provider did not answer in time.");
}
