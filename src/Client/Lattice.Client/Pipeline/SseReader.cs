using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;

namespace Lattice.Client.Pipeline;

/// <summary>Reads an OpenAI-style event stream: each event's data up to <c>[DONE]</c>; an error event is thrown as its exception.</summary>
internal static class SseReader
{
    public static async IAsyncEnumerable<byte[]> ReadAsync(HttpResponseMessage response, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        var requestId = ErrorReader.RequestIdOf(response);
        var parser = SseParser.Create(stream, static (_, data) => data.ToArray());
        await foreach (var item in parser.EnumerateAsync(cancellationToken).ConfigureAwait(false))
        {
            var data = item.Data;
            if (data.AsSpan().SequenceEqual("[DONE]"u8))
            {
                yield break;
            }
            // A failure after the stream started: one more event holding the envelope, then the end (docs/api.md).
            if (data.AsSpan().IndexOf("\"error\""u8) >= 0 && ErrorReader.Parse(data, 0) is { } error)
            {
                throw LatticeException.FromError(error with { RequestId = requestId });
            }
            yield return data;
        }
    }
}
