using System.Net.Http.Headers;
using System.Security.Cryptography;
using Lattice.Client.Pipeline;
using Lattice.Protocol.Sealing;

namespace Lattice.Client.Sealing;

/// <summary>
/// A personal runtime a call is sealed to: its id, the work key its record publishes, and the sealing sessions of the
/// sealed client made for it (<see cref="SealingSessions"/>).
/// </summary>
internal sealed class SealedTarget : IDisposable
{
    private SealedTarget(string latticeId, byte[] publicKey, string fingerprint, TimeProvider time)
    {
        LatticeId = latticeId;
        PublicKey = publicKey;
        Fingerprint = fingerprint;
        Sessions = new SealingSessions(publicKey, time);
    }

    public string LatticeId { get; }
    public byte[] PublicKey { get; }
    public string Fingerprint { get; }
    public SealingSessions Sessions { get; }

    public string Model => ModelIds.ForRuntime(LatticeId);

    public static SealedTarget For(PersonalRuntime runtime, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        if (WorkKey.ParsePublic(runtime.PublicWorkKey) is not { } key)
        {
            throw new SealedDispatchUnsupportedException(new LatticeError(0, LatticeErrorCodes.SealedDispatchUnsupported, null,
                $"The runtime '{runtime.LatticeId}' publishes no work key (its daemon never connected, or predates sealed dispatch): it cannot take sealed calls."));
        }
        return new SealedTarget(runtime.LatticeId, key, SealedFormat.Fingerprint(key), time);
    }

    public void Dispose() => Sessions.Dispose();
}

/// <summary>
/// One sealed call (docs/sealed-dispatch.md): the body sealed to the runtime's work key in the target's current session, sent
/// with the headers the gateway routes on, and the answer opened with the reply key. Sealed once per logical call, so
/// a retry sends the same bytes and an idempotent replay of the answer opens with the same key.
/// </summary>
internal static class SealedCall
{
    public static async Task<HttpResponseMessage> SendAsync(LatticeClient client, SealedTarget target, string path, byte[] body, bool stream,
        HttpCompletionOption completion, CancellationToken cancellationToken)
    {
        await client.CheckPinAsync(target.LatticeId, target.Fingerprint, cancellationToken).ConfigureAwait(false);
        // The app chooses the request id: it is bound into the seal before the gateway has seen the request.
        var requestId = "sreq_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        var (sealedBody, opener) = await target.Sessions.SealAsync(body, requestId, target.LatticeId, cancellationToken).ConfigureAwait(false);
        CryptographicOperations.ZeroMemory(body);
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(sealedBody) };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue(SealedHttp.ContentType);
            request.Headers.TryAddWithoutValidation(SealedHttp.ModelHeader, target.Model);
            request.Headers.TryAddWithoutValidation(SealedHttp.StreamHeader, stream ? "true" : "false");
            request.Headers.TryAddWithoutValidation(SealedHttp.RequestIdHeader, requestId);
            LatticeClient.Target(request, target.Model);
            var response = await client.SendAsync(request, completion, cancellationToken).ConfigureAwait(false);
            try
            {
                await OpenAsync(response, opener, stream, cancellationToken).ConfigureAwait(false);
                return response;
            }
            catch
            {
                response.Dispose();
                throw;
            }
        }
        catch
        {
            opener.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Puts the opened answer in place of the sealed one (JSON, or the event stream of a streamed call); a sealed error
    /// answer is opened and thrown as its <see cref="LatticeException"/>. The gateway's own errors come in clear and
    /// were thrown before this.
    /// </summary>
    private static async Task OpenAsync(HttpResponseMessage response, SealedChunkOpener opener, bool stream, CancellationToken cancellationToken)
    {
        var requestId = ErrorReader.RequestIdOf(response);
        if (!SealedHttp.IsSealed(response.Content.Headers.ContentType?.ToString()))
        {
            throw new SealedAnswerException("The answer to a sealed call was not sealed.", requestId);
        }
        var opened = new SealedAnswerStream(await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false), opener, requestId);
        if (!response.IsSuccessStatusCode)
        {
            using var buffer = new MemoryStream();
            await opened.CopyToAsync(buffer, cancellationToken).ConfigureAwait(false);
            var status = (int)response.StatusCode;
            var error = ErrorReader.Parse(buffer.GetBuffer().AsSpan(0, (int)buffer.Length), status)
                ?? new LatticeError(status, null, null, $"The runtime answered {status} without an error envelope.");
            throw LatticeException.FromError(error with { RequestId = requestId });
        }
        var content = new StreamContent(opened);
        content.Headers.ContentType = new MediaTypeHeaderValue(stream ? "text/event-stream" : "application/json");
        response.Content = content;
    }
}

/// <summary>
/// The plaintext of a sealed answer, read record by record from the network and opened in order; the end of the
/// stream without the final chunk (a cut-short answer) or a chunk that does not open is a <see cref="SealedAnswerException"/>.
/// </summary>
internal sealed class SealedAnswerStream(Stream sealedStream, SealedChunkOpener opener, string? requestId) : Stream
{
    private byte[] _plain = [];
    private int _offset;
    private bool _done;

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (_offset == _plain.Length)
        {
            if (_done)
            {
                return 0;
            }
            try
            {
                // The final chunk goes to the reader as soon as it opens (a stream's reader stops at its end marker and
                // need not wait for the gateway to close the answer); a reader that reads on finds the end, or the
                // opener refuses a chunk after the final one.
                if (await SealedHttp.ReadRecordAsync(sealedStream, cancellationToken).ConfigureAwait(false) is not { } chunk)
                {
                    opener.EnsureComplete();
                    _done = true;
                    return 0;
                }
                _plain = opener.Open(chunk);
                _offset = 0;
            }
            catch (SealedMessageException e)
            {
                throw new SealedAnswerException("The sealed answer did not open: " + e.Message + ".", requestId, e);
            }
        }
        var n = Math.Min(buffer.Length, _plain.Length - _offset);
        _plain.AsMemory(_offset, n).CopyTo(buffer);
        _offset += n;
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count, CancellationToken.None).GetAwaiter().GetResult();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            opener.Dispose();
            sealedStream.Dispose();
        }
        base.Dispose(disposing);
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
