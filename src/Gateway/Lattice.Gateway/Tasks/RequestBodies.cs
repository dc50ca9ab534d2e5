using System.Collections.Concurrent;
using Lattice.Gateway.Auth;
using Lattice.Gateway.Catalog;
using Lattice.Gateway.Hosting;
using Lattice.Gateway.OpenAi;
using Microsoft.Extensions.Options;

namespace Lattice.Gateway.Tasks;

/// <summary>
/// How request bodies are received: how large each task's may be, and how many one caller may be sending at once.
/// Every surface reads a body through <see cref="ReadAsync"/> after authenticating, and renders its error in its own shape.
/// </summary>
public sealed class RequestBodies(IOptions<GatewayOptions> options, Telemetry.GatewayMetrics? metrics = null)
{
    private readonly GatewayOptions _options = options.Value;
    private readonly int _maxUploads = options.Value.MaxConcurrentUploadsPerCaller;
    private readonly ConcurrentDictionary<string, Uploads> _uploads = new(StringComparer.Ordinal);

    /// <summary>
    /// The largest body <paramref name="task"/> accepts: <c>Lattice:BodyLimits:&lt;task&gt;</c>, else the default for its
    /// content kind (JSON small, multipart audio large), never more than <see cref="GatewayOptions.MaxRequestBodyBytes"/>.
    /// </summary>
    public long LimitFor(TaskClass task)
    {
        var limit = _options.BodyLimits.TryGetValue(task.Name, out var configured)
            ? configured
            : task.ContentKind == TaskContentKind.Multipart ? _options.MaxMultipartBodyBytes : _options.MaxJsonBodyBytes;
        return Math.Min(limit, _options.MaxRequestBodyBytes);
    }

    /// <summary>Request bodies of this credential being received now.</summary>
    public int UploadsInFlight(string credentialId) => _uploads.TryGetValue(credentialId, out var uploads) ? Volatile.Read(ref uploads.Count) : 0;

    /// <summary>
    /// Reads the body of <paramref name="caller"/>'s request, up to <paramref name="maxBytes"/>. A body over the limit by
    /// its declared length, or one past <see cref="GatewayOptions.MaxConcurrentUploadsPerCaller"/> uploads of the same
    /// credential, is refused before a byte of it is read; one that turns out larger, arrives too slowly or is badly
    /// framed is refused as it arrives. The error names <paramref name="task"/>'s limit when given.
    /// </summary>
    public async ValueTask<(byte[] Body, int Length, GatewayError? Error)> ReadAsync(HttpContext context, Caller caller, long maxBytes, string? task = null)
    {
        var request = context.Request;
        if (request.ContentLength > maxBytes)
        {
            return ([], 0, GatewayError.TooLarge(maxBytes, task));
        }
        if (request.ContentLength == 0)
        {
            return ([], 0, null);
        }
        Uploads? slot = null;
        if (_maxUploads > 0 && !TryEnter(caller.CredentialId, out slot))
        {
            metrics?.Rejected(Telemetry.GatewayMetrics.Limiters.Uploads);
            return ([], 0, GatewayError.TooManyUploads(_maxUploads));
        }
        try
        {
            var (body, length, tooLarge) = await TaskInputReader.ReadBodyAsync(request, maxBytes, context.RequestAborted);
            return tooLarge ? ([], 0, GatewayError.TooLarge(maxBytes, task)) : (body, length, null);
        }
        catch (BadHttpRequestException bad)
        {
            return ([], 0, GatewayError.BodyUnreadable(bad, maxBytes));
        }
        finally
        {
            if (slot is not null)
            {
                Exit(caller.CredentialId, slot);
            }
        }
    }

    /// <summary>One credential's uploads in flight; retired (and out of the table) when the count falls to zero.</summary>
    private sealed class Uploads
    {
        public int Count;
        public bool Retired;
    }

    private bool TryEnter(string credentialId, out Uploads? slot)
    {
        while (true)
        {
            var uploads = _uploads.GetOrAdd(credentialId, static _ => new Uploads());
            lock (uploads)
            {
                // Retired between the lookup and the lock: the table holds (or will hold) a fresh entry.
                if (uploads.Retired)
                {
                    continue;
                }
                if (uploads.Count >= _maxUploads)
                {
                    slot = null;
                    return false;
                }
                uploads.Count++;
                slot = uploads;
                return true;
            }
        }
    }

    private void Exit(string credentialId, Uploads uploads)
    {
        lock (uploads)
        {
            if (--uploads.Count == 0)
            {
                // The table stays as large as the callers uploading now, not every caller ever seen.
                uploads.Retired = true;
                _uploads.TryRemove(new KeyValuePair<string, Uploads>(credentialId, uploads));
            }
        }
    }
}
