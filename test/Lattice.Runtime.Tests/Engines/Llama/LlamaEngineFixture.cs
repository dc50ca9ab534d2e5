using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lattice.Runtime.Engines;
using Lattice.Runtime.Engines.Llama;
using Lattice.Testing;

namespace Lattice.Runtime.Tests.Engines.Llama;

/// <summary>One <see cref="LlamaEngine"/> serving <c>chat/stories260K.gguf</c> as "stories", shared by a test class.</summary>
public sealed class LlamaEngineFixture : IAsyncLifetime
{
    public const string ModelName = "stories";

    public static string ModelPath => Path.Combine(RepoPaths.SharedDir, "models", "chat", "stories260K.gguf");

    public LlamaEngine Engine { get; } = new(new LlamaEngineOptions
    {
        Models = [new LlamaModelOptions { Name = ModelName, Path = ModelPath }],
    });

    public List<double> Progress { get; } = [];

    public async Task InitializeAsync()
    {
        var progress = new SyncProgress(p => { lock (Progress) { Progress.Add(p); } });
        await Engine.LoadAsync(progress, CancellationToken.None);
    }

    public async Task DisposeAsync() => await Engine.DisposeAsync();

    /// <summary>Runs one request; the body is the JSON of <paramref name="body"/> (with "model" added unless present).</summary>
    public async Task<(RecordingOutput Output, EngineUsage Usage)> RunAsync(JsonObject body, CancellationToken cancellationToken = default)
    {
        body["model"] ??= ModelName;
        var stream = body["stream"]?.GetValue<bool>() ?? false;
        return await RunRawAsync(Encoding.UTF8.GetBytes(body.ToJsonString()), stream, cancellationToken);
    }

    public async Task<(RecordingOutput Output, EngineUsage Usage)> RunRawAsync(byte[] body, bool stream = false, CancellationToken cancellationToken = default)
    {
        var output = new RecordingOutput();
        var usage = await Engine.ExecuteAsync(
            new EngineRequest(LlamaEngine.ChatCompletionsTask, ModelName, body, "application/json", stream), output, cancellationToken);
        return (output, usage);
    }

    /// <summary>A request body with one user message.</summary>
    public static JsonObject UserRequest(string text, int? maxTokens = 30, double? temperature = 0)
    {
        var body = new JsonObject
        {
            ["model"] = ModelName,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = text }),
        };
        if (maxTokens is { } max)
        {
            body["max_tokens"] = max;
        }
        if (temperature is { } t)
        {
            body["temperature"] = t;
        }
        return body;
    }

    /// <summary>The JSON payloads of an SSE stream, one per write; asserts every write is exactly one event.</summary>
    public static List<string> Events(RecordingOutput output)
    {
        var events = new List<string>();
        foreach (var write in output.Writes)
        {
            var text = Encoding.UTF8.GetString(write);
            Assert.StartsWith("data: ", text, StringComparison.Ordinal);
            Assert.EndsWith("\n\n", text, StringComparison.Ordinal);
            var payload = text["data: ".Length..^2];
            Assert.DoesNotContain('\n', payload);
            events.Add(payload);
        }
        return events;
    }

    public static JsonElement Json(string text)
    {
        using var document = JsonDocument.Parse(text);
        return document.RootElement.Clone();
    }

    private sealed class SyncProgress(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }
}
