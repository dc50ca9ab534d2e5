using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lattice.Runtime.Engines;
using Lattice.Runtime.Engines.Embeddings;

namespace Lattice.Runtime.Tests.Engines.Embeddings;

/// <summary>One loaded <see cref="OnnxEmbeddingsEngine"/> (all-MiniLM-L6-v2 from its NuGet package), shared by a test class.</summary>
public sealed class EmbeddingsEngineFixture : IAsyncLifetime
{
    public const string ModelName = OnnxEmbeddingsOptions.DefaultModelName;

    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    public OnnxEmbeddingsEngine Engine { get; } = new();

    public List<double> Progress { get; } = [];

    public async Task InitializeAsync() =>
        await Engine.LoadAsync(new ListProgress(Progress), CancellationToken.None).WaitAsync(Timeout);

    public async Task DisposeAsync() => await Engine.DisposeAsync();

    /// <summary>Runs one request whose body is <paramref name="body"/> ("model" added unless present).</summary>
    public async Task<(RecordingOutput Output, EngineUsage Usage)> RunAsync(JsonObject body, CancellationToken cancellationToken = default)
    {
        body["model"] ??= ModelName;
        return await RunRawAsync(Encoding.UTF8.GetBytes(body.ToJsonString()), cancellationToken: cancellationToken);
    }

    public async Task<(RecordingOutput Output, EngineUsage Usage)> RunRawAsync(byte[] body, string model = ModelName, CancellationToken cancellationToken = default)
    {
        var output = new RecordingOutput();
        var usage = await Engine.ExecuteAsync(
            new EngineRequest(OnnxEmbeddingsEngine.TaskName, model, body, "application/json", Stream: false), output, cancellationToken).WaitAsync(Timeout);
        return (output, usage);
    }

    /// <summary>Embeds <paramref name="inputs"/> as floats and returns the vectors in response order.</summary>
    public async Task<float[][]> EmbedAsync(params string[] inputs)
    {
        var input = new JsonArray(inputs.Select(i => (JsonNode?)JsonValue.Create(i)).ToArray());
        var (output, _) = await RunAsync(new JsonObject { ["input"] = input });
        Assert.Equal(200, output.Status);
        return ReadFloatVectors(output.Text);
    }

    public static float[][] ReadFloatVectors(string json)
    {
        using var document = JsonDocument.Parse(json);
        return document.RootElement.GetProperty("data").EnumerateArray()
            .Select(item => item.GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle()).ToArray())
            .ToArray();
    }

    public static double Cosine(float[] a, float[] b)
    {
        double dot = 0, na = 0, nb = 0;
        for (var i = 0; i < a.Length; i++)
        {
            dot += (double)a[i] * b[i];
            na += (double)a[i] * a[i];
            nb += (double)b[i] * b[i];
        }
        return dot / Math.Sqrt(na * nb);
    }

    public static double Norm(float[] v) => Math.Sqrt(v.Sum(x => (double)x * x));

    /// <summary>Records progress synchronously (<see cref="Progress{T}"/> would post to the thread pool).</summary>
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
