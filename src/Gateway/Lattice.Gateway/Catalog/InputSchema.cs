using System.Text.Json;
using System.Text.RegularExpressions;
using Json.Schema;

namespace Lattice.Gateway.Catalog;

/// <summary>The first thing wrong with an input document, in the words the OpenAI surface uses.</summary>
public readonly record struct SchemaViolation(string Message, string? Param, string Code);

/// <summary>A task class's compiled JSON Schema (2020-12). Built once per catalog snapshot; evaluation is thread-safe.</summary>
public sealed partial class InputSchema
{
    // Valid input is the hot path: a flag evaluation answers it cheaply. Only invalid input pays for the full tree.
    private static readonly EvaluationOptions FlagOptions = new() { OutputFormat = OutputFormat.Flag };
    private static readonly EvaluationOptions DetailOptions = new() { OutputFormat = OutputFormat.Hierarchical };
    private readonly JsonSchema _schema;
    private readonly SchemaPrecheck? _precheck;
    private readonly Dictionary<string, string> _topLevelTypes;

    private readonly JsonElement _schemaRoot;

    private InputSchema(JsonSchema schema, Dictionary<string, string> topLevelTypes, string text, JsonElement schemaRoot)
    {
        _schemaRoot = schemaRoot;
        _precheck = SchemaPrecheck.TryCompile(schemaRoot);
        _schema = schema;
        _topLevelTypes = topLevelTypes;
        Text = text;
    }

    /// <summary>The schema's source text, as stored in the catalog.</summary>
    public string Text { get; }

    /// <summary>Compiles <paramref name="text"/>; returns null with a reason when it is not a usable schema.</summary>
    public static InputSchema? TryCreate(string text, out string? error)
    {
        try
        {
            using var doc = JsonDocument.Parse(text);
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                error = "The input schema must be a JSON object.";
                return null;
            }

            var schema = JsonSchema.FromText(text, new BuildOptions { SchemaRegistry = new SchemaRegistry() });
            var types = new Dictionary<string, string>(StringComparer.Ordinal);
            if (doc.RootElement.TryGetProperty("properties", out var props) && props.ValueKind == JsonValueKind.Object)
            {
                foreach (var p in props.EnumerateObject())
                {
                    if (p.Value.ValueKind == JsonValueKind.Object && p.Value.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String)
                    {
                        types[p.Name] = t.GetString()!;
                    }
                }
            }
            error = null;
            return new InputSchema(schema, types, text, doc.RootElement.Clone());
        }
        catch (Exception ex) when (ex is JsonException or JsonSchemaException or ArgumentException or InvalidOperationException or RefResolutionException)
        {
            error = ex.Message;
            return null;
        }
    }

    /// <summary>Whether valid input can be recognised without the library (the schema uses only what <see cref="SchemaPrecheck"/> handles).</summary>
    internal bool HasPrecheck => _precheck is not null;

    /// <summary>The declared <c>type</c> of a top-level property, used to type multipart form fields.</summary>
    public string? TopLevelType(string property) => _topLevelTypes.GetValueOrDefault(property);

    /// <summary>Validates <paramref name="instance"/>; returns the most specific violation, or null when valid.</summary>
    public SchemaViolation? Validate(JsonElement instance)
    {
        // The precheck vouches only for input it is sure the schema accepts; everything else, and every error
        // message, comes from the library as before.
        if (_precheck?.Check(instance) == PrecheckVerdict.Valid)
        {
            return null;
        }
        if (_schema.Evaluate(instance, FlagOptions).IsValid)
        {
            return null;
        }
        var results = _schema.Evaluate(instance, DetailOptions);

        Candidate best = default;
        Collect(results, ref best);
        if (best.Node is null)
        {
            return new SchemaViolation("The request body does not match the schema of this task.", null, Protocol.ErrorCodes.InvalidValue);
        }
        return Describe(best.Node.InstanceLocation.ToString(), best.Keyword!, best.Message!, instance, SchemaForInstance(best.Node.InstanceLocation.ToString()));
    }

    private record struct Candidate(EvaluationResults? Node, string? Keyword, string? Message, int Depth, int Rank);

    // Walks only the failing branches, skipping `if` (a failed condition is not an error), and keeps the error
    // deepest in the instance — the one that names the concrete field.
    private static void Collect(EvaluationResults node, ref Candidate best)
    {
        if (node.IsValid || IsConditionBranch(node))
        {
            return;
        }
        if (node.Errors is not null)
        {
            foreach (var (keyword, message) in node.Errors)
            {
                var depth = node.InstanceLocation.SegmentCount;
                var rank = KeywordRank(keyword);
                if (best.Node is null || depth > best.Depth || (depth == best.Depth && rank < best.Rank))
                {
                    best = new Candidate(node, keyword, message, depth, rank);
                }
            }
        }
        if (node.Details is not null)
        {
            foreach (var child in node.Details)
            {
                Collect(child, ref best);
            }
        }
    }

    private static bool IsConditionBranch(EvaluationResults node)
    {
        var path = node.EvaluationPath.ToString();
        return path.EndsWith("/if", StringComparison.Ordinal);
    }

    // The library's schema locations are not reliable under `items`, so the subschema that governs an instance
    // location is found by walking the schema along that location: properties, additionalProperties, items,
    // prefixItems and local $refs. Where a combinator decides (anyOf, oneOf), there is no single answer: null.
    private JsonElement? SchemaForInstance(string pointer)
    {
        JsonElement current = Deref(_schemaRoot);
        foreach (var raw in pointer.TrimStart('#').Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            var seg = raw.Replace("~1", "/").Replace("~0", "~");
            if (current.ValueKind != JsonValueKind.Object)
            {
                return null;
            }
            JsonElement next;
            if (int.TryParse(seg, out var index) && index >= 0)
            {
                if (current.TryGetProperty("prefixItems", out var prefix) && prefix.ValueKind == JsonValueKind.Array && index < prefix.GetArrayLength())
                {
                    next = prefix[index];
                }
                else if (!current.TryGetProperty("items", out next))
                {
                    return null;
                }
            }
            else if (!(current.TryGetProperty("properties", out var props) && props.ValueKind == JsonValueKind.Object && props.TryGetProperty(seg, out next))
                && !current.TryGetProperty("additionalProperties", out next))
            {
                return null;
            }
            current = Deref(next);
        }
        return current;
    }

    private JsonElement Deref(JsonElement schema)
    {
        for (var hops = 0; hops < 16 && schema.ValueKind == JsonValueKind.Object
            && schema.TryGetProperty("$ref", out var reference) && reference.GetString() is { } r && r.StartsWith('#'); hops++)
        {
            if (Resolve(_schemaRoot, r[1..]) is not { } target)
            {
                break;
            }
            schema = target;
        }
        return schema;
    }

    // Prefer the keyword that names the concrete fault over the combinators that merely report a child failed.
    private static int KeywordRank(string keyword) => keyword switch
    {
        "required" => 0,
        // A type mismatch in one anyOf branch says less than what went wrong in the branch whose type matched.
        "type" => 7,
        "enum" or "const" => 2,
        "minimum" or "maximum" or "exclusiveMinimum" or "exclusiveMaximum" => 3,
        "minLength" or "maxLength" or "minItems" or "maxItems" or "pattern" => 4,
        "anyOf" or "oneOf" => 8,
        _ => 6,
    };

    internal static SchemaViolation Describe(string pointer, string keyword, string libraryMessage, JsonElement root, JsonElement? subschema)
    {
        var param = PointerToParam(pointer);
        var value = Resolve(root, pointer);
        switch (keyword)
        {
            case "required":
                var name = FirstMissing(subschema, value);
                if (name is null)
                {
                    var missing = RequiredNames().Match(libraryMessage);
                    name = missing.Success ? missing.Groups[1].Value : "?";
                }
                var full = param is null ? name : $"{param}.{name}";
                return new SchemaViolation($"Missing required parameter: '{full}'.", full, Protocol.ErrorCodes.MissingRequiredParameter);
            case "type":
                return new SchemaViolation(
                    $"Invalid type for '{param}': expected {Expected(subschema)}, but got {Describe(value)} instead.",
                    param, "invalid_type");
            case "enum":
            case "const":
                return new SchemaViolation(
                    $"Invalid value for '{param}': {Short(value)} is not one of the supported values{Supported(subschema)}.", param, Protocol.ErrorCodes.InvalidValue);
            case "minimum":
            case "exclusiveMinimum":
                return new SchemaViolation($"Invalid '{param}': {Short(value)} is below the minimum value{Bound(subschema, keyword, ">=")}.", param, Protocol.ErrorCodes.InvalidValue);
            case "maximum":
            case "exclusiveMaximum":
                return new SchemaViolation($"Invalid '{param}': {Short(value)} is above the maximum value{Bound(subschema, keyword, "<=")}.", param, Protocol.ErrorCodes.InvalidValue);
            case "minItems":
            case "maxItems":
            case "minLength":
            case "maxLength":
                var unit = keyword.EndsWith("Items", StringComparison.Ordinal) ? "item(s)" : "character(s)";
                var limit = subschema is { ValueKind: JsonValueKind.Object } sub && sub.TryGetProperty(keyword, out var n) ? n.GetRawText() : "?";
                var bound = keyword.StartsWith("min", StringComparison.Ordinal) ? "at least" : "at most";
                return new SchemaViolation($"Invalid '{param}': expected {bound} {limit} {unit}.", param, Protocol.ErrorCodes.InvalidValue);
            default:
                return new SchemaViolation(
                    param is null ? $"Invalid request body: {libraryMessage}" : $"Invalid '{param}': {libraryMessage}",
                    param, Protocol.ErrorCodes.InvalidValue);
        }
    }

    /// <summary>JSON Pointer <c>/messages/0/role</c> → OpenAI's <c>messages[0].role</c>.</summary>
    internal static string? PointerToParam(string pointer)
    {
        if (string.IsNullOrEmpty(pointer) || pointer == "/" || pointer == "#")
        {
            return null;
        }
        var sb = new System.Text.StringBuilder();
        foreach (var raw in pointer.TrimStart('#').Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            var seg = raw.Replace("~1", "/").Replace("~0", "~");
            if (seg.Length > 0 && seg.All(char.IsAsciiDigit))
            {
                sb.Append('[').Append(seg).Append(']');
            }
            else
            {
                if (sb.Length > 0)
                {
                    sb.Append('.');
                }
                sb.Append(seg);
            }
        }
        return sb.Length == 0 ? null : sb.ToString();
    }

    private static JsonElement? Resolve(JsonElement root, string pointer)
    {
        var current = root;
        foreach (var raw in pointer.TrimStart('#').Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            var seg = raw.Replace("~1", "/").Replace("~0", "~");
            if (current.ValueKind == JsonValueKind.Object && current.TryGetProperty(seg, out var next))
            {
                current = next;
            }
            else if (current.ValueKind == JsonValueKind.Array && int.TryParse(seg, out var i) && i < current.GetArrayLength())
            {
                current = current[i];
            }
            else
            {
                return null;
            }
        }
        return current;
    }

    private static string Expected(JsonElement? subschema)
    {
        if (subschema is not { ValueKind: JsonValueKind.Object } schema || !schema.TryGetProperty("type", out var type))
        {
            return "a different type";
        }
        var names = (type.ValueKind == JsonValueKind.Array ? type.EnumerateArray().Select(t => t.GetString()) : [type.GetString()])
            .Where(s => s is not null and not "null")
            .Select(s => s switch { "integer" => "an integer", "object" => "an object", "array" => "an array", "boolean" => "a boolean", "number" => "a number", "string" => "a string", _ => s! })
            .ToArray();
        return names.Length == 0 ? "null" : string.Join(" or ", names);
    }

    private static string? FirstMissing(JsonElement? subschema, JsonElement? value)
    {
        if (subschema is not { ValueKind: JsonValueKind.Object } schema || !schema.TryGetProperty("required", out var required)
            || required.ValueKind != JsonValueKind.Array || value is not { ValueKind: JsonValueKind.Object } obj)
        {
            return null;
        }
        foreach (var name in required.EnumerateArray())
        {
            if (name.GetString() is { } n && !obj.TryGetProperty(n, out _))
            {
                return n;
            }
        }
        return null;
    }

    private static string Supported(JsonElement? subschema)
    {
        if (subschema is { ValueKind: JsonValueKind.Object } schema && schema.TryGetProperty("enum", out var values) && values.ValueKind == JsonValueKind.Array)
        {
            return ": " + string.Join(", ", values.EnumerateArray().Select(v => v.GetRawText().Replace('"', '\'')));
        }
        return "";
    }

    private static string Bound(JsonElement? subschema, string keyword, string op) =>
        subschema is { ValueKind: JsonValueKind.Object } schema && schema.TryGetProperty(keyword, out var bound)
            ? $"; expected a value {(keyword.StartsWith("exclusive", StringComparison.Ordinal) ? op.TrimEnd('=') : op)} {bound.GetRawText()}"
            : "";

    private static string Describe(JsonElement? value) => value?.ValueKind switch
    {
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.Null => "null",
        _ => "nothing",
    };

    private static string Short(JsonElement? value)
    {
        if (value is null)
        {
            return "the value";
        }
        var text = value.Value.GetRawText();
        return text.Length > 80 ? text[..80] + "…" : text;
    }

    [GeneratedRegex("\"([^\"]+)\"")]
    private static partial Regex RequiredNames();

}
