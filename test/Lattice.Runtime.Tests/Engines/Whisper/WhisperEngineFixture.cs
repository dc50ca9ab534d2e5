using System.Text.Json;
using Lattice.Runtime.Engines;
using Lattice.Runtime.Engines.Whisper;
using Lattice.Testing;

namespace Lattice.Runtime.Tests.Engines.Whisper;

/// <summary>
/// One <see cref="WhisperEngine"/> shared by a test class, serving the synthetic model that always says
/// " Hello world." as "fake" and whisper.cpp's tensor-less stub (always 0 segments) as "stub".
/// </summary>
public sealed class WhisperEngineFixture : IAsyncLifetime
{
    public const string FakeModel = "fake";
    public const string StubModel = "stub";

    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    public static string FakeModelPath => Path.Combine(RepoPaths.SharedDir, "models", "whisper", "fake-whisper-hello-world.bin");

    public static string StubModelPath => Path.Combine(RepoPaths.SharedDir, "models", "whisper", "for-tests-ggml-tiny.bin");

    public WhisperEngine Engine { get; } = new(new WhisperEngineOptions
    {
        Models =
        [
            // One thread: the test models are tiny, and on a busy two-core runner ggml's spinning workers only contend.
            new WhisperModelOptions { Name = FakeModel, Path = FakeModelPath, Threads = 1 },
            new WhisperModelOptions { Name = StubModel, Path = StubModelPath, Threads = 1 },
        ],
    });

    public List<double> Progress { get; } = [];

    public async Task InitializeAsync() =>
        await Engine.LoadAsync(new ListProgress(Progress), CancellationToken.None).WaitAsync(Timeout);

    public async Task DisposeAsync() => await Engine.DisposeAsync();

    public async Task<(RecordingOutput Output, EngineUsage Usage)> RunAsync(
        (byte[] Body, string ContentType) form, string model = FakeModel, CancellationToken cancellationToken = default)
    {
        var output = new RecordingOutput();
        var usage = await Engine.ExecuteAsync(new EngineRequest(WhisperEngine.TaskName, model, form.Body, form.ContentType, Stream: false), output, cancellationToken)
            .WaitAsync(Timeout);
        return (output, usage);
    }

    /// <summary>Transcribes <paramref name="audio"/> as the .NET SDK would send it, with the given extra fields.</summary>
    public Task<(RecordingOutput Output, EngineUsage Usage)> TranscribeAsync(byte[] audio, string responseFormat = "json", string model = FakeModel, params (string Name, string Value)[] fields) =>
        RunAsync(TranscriptionForm.DotNet(audio, "audio.wav", [("model", "whisper-1"), ("response_format", responseFormat), .. fields]), model);

    public static JsonElement ParseJson(RecordingOutput output)
    {
        using var document = JsonDocument.Parse(output.Text);
        return document.RootElement.Clone();
    }

    private sealed class ListProgress(List<double> values) : IProgress<double>
    {
        public void Report(double value)
        {
            lock (values)
            {
                values.Add(value);
            }
        }
    }
}
