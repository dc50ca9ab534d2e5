using Lattice.Runtime.Config;

namespace Lattice.Runtime.Hosting;

/// <summary>The engines <c>lattice up</c> runs when there is no config file: the models shipped in <c>Models/</c>.</summary>
public static class BundledModels
{
    public static string Directory => Path.Combine(AppContext.BaseDirectory, "Models");

    public static string ChatModelPath => Path.Combine(Directory, "stories260K.gguf");

    public static string WhisperModelPath => Path.Combine(Directory, "fake-whisper-hello-world.bin");

    public static IReadOnlyList<EngineConfig> Engines =>
    [
        // stories260K was trained on plain stories, never on chat turns (the ChatML template in its file was added by
        // the conversion): it is prompted with the text alone, so "Once upon a time" is continued as a story.
        new("llama", [new ModelConfig("stories260K", ChatModelPath, null, 512, PlainCompletion: true)], null, null, 0),
        new("onnx-embeddings", [new ModelConfig("all-MiniLM-L6-v2", null, null, 0)], null, null, 0),
        // The bundled Whisper model is synthetic: a prompt shifts its decoder positions, so prompts are ignored.
        new("whisper", [new ModelConfig("whisper-hello-world", WhisperModelPath, null, 0, IgnorePrompt: true)], null, null, 0),
    ];
}
