namespace Lattice.Client;

/// <summary>The request itself is wrong (a 4xx the caller must fix); the base of the specific invalid-request codes.</summary>
public class InvalidRequestException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public InvalidRequestException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>invalid_json</c>: the body is not JSON, not UTF-8, or nested too deeply.</summary>
public class InvalidJsonException : InvalidRequestException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public InvalidJsonException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>invalid_value</c>: a value is out of range or not one of the allowed ones; <see cref="LatticeError.Param"/> names it.</summary>
public class InvalidValueException : InvalidRequestException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public InvalidValueException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>invalid_type</c>: a field has the wrong JSON type; <see cref="LatticeError.Param"/> names it.</summary>
public class InvalidTypeException : InvalidRequestException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public InvalidTypeException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>unknown_parameter</c>: a field the API does not define.</summary>
public class UnknownParameterException : InvalidRequestException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public UnknownParameterException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>missing_required_parameter</c>: a required field is missing; <see cref="LatticeError.Param"/> names it.</summary>
public class MissingRequiredParameterException : InvalidRequestException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public MissingRequiredParameterException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>model_not_supported</c>: the model exists but does not serve this task.</summary>
public class ModelNotSupportedException : InvalidRequestException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public ModelNotSupportedException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>request_too_large</c> (413): the body is over its task's limit.</summary>
public class RequestTooLargeException : InvalidRequestException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public RequestTooLargeException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>request_timeout</c> (408): the body arrived slower than the gateway's minimum data rate. Nothing ran, so a retry may succeed.</summary>
public class RequestTimeoutException : InvalidRequestException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public RequestTimeoutException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }

    /// <inheritdoc/>
    public override bool IsTransient => true;
}

/// <summary><c>unsupported_media_type</c> (415): multipart sent to a JSON task, or JSON to a multipart task.</summary>
public class UnsupportedMediaTypeException : InvalidRequestException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public UnsupportedMediaTypeException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>method_not_allowed</c> (405): the route exists with another method.</summary>
public class MethodNotAllowedException : InvalidRequestException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public MethodNotAllowedException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>conflict</c> (409): the resource is in a state that does not allow the operation.</summary>
public class ConflictException : InvalidRequestException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public ConflictException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary>
/// <c>sealed_dispatch_unsupported</c> (400): a sealed call went to something that cannot open it — not a personal
/// runtime, or a runtime whose daemon has no work key or predates sealed dispatch.
/// </summary>
public class SealedDispatchUnsupportedException : InvalidRequestException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public SealedDispatchUnsupportedException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary>
/// <c>sealed_request_unreadable</c> (400): the runtime could not open the sealed request — it was sealed to a key the
/// runtime does not hold (a key accepted with <see cref="LatticeClient.AcceptRuntimeKeyAsync"/> that is not its own), or altered.
/// </summary>
public class SealedRequestUnreadableException : InvalidRequestException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public SealedRequestUnreadableException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>invalid_api_key</c> (401): no credential, or an unknown, revoked or expired key, or an invalid or expired access token.</summary>
public class InvalidApiKeyException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public InvalidApiKeyException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary>The user must sign in with Lattice again: their grant was revoked, or its refresh token no longer works. Send them through the authorization (or device) flow.</summary>
public class ReauthorizeException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public ReauthorizeException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>revoked_grant</c> (401): the access token, or the grant behind it, was revoked.</summary>
public class RevokedGrantException : ReauthorizeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public RevokedGrantException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary>OAuth's <c>invalid_grant</c> from the token endpoint: a refresh token or code that is spent, expired, or of a revoked grant.</summary>
public class InvalidGrantException : ReauthorizeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public InvalidGrantException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>insufficient_scopes</c> (403): the credential lacks the scope the request needs; <see cref="RequiredScope"/> names it.</summary>
public class InsufficientScopesException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public InsufficientScopesException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }

    /// <summary>The scope the credential lacks, read from the message (<c>… needs: lattice:compute:inference.</c>).</summary>
    public string? RequiredScope => Error.Message.LastIndexOf(": ", StringComparison.Ordinal) is var i and >= 0
        ? Error.Message[(i + 2)..].TrimEnd('.')
        : null;
}

/// <summary><c>model_not_found</c> (404): unknown model, or one the credential may not use.</summary>
public class ModelNotFoundException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public ModelNotFoundException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>task_not_found</c> (404): unknown task class.</summary>
public class TaskNotFoundException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public TaskNotFoundException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>not_found</c> (404): unknown URL or resource.</summary>
public class LatticeNotFoundException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public LatticeNotFoundException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>personal_lattice_not_found</c> (404): unknown personal runtime, or one the credential may not use (another workspace's or another user's).</summary>
public class PersonalLatticeNotFoundException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public PersonalLatticeNotFoundException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>runtime_unreachable</c> (409): the named personal runtime is offline or revoked; Lattice never reroutes a request that names one. Ask the user to reconnect it.</summary>
public class RuntimeUnreachableException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public RuntimeUnreachableException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>runtime_limit_reached</c> (409): the workspace already has as many personal runtimes as it may.</summary>
public class RuntimeLimitReachedException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public RuntimeLimitReachedException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>idempotency_key_reused</c> (422): the idempotency key was first used with a different method, path or body.</summary>
public class IdempotencyKeyReusedException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public IdempotencyKeyReusedException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>idempotency_key_in_use</c> (409): a request with this idempotency key is still running; retrying later returns its answer.</summary>
public class IdempotencyKeyInUseException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public IdempotencyKeyInUseException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }

    /// <inheritdoc/>
    public override bool IsTransient => true;
}

/// <summary><c>idempotency_key_not_replayable</c> (409): the first answer to this key was too large to keep or did not complete.</summary>
public class IdempotencyKeyNotReplayableException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public IdempotencyKeyNotReplayableException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>rate_limit_exceeded</c> (429): a rate limit of the key, app user or workspace was reached; <see cref="LatticeException.RetryAfter"/> says when to retry, <see cref="LimitType"/> which limit (<c>requests</c> or <c>tokens</c>).</summary>
public class RateLimitExceededException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public RateLimitExceededException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }

    /// <inheritdoc/>
    public override bool IsTransient => true;

    /// <summary>Which limit: <c>requests</c> or <c>tokens</c> (the envelope's <c>type</c>); <c>rate_limit_error</c> for too many failed sign-ins or uploads.</summary>
    public string? LimitType => Error.Type;
}

/// <summary><c>insufficient_quota</c> (429): a budget has no room for the request's worst-case cost this month.</summary>
public class InsufficientQuotaException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public InsufficientQuotaException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>no_capacity</c> (503): nothing may serve the model now (its hosted runtime is not connected, or only marketplace capacity is left for a private-only request).</summary>
public class NoCapacityException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public NoCapacityException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>counters_unavailable</c> (503): the gateway cannot reach its shared counters and ran nothing; retry shortly.</summary>
public class CountersUnavailableException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public CountersUnavailableException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }

    /// <inheritdoc/>
    public override bool IsTransient => true;
}

/// <summary><c>personal_lattice_relay_unavailable</c> (503): the personal runtime's link dropped during the request. The gateway keeps this answer for the request's idempotency key, so only a new call can succeed.</summary>
public class RelayUnavailableException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public RelayUnavailableException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>personal_lattice_execution_timeout</c> (504): the personal runtime made no progress on the request in time.</summary>
public class ExecutionTimeoutException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public ExecutionTimeoutException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>upstream_error</c> (502): no offer could serve the request (unreachable, failed, or it refused the gateway's credential).</summary>
public class UpstreamErrorException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public UpstreamErrorException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary><c>upstream_timeout</c> (504): the upstream took longer than its offer's timeout.</summary>
public class UpstreamTimeoutException : LatticeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public UpstreamTimeoutException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary>OAuth's <c>access_denied</c>: the user declined the authorization (on the consent page or the device page).</summary>
public class AuthorizationDeniedException : ReauthorizeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public AuthorizationDeniedException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}

/// <summary>OAuth's <c>expired_token</c> while polling the device flow: the user did not decide in time; start again.</summary>
public class DeviceCodeExpiredException : ReauthorizeException
{
    /// <summary>Creates the exception for <paramref name="error"/>.</summary>
    public DeviceCodeExpiredException(LatticeError error, Exception? innerException = null) : base(error, innerException)
    {
    }
}
