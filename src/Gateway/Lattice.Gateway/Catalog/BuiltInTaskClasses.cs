using Lattice.Gateway.Persistence;

namespace Lattice.Gateway.Catalog;

/// <summary>The task classes every catalog starts with; seeded into the database at start-up.</summary>
public static class BuiltInTaskClasses
{
    public const string ChatCompletions = "chat.completions";
    public const string Embeddings = "embeddings";
    public const string AudioTranscriptions = "audio.transcriptions";

    public static IEnumerable<TaskClassEntity> All(DateTimeOffset now)
    {
        yield return Make(ChatCompletions, streams: true, "application/json", "chat/completions", MeteringUnits.Tokens, now);
        yield return Make(Embeddings, streams: false, "application/json", "embeddings", MeteringUnits.Tokens, now);
        yield return Make(AudioTranscriptions, streams: false, "multipart/form-data", "audio/transcriptions", MeteringUnits.Seconds, now);
    }

    private static TaskClassEntity Make(string name, bool streams, string contentType, string upstreamPath, string unit, DateTimeOffset now) => new()
    {
        Name = name,
        InputSchema = Read(name),
        Streams = streams,
        ContentType = contentType,
        UpstreamPath = upstreamPath,
        UsagePath = "usage",
        MeteringUnit = unit,
        BuiltIn = true,
        CreatedAt = now,
    };

    private static string Read(string name)
    {
        using var stream = typeof(BuiltInTaskClasses).Assembly.GetManifestResourceStream($"Lattice.Gateway.Catalog.Schemas.{name}.json")
            ?? throw new InvalidOperationException($"Built-in schema {name} is missing from the assembly.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}

/// <summary>What a task class is metered in.</summary>
public static class MeteringUnits
{
    /// <summary>Prompt, completion and cached tokens (chat, embeddings, most admin-added tasks).</summary>
    public const string Tokens = "tokens";
    /// <summary>Seconds of audio (transcription).</summary>
    public const string Seconds = "seconds";
    /// <summary>Each request counts once; nothing is read from the answer.</summary>
    public const string Requests = "requests";

    public static readonly string[] All = [Tokens, Seconds, Requests];
}
