using System.Text.Json;
using Lattice.Client.Json;

namespace Lattice.Client.Pipeline;

/// <summary>The innermost stage: turns every answer that is not a success into its typed <see cref="LatticeException"/>.</summary>
internal sealed class ErrorHandler(TimeProvider time) : DelegatingHandler
{
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var response = await base.SendAsync(request, cancellationToken).ConfigureAwait(false);
        // A sealed error answer is the runtime's, sealed to the call: only the call can open it (Sealing/SealedCall).
        if (response.IsSuccessStatusCode || Protocol.Sealing.SealedHttp.IsSealed(response.Content.Headers.ContentType?.ToString()))
        {
            return response;
        }
        using (response)
        {
            throw LatticeException.FromError(await ErrorReader.ReadAsync(response, time, cancellationToken).ConfigureAwait(false));
        }
    }
}

/// <summary>Reads OpenAI's error envelope and the headers that go with it.</summary>
internal static class ErrorReader
{
    public static async Task<LatticeError> ReadAsync(HttpResponseMessage response, TimeProvider time, CancellationToken cancellationToken)
    {
        var body = await response.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false);
        var error = Parse(body, (int)response.StatusCode) ?? new LatticeError((int)response.StatusCode, null, null,
            $"The gateway answered {(int)response.StatusCode} {response.ReasonPhrase} without an error envelope.");
        return error with { RequestId = RequestIdOf(response), RetryAfter = RetryAfterOf(response, time) };
    }

    /// <summary>The envelope in <paramref name="json"/> (an answer's body or an SSE error event), or null when it holds none.</summary>
    public static LatticeError? Parse(ReadOnlySpan<byte> json, int status)
    {
        try
        {
            if (JsonSerializer.Deserialize(json, OpenAiJsonContext.Default.ErrorEnvelope)?.Error is not { } e)
            {
                return null;
            }
            return new LatticeError(status, Text(e.Code), e.Type, e.Message ?? "", Text(e.Param));
        }
        catch (JsonException)
        {
            return null;
        }
    }

    public static string? RequestIdOf(HttpResponseMessage response) =>
        response.Headers.TryGetValues("x-request-id", out var ids) ? ids.FirstOrDefault() : null;

    private static TimeSpan? RetryAfterOf(HttpResponseMessage response, TimeProvider time) => response.Headers.RetryAfter switch
    {
        { Delta: { } delta } => delta,
        { Date: { } date } => date - time.GetUtcNow() is { Ticks: > 0 } wait ? wait : TimeSpan.Zero,
        _ => null,
    };

    private static string? Text(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.String => element.GetString(),
        JsonValueKind.Number => element.GetRawText(),
        _ => null,
    };
}
