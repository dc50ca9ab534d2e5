using System.Buffers;
using System.Text.Json;
using Lattice.Client.Json;
using Microsoft.Extensions.AI;

namespace Lattice.Client;

/// <summary>Microsoft.Extensions.AI's <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> over Lattice's <c>/v1/embeddings</c>.</summary>
public class LatticeEmbeddingGenerator : IEmbeddingGenerator<string, Embedding<float>>
{
    private readonly LatticeClient _client;
    private readonly string? _model;
    private readonly EmbeddingGeneratorMetadata _metadata;

    internal LatticeEmbeddingGenerator(LatticeClient client, string? model)
    {
        _client = client;
        _model = model;
        _metadata = new EmbeddingGeneratorMetadata("lattice", client.Options.Endpoint, model);
    }

    /// <inheritdoc/>
    public virtual async Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(values);
        var model = _client.ResolveModel(options?.ModelId, _model);
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(buffer, Json.WriterOptions.Relaxed))
        {
            json.WriteStartObject();
            json.WriteString("model", model);
            json.WriteStartArray("input");
            foreach (var value in values)
            {
                json.WriteStringValue(value);
            }
            json.WriteEndArray();
            json.WriteString("encoding_format", "float");
            if (options?.Dimensions is { } dimensions)
            {
                json.WriteNumber("dimensions", dimensions);
            }
            json.WriteEndObject();
        }
        using var request = LatticeClient.JsonRequest("v1/embeddings", model, buffer.WrittenSpan.ToArray());
        using var response = await _client.SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken).ConfigureAwait(false);
        var list = await LatticeClient.ReadAsync(response, OpenAiJsonContext.Default.EmbeddingList, cancellationToken).ConfigureAwait(false);
        var embeddings = new GeneratedEmbeddings<Embedding<float>>(list.Data.OrderBy(d => d.Index).Select(d => new Embedding<float>(d.Embedding) { ModelId = list.Model }))
        {
            Usage = list.Usage is { } usage ? new UsageDetails { InputTokenCount = usage.PromptTokens, TotalTokenCount = usage.TotalTokens } : null,
            AdditionalProperties = LatticeChatClient.RequestIdProperty(response),
        };
        return embeddings;
    }

    /// <inheritdoc/>
    public virtual object? GetService(Type serviceType, object? serviceKey = null) =>
        LatticeClient.ServiceOf(this, _metadata, _client, serviceType, serviceKey);

    /// <summary>Nothing to free: the <see cref="LatticeClient"/> owns the connection.</summary>
    public void Dispose() => GC.SuppressFinalize(this);
}
