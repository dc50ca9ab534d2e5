using System.Collections.Frozen;

namespace Lattice.Client;

/// <summary>The one place that maps an error code to its exception type.</summary>
internal static class ErrorMap
{
    private static readonly FrozenDictionary<string, Func<LatticeError, Exception?, LatticeException>> s_byCode =
        new Dictionary<string, Func<LatticeError, Exception?, LatticeException>>(StringComparer.Ordinal)
        {
            [LatticeErrorCodes.InvalidJson] = (e, x) => new InvalidJsonException(e, x),
            [LatticeErrorCodes.InvalidValue] = (e, x) => new InvalidValueException(e, x),
            [LatticeErrorCodes.InvalidType] = (e, x) => new InvalidTypeException(e, x),
            [LatticeErrorCodes.UnknownParameter] = (e, x) => new UnknownParameterException(e, x),
            [LatticeErrorCodes.MissingRequiredParameter] = (e, x) => new MissingRequiredParameterException(e, x),
            [LatticeErrorCodes.ModelNotSupported] = (e, x) => new ModelNotSupportedException(e, x),
            [LatticeErrorCodes.RequestTooLarge] = (e, x) => new RequestTooLargeException(e, x),
            [LatticeErrorCodes.RequestTimeout] = (e, x) => new RequestTimeoutException(e, x),
            [LatticeErrorCodes.UnsupportedMediaType] = (e, x) => new UnsupportedMediaTypeException(e, x),
            [LatticeErrorCodes.MethodNotAllowed] = (e, x) => new MethodNotAllowedException(e, x),
            [LatticeErrorCodes.Conflict] = (e, x) => new ConflictException(e, x),
            [LatticeErrorCodes.SealedDispatchUnsupported] = (e, x) => new SealedDispatchUnsupportedException(e, x),
            [LatticeErrorCodes.SealedRequestUnreadable] = (e, x) => new SealedRequestUnreadableException(e, x),
            [LatticeErrorCodes.InvalidApiKey] = (e, x) => new InvalidApiKeyException(e, x),
            [LatticeErrorCodes.RevokedGrant] = (e, x) => new RevokedGrantException(e, x),
            [LatticeErrorCodes.InvalidGrant] = (e, x) => new InvalidGrantException(e, x),
            [LatticeErrorCodes.InsufficientScopes] = (e, x) => new InsufficientScopesException(e, x),
            [LatticeErrorCodes.ModelNotFound] = (e, x) => new ModelNotFoundException(e, x),
            [LatticeErrorCodes.TaskNotFound] = (e, x) => new TaskNotFoundException(e, x),
            [LatticeErrorCodes.NotFound] = (e, x) => new LatticeNotFoundException(e, x),
            [LatticeErrorCodes.PersonalLatticeNotFound] = (e, x) => new PersonalLatticeNotFoundException(e, x),
            [LatticeErrorCodes.RuntimeUnreachable] = (e, x) => new RuntimeUnreachableException(e, x),
            [LatticeErrorCodes.RuntimeLimitReached] = (e, x) => new RuntimeLimitReachedException(e, x),
            [LatticeErrorCodes.IdempotencyKeyReused] = (e, x) => new IdempotencyKeyReusedException(e, x),
            [LatticeErrorCodes.IdempotencyKeyInUse] = (e, x) => new IdempotencyKeyInUseException(e, x),
            [LatticeErrorCodes.IdempotencyKeyNotReplayable] = (e, x) => new IdempotencyKeyNotReplayableException(e, x),
            [LatticeErrorCodes.RateLimitExceeded] = (e, x) => new RateLimitExceededException(e, x),
            [LatticeErrorCodes.InsufficientQuota] = (e, x) => new InsufficientQuotaException(e, x),
            [LatticeErrorCodes.NoCapacity] = (e, x) => new NoCapacityException(e, x),
            [LatticeErrorCodes.CountersUnavailable] = (e, x) => new CountersUnavailableException(e, x),
            [LatticeErrorCodes.PersonalLatticeRelayUnavailable] = (e, x) => new RelayUnavailableException(e, x),
            [LatticeErrorCodes.PersonalLatticeExecutionTimeout] = (e, x) => new ExecutionTimeoutException(e, x),
            [LatticeErrorCodes.UpstreamError] = (e, x) => new UpstreamErrorException(e, x),
            [LatticeErrorCodes.UpstreamTimeout] = (e, x) => new UpstreamTimeoutException(e, x),
            [LatticeErrorCodes.AccessDenied] = (e, x) => new AuthorizationDeniedException(e, x),
            [LatticeErrorCodes.ExpiredToken] = (e, x) => new DeviceCodeExpiredException(e, x),
        }.ToFrozenDictionary(StringComparer.Ordinal);

    /// <summary>Every code with its own type.</summary>
    public static IEnumerable<string> Codes => s_byCode.Keys;

    public static LatticeException Create(LatticeError error, Exception? innerException)
    {
        if (error.Code is { } code && s_byCode.TryGetValue(code, out var create))
        {
            return create(error, innerException);
        }
        // The gateway answers 502 only when no upstream could serve; the last upstream's own envelope (its own code) is
        // relayed with it, so it is still an upstream failure.
        if (error.Status == 502)
        {
            return new UpstreamErrorException(error, innerException);
        }
        // An upstream's own 4xx (relayed as it was) keeps its own code; it is still the caller's request that was refused.
        return error.Status is >= 400 and < 500 and not 401 and not 403 and not 404 and not 409 and not 429
            ? new InvalidRequestException(error, innerException)
            : new LatticeException(error, innerException);
    }
}
