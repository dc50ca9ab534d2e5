using Lattice.Runtime.Config;
using Lattice.Runtime.Engines.Embeddings;
using Lattice.Runtime.Engines.Llama;
using Lattice.Runtime.Engines.Whisper;

namespace Lattice.Runtime.Engines;

/// <summary>Builds an engine from its <c>[[engines]]</c> config entry.</summary>
public static class EngineFactory
{
    public static IEngine Create(EngineConfig config) => config.Kind switch
    {
        "llama" => new LlamaEngine(new LlamaEngineOptions
        {
            Models = config.Models.Select(m => new LlamaModelOptions
            {
                Name = m.Name,
                Path = m.Path!,
                ContextSize = m.ContextSize > 0 ? m.ContextSize : null,
                PlainCompletion = m.PlainCompletion,
            }).ToList(),
        }),
        "onnx-embeddings" => new OnnxEmbeddingsEngine(new OnnxEmbeddingsOptions
        {
            ModelName = config.Models.Count > 0 ? config.Models[0].Name : OnnxEmbeddingsOptions.DefaultModelName,
        }),
        "whisper" => new WhisperEngine(new WhisperEngineOptions
        {
            Models = config.Models.Select(m => new WhisperModelOptions { Name = m.Name, Path = m.Path!, IgnorePrompt = m.IgnorePrompt }).ToList(),
        }),
        "openai-compatible" => new OpenAiCompatibleEngine(
            new Uri(config.BaseUrl!),
            config.Models.Select(m => (m.Name, m.Task)),
            config.ApiKeyEnv is { } env ? Environment.GetEnvironmentVariable(env) : null),
        "fixed" => config.Models.Count == 0
            ? new FixedEngine()
            : new FixedEngine(config.Models[0].Name, config.Models[0].Chunks > 0 ? config.Models[0].Chunks : 8, TimeSpan.FromMilliseconds(config.Models[0].ChunkDelayMs)),
        _ => throw new ConfigException(config.Kind, "kind", config.Line, $"the '{config.Kind}' engine is not available in this build"),
    };
}
