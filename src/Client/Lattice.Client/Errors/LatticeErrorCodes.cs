namespace Lattice.Client;

/// <summary>
/// The stable <c>code</c> values of Lattice's error envelope, each raised as its own exception type
/// (<see cref="LatticeException.FromError"/>). OAuth's token-endpoint errors are listed too.
/// </summary>
public static class LatticeErrorCodes
{
#pragma warning disable CS1591 // Each constant is the code it names; docs/api.md says when the gateway answers it.
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
    public const string SealedDispatchUnsupported = "sealed_dispatch_unsupported";
    public const string SealedRequestUnreadable = "sealed_request_unreadable";

    /// <summary>OAuth (RFC 6749): a refresh token or code that is spent, expired or of a revoked grant.</summary>
    public const string InvalidGrant = "invalid_grant";
    /// <summary>OAuth device flow (RFC 8628): the user declined.</summary>
    public const string AccessDenied = "access_denied";
    /// <summary>OAuth device flow (RFC 8628): the device code expired before the user decided.</summary>
    public const string ExpiredToken = "expired_token";

    /// <summary>Client-side: a <see cref="CapacityPolicy.PrivateOnly"/> client was asked for a model that is not a personal runtime (nothing was sent).</summary>
    public const string PrivateOnly = "private_only";
    /// <summary>Client-side: no reachable personal runtime serves what was asked.</summary>
    public const string NoReachableRuntime = "no_reachable_runtime";
    /// <summary>Client-side: a runtime's work key is not the one pinned for it (nothing was sent).</summary>
    public const string RuntimeKeyChanged = "runtime_key_changed";
    /// <summary>Client-side: a sealed answer did not open (altered, cut short, or not sealed to this call).</summary>
    public const string SealedAnswerInvalid = "sealed_answer_invalid";
#pragma warning restore CS1591
}
