using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using Lattice.Client.Json;
using Microsoft.Extensions.AI;

namespace Lattice.Client;

/// <summary>
/// Microsoft.Extensions.AI's <see cref="ISpeechToTextClient"/> over Lattice's <c>/v1/audio/transcriptions</c>. The
/// audio is read whole first (the gateway takes up to 25 MB), so a retry can send it again.
/// </summary>
public class LatticeSpeechToTextClient : ISpeechToTextClient
{
    private readonly LatticeClient _client;
    private readonly string? _model;
    private readonly SpeechToTextClientMetadata _metadata;

    internal LatticeSpeechToTextClient(LatticeClient client, string? model)
    {
        _client = client;
        _model = model;
        _metadata = new SpeechToTextClientMetadata("lattice", client.Options.Endpoint, model);
    }

    /// <summary>The file name sent with the audio (the upstream guesses its format from it). Default <c>audio.wav</c>.</summary>
    public string FileName { get; init; } = "audio.wav";

    /// <inheritdoc/>
    public virtual async Task<SpeechToTextResponse> GetTextAsync(Stream audioSpeechStream, SpeechToTextOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(audioSpeechStream);
        var model = _client.ResolveModel(options?.ModelId, _model);
        using var audio = new MemoryStream();
        await audioSpeechStream.CopyToAsync(audio, cancellationToken).ConfigureAwait(false);

        using var form = new MultipartFormDataContent();
        var file = new ByteArrayContent(audio.GetBuffer(), 0, (int)audio.Length);
        file.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        form.Add(file, "file", FileName);
        form.Add(new StringContent(model), "model");
        form.Add(new StringContent("json"), "response_format");
        if (options?.SpeechLanguage is { Length: > 0 } language)
        {
            form.Add(new StringContent(language), "language");
        }
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/audio/transcriptions") { Content = form };
        LatticeClient.Target(request, model);
        using var response = await _client.SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken).ConfigureAwait(false);
        var transcription = await LatticeClient.ReadAsync(response, OpenAiJsonContext.Default.Transcription, cancellationToken).ConfigureAwait(false);
        return new SpeechToTextResponse(transcription.Text ?? "")
        {
            ModelId = model,
            EndTime = transcription.Duration is { } seconds ? TimeSpan.FromSeconds(seconds) : null,
            RawRepresentation = transcription,
            AdditionalProperties = LatticeChatClient.RequestIdProperty(response),
        };
    }

    /// <summary>Lattice transcribes in one answer: this yields it as a single update.</summary>
    public virtual async IAsyncEnumerable<SpeechToTextResponseUpdate> GetStreamingTextAsync(Stream audioSpeechStream, SpeechToTextOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var response = await GetTextAsync(audioSpeechStream, options, cancellationToken).ConfigureAwait(false);
        foreach (var update in response.ToSpeechToTextResponseUpdates())
        {
            yield return update;
        }
    }

    /// <inheritdoc/>
    public virtual object? GetService(Type serviceType, object? serviceKey = null) =>
        LatticeClient.ServiceOf(this, _metadata, _client, serviceType, serviceKey);

    /// <summary>Nothing to free: the <see cref="LatticeClient"/> owns the connection.</summary>
    public void Dispose() => GC.SuppressFinalize(this);
}
