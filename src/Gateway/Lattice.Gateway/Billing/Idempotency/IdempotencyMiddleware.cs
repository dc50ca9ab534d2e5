using System.Security.Cryptography;
using System.Text;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.OpenAi;
using Lattice.Gateway.Persistence;
using Lattice.Gateway.Tasks;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace Lattice.Gateway.Billing.Idempotency;

/// <summary>
/// Stripe's idempotency for every <c>POST</c> under <c>/v1</c> (and <c>/openai/v1</c>) that carries an <c>Idempotency-Key</c>: the first request
/// with a key runs and, once dispatch has admitted it, its answer is kept for the caller; the same key and the same
/// request replay that answer byte for byte without dispatching (so nothing is metered or billed twice).
/// </summary>
/// <remarks>
/// The caller is authenticated here as well as in the endpoint (a lookup in memory) because keys are per caller; a
/// request whose credential fails passes straight to the endpoint, which answers the failure. The request's bytes are
/// read once, hashed, and handed to the endpoint from memory.
/// </remarks>
public sealed partial class IdempotencyMiddleware(
    RequestDelegate next,
    Authenticator authenticator,
    IIdempotencyStore store,
    IOptions<IdempotencyOptions> options,
    IOptions<GatewayOptions> gateway,
    TimeProvider time,
    RequestBodies bodies,
    ILogger<IdempotencyMiddleware> logger)
{
    public const string HeaderName = "Idempotency-Key";
    public const string ReplayedHeader = "idempotent-replayed";
    public const int MaxKeyLength = 255;

    /// <summary>
    /// The headers a replay repeats: the body's type, SSE's cache-control, and the first answer's request id (the one
    /// its usage record carries). Rate-limit headers are not repeated: they described the limits when the first request
    /// ran, and a replay uses none.
    /// </summary>
    private static readonly string[] KeptHeaders = ["content-type", "cache-control", "x-request-id"];

    private readonly int _maxStoredBytes = options.Value.MaxStoredBodyBytes;
    private readonly long _maxBodyBytes = gateway.Value.MaxRequestBodyBytes;

    /// <summary>
    /// A claim outlives the longest wait between two signs of life of a request (the upstream's whole-attempt timeout, a
    /// runtime's idle timeout), and is renewed every half lease while the request runs — a stream that keeps producing
    /// for an hour keeps its key — so a live request's key is never taken over; a node that died lets go within a lease.
    /// </summary>
    private readonly TimeSpan _lease = (gateway.Value.UpstreamTimeout > gateway.Value.RuntimeTimeout ? gateway.Value.UpstreamTimeout : gateway.Value.RuntimeTimeout)
        + options.Value.LeaseMargin;

    public Task InvokeAsync(HttpContext context)
    {
        var request = context.Request;
        if (!HttpMethods.IsPost(request.Method) || !IsApiPath(request.Path) || !request.Headers.TryGetValue(HeaderName, out var key))
        {
            return next(context);
        }
        return HandleAsync(context, key);
    }

    private async Task HandleAsync(HttpContext context, StringValues keyValues)
    {
        var request = context.Request;
        var (failure, caller) = await authenticator.AuthenticateAsync(request);
        if (failure != AuthFailure.None)
        {
            await next(context);
            return;
        }
        if (keyValues.Count != 1 || !IsValidKey(keyValues[0]))
        {
            await OpenAiErrors.WriteAsync(context, GatewayError.InvalidIdempotencyKey(HeaderName, MaxKeyLength));
            return;
        }
        var key = keyValues[0]!;

        // The gateway's ceiling here (the task is not known yet); the endpoint then holds the body to its task's limit.
        var (body, length, readError) = await bodies.ReadAsync(context, caller!, _maxBodyBytes);
        if (readError is { } error)
        {
            await OpenAiErrors.WriteAsync(context, error);
            return;
        }
        request.Body = new MemoryStream(body, 0, length, writable: false);
        var hash = Hash(request, body.AsSpan(0, length));

        ClaimOutcome outcome;
        try
        {
            outcome = await store.TryClaimAsync(caller!.CredentialId, key, hash, _lease, context.RequestAborted);
        }
        catch (SharedCountersUnavailableException)
        {
            // Without the key's store the gateway cannot tell a retry from a first request: it runs neither, also when
            // failing open (Lattice:RedisWhenDown=open), since running it could run the same work twice.
            await OpenAiErrors.WriteAsync(context, GatewayError.CountersUnavailable());
            return;
        }
        if (outcome.Claim is { } claim)
        {
            await RunAsync(context, claim);
            return;
        }
        var existing = outcome.Existing!;
        if (!string.Equals(existing.RequestHash, hash, StringComparison.Ordinal))
        {
            await OpenAiErrors.WriteAsync(context, GatewayError.IdempotencyKeyReused());
            return;
        }
        switch (existing.State)
        {
            case IdempotencyState.Done:
                await ReplayAsync(context, existing);
                return;
            case IdempotencyState.Unreplayable:
                await OpenAiErrors.WriteAsync(context, GatewayError.IdempotencyKeyNotReplayable());
                return;
            default:
                await OpenAiErrors.WriteAsync(context, GatewayError.IdempotencyKeyInUse());
                return;
        }
    }

    /// <summary>Runs the request with its answer copied on the way out, then keeps the answer or lets the key go.</summary>
    private async Task RunAsync(HttpContext context, IdempotencyClaim claim)
    {
        var executing = new IdempotencyFeature();
        context.Features.Set(executing);
        var original = context.Features.GetRequiredFeature<IHttpResponseBodyFeature>();
        var tee = new ResponseTee(original.Stream, _maxStoredBytes);
        // The relay writes to Response.BodyWriter and errors go to Response.Body: the feature's pipe writer sits on the
        // tee, so both pass through it.
        var teed = new StreamResponseBodyFeature(tee, original);
        context.Features.Set<IHttpResponseBodyFeature>(teed);
        var finished = false;
        // One periodic timer, not a new delay after each renewal: its ticks stay every half lease from the claim however
        // long a renewal's write takes, and a tick that falls while a write is under way is not lost. It is stopped by
        // disposing it, which ends the wait with false: cancelling the wait would throw (and build the stack trace of)
        // an OperationCanceledException at the end of every request, which cost more than the rest of this middleware.
        var halfLease = new PeriodicTimer(_lease / 2, time);
        var renewing = RenewWhileRunningAsync(claim, halfLease);
        try
        {
            await next(context);
            // What the endpoint left unflushed in the pipe goes out (and into the copy) before the copy is read.
            await teed.Writer.CompleteAsync();
            finished = true;
        }
        finally
        {
            halfLease.Dispose();
            await renewing;
            context.Features.Set(original);
            // A route that does not dispatch (creating a personal runtime) is never marked executing; its success is
            // what shows it ran. On a dispatching route a success implies execution anyway.
            var ran = executing.Executing || context.Response.StatusCode is >= 200 and < 300;
            await SettleAsync(context, claim, ran, finished, tee);
        }
    }

    /// <summary>Renews the claim every half lease until the request ends (its timer is disposed) or the claim is lost.</summary>
    private async Task RenewWhileRunningAsync(IdempotencyClaim claim, PeriodicTimer halfLease)
    {
        try
        {
            while (await halfLease.WaitForNextTickAsync() && await store.RenewAsync(claim, _lease, CancellationToken.None))
            {
            }
        }
        catch (Exception e)
        {
            // A store that cannot be written leaves the lease as it was; the request itself goes on.
            Log.RenewFailed(logger, e.GetType().Name, e.Message);
        }
    }

    /// <remarks>
    /// Stripe's rule: a request refused before it began executing (validation, authentication, an unknown route, a
    /// rate limit or budget) keeps nothing, so a retry runs afresh. One that began is kept, even when it failed. An
    /// answer that outgrew the limit, or that did not reach its end (the client left, the endpoint threw), is kept as
    /// unreplayable: the work ran and may have been billed, so running it again on a retry would be a second charge.
    /// </remarks>
    private async Task SettleAsync(HttpContext context, IdempotencyClaim claim, bool ran, bool finished, ResponseTee tee)
    {
        try
        {
            if (!ran)
            {
                await store.ReleaseAsync(claim, CancellationToken.None);
            }
            else if (finished && !tee.Overflowed && !context.RequestAborted.IsCancellationRequested)
            {
                await store.CompleteAsync(claim, new IdempotentAnswer(context.Response.StatusCode, HeadersOf(context.Response), tee.Kept.ToArray()), CancellationToken.None);
            }
            else
            {
                await store.CompleteAsync(claim, null, CancellationToken.None);
            }
        }
        catch (Exception e)
        {
            // The answer has gone to the client already; a store that cannot be written must not turn it into an error.
            // The key stays claimed until its lease lapses, then a retry runs afresh.
            Log.SettleFailed(logger, e.GetType().Name, e.Message);
        }
    }

    private static async Task ReplayAsync(HttpContext context, IdempotencyRecord record)
    {
        var response = context.Response;
        response.StatusCode = record.Status;
        foreach (var (name, value) in record.Headers)
        {
            response.Headers[name] = value;
        }
        response.Headers[ReplayedHeader] = "true";
        var body = record.Body ?? [];
        response.ContentLength = body.Length;
        await response.Body.WriteAsync(body, context.RequestAborted);
    }

    private static List<KeyValuePair<string, string>> HeadersOf(HttpResponse response)
    {
        var kept = new List<KeyValuePair<string, string>>(KeptHeaders.Length);
        foreach (var name in KeptHeaders)
        {
            if (response.Headers.TryGetValue(name, out var value) && !StringValues.IsNullOrEmpty(value))
            {
                kept.Add(new(name, value.ToString()));
            }
        }
        return kept;
    }

    /// <summary>The API under <c>/v1</c>, and its Groq-shaped alias under <c>/openai/v1</c>.</summary>
    private static bool IsApiPath(PathString path) =>
        path.StartsWithSegments("/v1", StringComparison.OrdinalIgnoreCase) || path.StartsWithSegments("/openai/v1", StringComparison.OrdinalIgnoreCase);

    private static bool IsValidKey(string? key)
    {
        if (key is not { Length: > 0 and <= MaxKeyLength })
        {
            return false;
        }
        foreach (var c in key)
        {
            if (c is < ' ' or > '~')
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>Lowercase hex SHA-256 over <c>METHOD path?query</c> (escaped, so it holds no line break), a line break, and the body.</summary>
    internal static string Hash(HttpRequest request, ReadOnlySpan<byte> body)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes($"{request.Method} {request.PathBase.ToUriComponent()}{request.Path.ToUriComponent()}{request.QueryString.ToUriComponent()}\n"));
        hash.AppendData(body);
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 9303, Level = LogLevel.Warning, Message = "Keeping an idempotent request's outcome failed ({Kind}): {Error}")]
        public static partial void SettleFailed(ILogger logger, string kind, string error);

        [LoggerMessage(EventId = 9306, Level = LogLevel.Warning, Message = "Renewing an idempotent request's lease failed ({Kind}): {Error}")]
        public static partial void RenewFailed(ILogger logger, string kind, string error);
    }
}
