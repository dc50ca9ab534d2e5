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

    /// <summary>The body is over <paramref name="limit"/>: the gateway's, or <paramref name="task"/>'s when named.</summary>
    public static GatewayError TooLarge(long limit, string? task = null) =>
        new(StatusCodes.Status413PayloadTooLarge, ErrorTypes.InvalidRequest, ErrorCodes.RequestTooLarge, task is null
            ? $"The request body is larger than the limit of {limit} bytes."
            : $"The request body is larger than the limit of {limit} bytes for the task '{task}'.");

    /// <summary>The caller already has <paramref name="limit"/> request bodies being received; refused before reading this one.</summary>
    public static GatewayError TooManyUploads(int limit) =>
        new(StatusCodes.Status429TooManyRequests, ErrorTypes.RateLimit, ErrorCodes.RateLimitExceeded,
            $"Too many uploads at once: this credential already has {limit} request bodies being received. Retry when one has finished.");

    /// <summary>
    /// What Kestrel refused while a body was read (<see cref="BadHttpRequestException"/>), in the gateway's terms:
    /// a body arriving slower than the minimum data rate (408), one over the server's size limit (413), bad framing (400).
    /// </summary>
    public static GatewayError BodyUnreadable(BadHttpRequestException exception, long maxBytes) => exception.StatusCode switch
    {
        StatusCodes.Status408RequestTimeout => new(StatusCodes.Status408RequestTimeout, ErrorTypes.InvalidRequest, ErrorCodes.RequestTimeout,
            "The request body arrived too slowly (below the minimum data rate) and was cut off."),
        StatusCodes.Status413PayloadTooLarge => TooLarge(maxBytes),
        _ => new(exception.StatusCode, ErrorTypes.InvalidRequest, ErrorCodes.InvalidValue, "The request could not be read: " + exception.Message),
    };

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

    /// <summary>No capacity can serve the model now: every path to <c>no_capacity</c> gives this one status and type.</summary>
    public static GatewayError NoCapacity(string message) =>
        new(StatusCodes.Status503ServiceUnavailable, ErrorTypes.Server, ErrorCodes.NoCapacity, message, "model");

    /// <summary>
    /// The counters shared by every node (limits, budgets, idempotency keys, failed sign-ins) cannot be read: the
    /// request is refused before anything runs, rather than let through uncounted.
    /// </summary>
    public static GatewayError CountersUnavailable() =>
        new(StatusCodes.Status503ServiceUnavailable, ErrorTypes.Server, ErrorCodes.CountersUnavailable,
            "The gateway cannot reach the store of its shared counters (rate limits, budgets, idempotency keys), so it did not run the request. Retry shortly.");

    public static GatewayError UpstreamFailed(string message) =>
        new(StatusCodes.Status502BadGateway, ErrorTypes.Api, ErrorCodes.UpstreamError, message);

    public static GatewayError UpstreamTimedOut() =>
        new(StatusCodes.Status504GatewayTimeout, ErrorTypes.Api, ErrorCodes.UpstreamTimeout,
            "The upstream provider did not answer in time.");

    /// <summary>The <c>Idempotency-Key</c> header is empty, too long, repeated or not printable ASCII.</summary>
    public static GatewayError InvalidIdempotencyKey(string header, int maxLength) =>
        new(StatusCodes.Status400BadRequest, ErrorTypes.InvalidRequest, ErrorCodes.InvalidValue,
            $"The '{header}' header must be one value of 1 to {maxLength} printable ASCII characters.", header);

    public static GatewayError IdempotencyKeyReused() =>
        new(StatusCodes.Status422UnprocessableEntity, ErrorTypes.InvalidRequest, ErrorCodes.IdempotencyKeyReused,
            "This idempotency key was already used with different parameters (method, path or body). Send a new key for a different request.");

    public static GatewayError IdempotencyKeyInUse() =>
        new(StatusCodes.Status409Conflict, ErrorTypes.InvalidRequest, ErrorCodes.IdempotencyKeyInUse,
            "A request with this idempotency key is still in progress. Retry later, once it has finished, to get its answer.");

    public static GatewayError IdempotencyKeyNotReplayable() =>
        new(StatusCodes.Status409Conflict, ErrorTypes.InvalidRequest, ErrorCodes.IdempotencyKeyNotReplayable,
            "The first answer to this idempotency key was too large to keep or did not complete, so it cannot be replayed. Use a new key to run the request again.");
}
