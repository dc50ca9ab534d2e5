using System.Text.Json;

namespace Lattice.Client;

/// <summary>A model the credential may use, as <c>GET /v1/models</c> lists it.</summary>
/// <param name="Id">The model id to send: <c>lovelace:…</c> (a catalog model) or <c>lattice:personal:lat_…</c> (one personal runtime).</param>
/// <param name="Created">When it was added, in Unix seconds.</param>
/// <param name="OwnedBy">Its owner: the catalog's, or the workspace for a personal runtime.</param>
public sealed record LatticeModel(string Id, long Created, string OwnedBy)
{
    /// <summary>True for <c>lattice:personal:lat_…</c>: one specific personal runtime, never rerouted.</summary>
    public bool IsPersonalRuntime => ModelIds.IsPersonalRuntime(Id);
}

/// <summary>A task class: what <see cref="LatticeClient.InvokeAsync(string, System.Text.Json.Nodes.JsonObject, CancellationToken)"/> can dispatch.</summary>
/// <param name="Name">The task's name (<c>chat.completions</c>, <c>rerank</c>, …), the last segment of <c>/v1/tasks/{task}</c>.</param>
/// <param name="InputSchema">The JSON Schema (2020-12) its input must satisfy.</param>
/// <param name="Streams">Whether <c>"stream": true</c> streams its answer.</param>
/// <param name="ContentType"><c>application/json</c> or <c>multipart/form-data</c>.</param>
/// <param name="UpstreamPath">The path an OpenAI-compatible upstream serves it at.</param>
/// <param name="UsagePath">Where usage sits in its answers, when it has any.</param>
/// <param name="MeteringUnit"><c>tokens</c>, <c>seconds</c> or <c>requests</c>.</param>
/// <param name="BuiltIn">One of the three built-in tasks.</param>
/// <param name="CreatedAt">When it was added, in Unix seconds.</param>
public sealed record TaskClass(string Name, JsonElement InputSchema, bool Streams, string ContentType, string UpstreamPath, string? UsagePath,
    string MeteringUnit, bool BuiltIn, long CreatedAt);

/// <summary>Lattice's model-id grammar, as far as the client needs it.</summary>
public static class ModelIds
{
    /// <summary>The prefix of a model id that names one personal runtime.</summary>
    public const string PersonalPrefix = "lattice:personal:";

    /// <summary>The model id that sends a request to personal runtime <paramref name="latticeId"/> (<c>lat_…</c>) and nowhere else.</summary>
    public static string ForRuntime(string latticeId) => PersonalPrefix + latticeId;

    /// <summary>True when <paramref name="modelId"/> names one personal runtime (<c>lattice:personal:lat_…</c>).</summary>
    public static bool IsPersonalRuntime(string? modelId) =>
        modelId is not null && modelId.StartsWith(PersonalPrefix + "lat_", StringComparison.Ordinal) && modelId.Length > PersonalPrefix.Length + 4;

    /// <summary>The runtime id (<c>lat_…</c>) a personal model id names, or null.</summary>
    public static string? RuntimeIdOf(string? modelId) => IsPersonalRuntime(modelId) ? modelId![PersonalPrefix.Length..] : null;
}
