using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;

namespace Lattice.Testing;

/// <summary>
/// Validates JSON bodies against the component schemas of OpenAI's published OpenAPI description
/// (<c>shared/spec/openai-openapi.yaml</c>, OpenAPI 3.1 = JSON Schema 2020-12 plus OpenAPI keywords).
/// </summary>
/// <remarks>
/// <para>The spec is located on first use (see <see cref="SpecPath"/>), converted from YAML to JSON,
/// registered under <see cref="SpecBaseUri"/> and compiled lazily, one validator per component schema,
/// each being <c>{"$ref": "&lt;base&gt;#/components/schemas/&lt;name&gt;"}</c>. Everything is cached
/// statically and is safe to use from parallel tests.</para>
/// <para>Semantics: JSON Schema 2020-12 with unknown keywords (<c>discriminator</c>, <c>x-*</c>,
/// <c>example</c>, …) ignored and <c>format</c> treated as an annotation, as 2020-12 prescribes.
/// The OpenAPI 3.0 leftovers in OpenAI's file are honoured rather than ignored: <c>nullable: true</c>
/// admits <c>null</c>, and boolean <c>exclusiveMinimum</c>/<c>exclusiveMaximum</c> keep their
/// exclusive meaning. Required properties, types, enums and every other constraint apply as written.</para>
/// </remarks>
public static class OpenApiContract
{
    /// <summary>Environment variable that overrides the location of the OpenAPI YAML file.</summary>
    public const string SpecPathVariable = "LATTICE_OPENAPI_SPEC";

    /// <summary>The spec's path relative to a directory that contains <c>shared/</c>.</summary>
    public const string SpecRelativePath = "shared/spec/openai-openapi.yaml";

    /// <summary>The base URI under which the converted document is registered.</summary>
    public static readonly Uri SpecBaseUri = new("https://lattice.invalid/openai-openapi.json");

    private static readonly Lazy<LoadedSpec> Spec = new(LoadedSpec.Load, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Names of the component schemas Lattice's tests use, exactly as spelled in the spec.</summary>
    public static class Schemas
    {
        public const string CreateChatCompletionResponse = nameof(CreateChatCompletionResponse);
        public const string CreateChatCompletionStreamResponse = nameof(CreateChatCompletionStreamResponse);
        public const string CreateEmbeddingResponse = nameof(CreateEmbeddingResponse);
        public const string CreateTranscriptionResponseJson = nameof(CreateTranscriptionResponseJson);
        public const string CreateTranscriptionResponseVerboseJson = nameof(CreateTranscriptionResponseVerboseJson);
        public const string ListModelsResponse = nameof(ListModelsResponse);
        public const string Model = nameof(Model);
        public const string ErrorResponse = nameof(ErrorResponse);
    }

    /// <summary>
    /// The OpenAPI YAML file in use: <c>$LATTICE_OPENAPI_SPEC</c> if set, else
    /// <c>$LATTICE_SHARED_DIR/spec/openai-openapi.yaml</c> if that variable is set, else the first
    /// <c>shared/spec/openai-openapi.yaml</c> found walking up from <see cref="AppContext.BaseDirectory"/>
    /// (then from the current directory).
    /// </summary>
    public static string SpecPath => Spec.Value.Path;

    /// <summary>How long locating, parsing and converting the spec took (loads it if needed).</summary>
    public static TimeSpan LoadDuration => Spec.Value.LoadDuration;

    /// <summary>Loads the spec now (e.g. from a test fixture) instead of on the first validation.</summary>
    public static void Preload() => _ = Spec.Value;

    /// <summary>Whether <c>#/components/schemas/{name}</c> exists in the spec.</summary>
    public static bool HasSchema(string componentSchemaName) => Spec.Value.SchemaNames.Contains(componentSchemaName);

    /// <summary>All component schema names in the spec.</summary>
    public static IReadOnlyCollection<string> SchemaNames => Spec.Value.SchemaNames;

    /// <summary>
    /// Validates <paramref name="json"/> against <c>#/components/schemas/{componentSchemaName}</c>.
    /// Returns human-readable errors (<c>instance location: message (schema location)</c>); empty when valid.
    /// Malformed JSON yields a single error. An unknown schema name throws <see cref="ArgumentException"/>.
    /// </summary>
    public static IReadOnlyList<string> Validate(string componentSchemaName, string json)
    {
        ArgumentException.ThrowIfNullOrEmpty(componentSchemaName);
        ArgumentNullException.ThrowIfNull(json);
        var schema = Spec.Value.GetValidator(componentSchemaName);

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException ex)
        {
            return [$"(root): body is not valid JSON: {ex.Message}"];
        }

        using (document)
        {
            var flag = schema.Evaluate(document.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.Flag });
            if (flag.IsValid)
            {
                return [];
            }

            // Re-evaluate only on failure, with the detailed (hierarchical) output.
            var detailed = schema.Evaluate(document.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.Hierarchical });
            var errors = new List<string>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            CollectErrors(detailed, errors, seen);
            if (errors.Count == 0)
            {
                errors.Add($"(root): does not conform to '{componentSchemaName}' (no detailed error was reported)");
            }

            return errors;
        }
    }

    /// <summary>Throws <see cref="OpenApiContractException"/> listing all errors unless the body is valid.</summary>
    public static void AssertValid(string componentSchemaName, string json)
    {
        var errors = Validate(componentSchemaName, json);
        if (errors.Count > 0)
        {
            throw new OpenApiContractException(componentSchemaName, errors, json);
        }
    }

    /// <summary>Validates one streamed chunk (the JSON after <c>data: </c>) against <c>CreateChatCompletionStreamResponse</c>.</summary>
    public static IReadOnlyList<string> ValidateStreamChunk(string json) =>
        Validate(Schemas.CreateChatCompletionStreamResponse, json);

    /// <summary>Throws <see cref="OpenApiContractException"/> unless the chunk is a valid <c>CreateChatCompletionStreamResponse</c>.</summary>
    public static void AssertValidStreamChunk(string json) =>
        AssertValid(Schemas.CreateChatCompletionStreamResponse, json);

    // Walks only failing nodes: errors inside a subschema whose parent still passed (e.g. the
    // non-matching branches of a successful anyOf) are not reasons for the failure and are skipped.
    private static void CollectErrors(EvaluationResults node, List<string> errors, HashSet<string> seen)
    {
        if (node.IsValid)
        {
            return;
        }

        if (node.Errors is { Count: > 0 })
        {
            var location = node.InstanceLocation.ToString();
            if (location.Length == 0)
            {
                location = "(root)";
            }

            foreach (var (keyword, message) in node.Errors)
            {
                var line = $"{location}: {message} (schema: {node.EvaluationPath}, keyword '{keyword}')";
                if (seen.Add(line))
                {
                    errors.Add(line);
                }
            }
        }

        if (node.Details is { } details)
        {
            foreach (var child in details)
            {
                CollectErrors(child, errors, seen);
            }
        }
    }

    internal static string? LocateSpec()
    {
        var explicitPath = Environment.GetEnvironmentVariable(SpecPathVariable);
        if (!string.IsNullOrWhiteSpace(explicitPath))
        {
            var full = System.IO.Path.GetFullPath(explicitPath);
            return File.Exists(full)
                ? full
                : throw new FileNotFoundException($"{SpecPathVariable} points to '{full}', which does not exist.", full);
        }

        var sharedDir = Environment.GetEnvironmentVariable(RepoPaths.SharedDirVariable);
        if (!string.IsNullOrWhiteSpace(sharedDir))
        {
            var full = System.IO.Path.GetFullPath(System.IO.Path.Combine(sharedDir, "spec", "openai-openapi.yaml"));
            return File.Exists(full)
                ? full
                : throw new FileNotFoundException($"{RepoPaths.SharedDirVariable} is '{sharedDir}', but '{full}' does not exist.", full);
        }

        foreach (var start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = System.IO.Path.Combine(dir.FullName, SpecRelativePath);
                if (File.Exists(candidate))
                {
                    return candidate;
                }
            }
        }

        return null;
    }

    private sealed class LoadedSpec
    {
        private readonly ConcurrentDictionary<string, Lazy<JsonSchema>> _validators = new(StringComparer.Ordinal);
        private readonly Lock _buildLock = new();
        private readonly BuildOptions _buildOptions;

        private LoadedSpec(string path, JsonDocument document, HashSet<string> schemaNames, TimeSpan loadDuration)
        {
            Path = path;
            Document = document;
            SchemaNames = schemaNames;
            LoadDuration = loadDuration;
            _buildOptions = new BuildOptions
            {
                SchemaRegistry = new SchemaRegistry(),
                Dialect = Dialect.Draft202012,
            };
            _buildOptions.SchemaRegistry.Register(SpecBaseUri, new JsonElementBaseDocument(document.RootElement, SpecBaseUri));
        }

        public string Path { get; }

        public JsonDocument Document { get; }

        public HashSet<string> SchemaNames { get; }

        public TimeSpan LoadDuration { get; }

        public static LoadedSpec Load()
        {
            var stopwatch = Stopwatch.StartNew();
            var path = LocateSpec() ?? throw new FileNotFoundException(
                $"Could not find '{SpecRelativePath}' in any parent of '{AppContext.BaseDirectory}' or "
                + $"'{Environment.CurrentDirectory}'. Set {SpecPathVariable} to the file, or {RepoPaths.SharedDirVariable} "
                + "to the shared directory.");

            JsonNode root;
            using (var reader = new StreamReader(path))
            {
                root = YamlJson.Parse(reader) ?? throw new InvalidDataException($"'{path}' is empty.");
            }

            if (root["components"]?["schemas"] is not JsonObject schemas)
            {
                throw new InvalidDataException($"'{path}' has no components/schemas section.");
            }

            OpenApiSchemaNormalizer.NormalizeComponentSchemas(root);
            var names = schemas.Select(p => p.Key).ToHashSet(StringComparer.Ordinal);
            var document = JsonDocument.Parse(root.ToJsonString());
            stopwatch.Stop();
            return new LoadedSpec(path, document, names, stopwatch.Elapsed);
        }

        public JsonSchema GetValidator(string name)
        {
            if (!SchemaNames.Contains(name))
            {
                throw new ArgumentException(
                    $"'{name}' is not a schema in #/components/schemas of '{Path}'.", nameof(name));
            }

            return _validators.GetOrAdd(name, n => new Lazy<JsonSchema>(() => Build(n))).Value;
        }

        private JsonSchema Build(string name)
        {
            var pointer = "/components/schemas/" + name.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);
            var reference = new UriBuilder(SpecBaseUri) { Fragment = Uri.EscapeDataString(pointer).Replace("%2F", "/", StringComparison.Ordinal) }.Uri;
            var wrapper = new JsonObject
            {
                ["$schema"] = "https://json-schema.org/draft/2020-12/schema",
                ["$ref"] = reference.AbsoluteUri,
            };
            var wrapperUri = new Uri(SpecBaseUri, "validators/" + Uri.EscapeDataString(name));

            // The registry and the build-time reference resolution are shared; builds are rare, so serialise them.
            lock (_buildLock)
            {
                return JsonSchema.FromText(wrapper.ToJsonString(), _buildOptions, wrapperUri);
            }
        }
    }
}
