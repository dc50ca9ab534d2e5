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
        yield return new TaskClassEntity
        {
            Name = ChatCompletions,
            InputSchema = Read(ChatCompletions),
            Streams = true,
            ContentType = "application/json",
            UpstreamPath = "chat/completions",
            UsagePath = "usage",
            BuiltIn = true,
            CreatedAt = now,
        };
        yield return new TaskClassEntity
        {
            Name = Embeddings,
            InputSchema = Read(Embeddings),
            Streams = false,
            ContentType = "application/json",
            UpstreamPath = "embeddings",
            UsagePath = "usage",
            BuiltIn = true,
            CreatedAt = now,
        };
        yield return new TaskClassEntity
        {
            Name = AudioTranscriptions,
            InputSchema = Read(AudioTranscriptions),
            Streams = false,
            ContentType = "multipart/form-data",
            UpstreamPath = "audio/transcriptions",
            UsagePath = "usage",
            BuiltIn = true,
            CreatedAt = now,
        };
    }

    private static string Read(string name)
    {
        using var stream = typeof(BuiltInTaskClasses).Assembly.GetManifestResourceStream($"Lattice.Gateway.Catalog.Schemas.{name}.json")
            ?? throw new InvalidOperationException($"Built-in schema {name} is missing from the assembly.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
