namespace Lattice.Protocol;

/// <summary>The stable error codes of Lattice's public surfaces (the <c>code</c> of the OpenAI envelope).</summary>
public static class ErrorCodes
{
    public const string InvalidApiKey = "invalid_api_key";
    public const string RevokedGrant = "revoked_grant";
    public const string InsufficientScopes = "insufficient_scopes";
    public const string ModelNotFound = "model_not_found";
    public const string TaskNotFound = "task_not_found";
    public const string NotFound = "not_found";
    public const string PersonalLatticeNotFound = "personal_lattice_not_found";
    public const string RuntimeUnreachable = "runtime_unreachable";
    public const string RuntimeLimitReached = "runtime_limit_reached";
    public const string IdempotencyKeyReused = "idempotency_key_reused";
    public const string IdempotencyKeyInUse = "idempotency_key_in_use";
    public const string IdempotencyKeyNotReplayable = "idempotency_key_not_replayable";
    public const string RateLimitExceeded = "rate_limit_exceeded";
    public const string InsufficientQuota = "insufficient_quota";
    public const string NoCapacity = "no_capacity";
    /// <summary>The store of the counters every gateway node shares (Redis) cannot be reached; nothing was run.</summary>
    public const string CountersUnavailable = "counters_unavailable";
    public const string PersonalLatticeRelayUnavailable = "personal_lattice_relay_unavailable";
    public const string PersonalLatticeExecutionTimeout = "personal_lattice_execution_timeout";
    public const string UpstreamError = "upstream_error";
    public const string UpstreamTimeout = "upstream_timeout";
    public const string InvalidJson = "invalid_json";
    public const string InvalidValue = "invalid_value";
    public const string InvalidType = "invalid_type";
    public const string UnknownParameter = "unknown_parameter";
    public const string MissingRequiredParameter = "missing_required_parameter";
    public const string RequestTooLarge = "request_too_large";
    public const string RequestTimeout = "request_timeout";
    public const string UnsupportedMediaType = "unsupported_media_type";
    public const string MethodNotAllowed = "method_not_allowed";
    public const string ModelNotSupported = "model_not_supported";
    public const string Conflict = "conflict";
    /// <summary>A sealed request went to something that cannot open it: not a personal runtime, or a daemon without sealed dispatch.</summary>
    public const string SealedDispatchUnsupported = "sealed_dispatch_unsupported";
    /// <summary>The runtime could not open a sealed request: sealed to another key, request or runtime, or altered.</summary>
    public const string SealedRequestUnreadable = "sealed_request_unreadable";
}

/// <summary>The <c>type</c> values of the OpenAI error envelope.</summary>
public static class ErrorTypes
{
    public const string InvalidRequest = "invalid_request_error";
    public const string Authentication = "authentication_error";
    public const string Permission = "permission_error";
    public const string NotFound = "not_found_error";
    public const string RateLimit = "rate_limit_error";
    public const string Api = "api_error";
    public const string Server = "server_error";
}
