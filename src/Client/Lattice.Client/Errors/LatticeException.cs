using System.Net;

namespace Lattice.Client;

/// <summary>
/// A request Lattice refused or could not serve. Every error code has its own subclass (see
/// <see cref="LatticeErrorCodes"/>); codes this version does not know arrive as a plain <see cref="LatticeException"/>.
/// </summary>
public class LatticeException : Exception
{
    /// <summary>Creates an exception from the parts of an error answer.</summary>
    public LatticeException(LatticeError error, Exception? innerException = null)
        : base(error.Message, innerException)
    {
        Error = error;
    }

    /// <summary>The parsed error: status, code, type, param, request id.</summary>
    public LatticeError Error { get; }

    /// <summary>The HTTP status the gateway answered (0 when the error ended a stream that had started with 200).</summary>
    public HttpStatusCode StatusCode => (HttpStatusCode)Error.Status;

    /// <summary>The envelope's <c>code</c>, such as <c>runtime_unreachable</c>.</summary>
    public string? Code => Error.Code;

    /// <summary>The gateway's <c>x-request-id</c> for the failed request: quote it to support.</summary>
    public string? RequestId => Error.RequestId;

    /// <summary>
    /// True when sending the same request again later may succeed (rate limits, shared counters briefly down, a
    /// dropped runtime link, an upstream failure); the client's retries act on it.
    /// </summary>
    public virtual bool IsTransient => false;

    /// <summary>How long the gateway asked the client to wait (<c>retry-after</c>), when it said.</summary>
    public TimeSpan? RetryAfter => Error.RetryAfter;

    /// <summary>The exception type for <paramref name="error"/>'s code.</summary>
    public static LatticeException FromError(LatticeError error, Exception? innerException = null) =>
        ErrorMap.Create(error, innerException);
}

/// <summary>One error answer of the gateway, as parsed from OpenAI's envelope and the response headers.</summary>
/// <param name="Status">The HTTP status (0 for an error event that ended a started stream).</param>
/// <param name="Code">The envelope's <c>code</c>.</param>
/// <param name="Type">The envelope's <c>type</c> (<c>invalid_request_error</c>, or <c>requests</c> / <c>tokens</c> for rate limits).</param>
/// <param name="Message">The human-readable message.</param>
/// <param name="Param">The parameter the error is about, when there is one.</param>
/// <param name="RequestId">The response's <c>x-request-id</c>.</param>
/// <param name="RetryAfter">The response's <c>retry-after</c>.</param>
public sealed record LatticeError(int Status, string? Code, string? Type, string Message, string? Param = null, string? RequestId = null, TimeSpan? RetryAfter = null);
