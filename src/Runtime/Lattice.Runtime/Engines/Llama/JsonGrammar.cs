using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Lattice.Runtime.Engines.Llama;

/// <summary>
/// Builds llama.cpp GBNF grammars that constrain generation to JSON: any JSON object, or a value that matches a
/// JSON Schema. Supported keywords: <c>type</c> (also as an array), <c>properties</c>, <c>required</c>,
/// <c>additionalProperties</c> (as the value schema of a property-less object), <c>items</c>, <c>prefixItems</c>,
/// <c>minItems</c>/<c>maxItems</c>, <c>minLength</c>/<c>maxLength</c>, <c>enum</c>, <c>const</c>, <c>anyOf</c>/<c>oneOf</c>,
/// <c>allOf</c> (merged when its members are objects) and local <c>$ref</c>s (<c>#</c>, <c>#/$defs/…</c>,
/// <c>#/definitions/…</c>). Anything else falls back to "any JSON value" for that part of the schema.
/// </summary>
/// <remarks>
/// Objects with declared properties only produce those properties: required ones first, then optional ones, each in
/// declaration order. Whitespace is limited to one optional space around <c>{ } [ ] , :</c> so small models cannot loop
/// on it, and numbers have bounded digit counts (still valid JSON).
/// </remarks>
internal sealed class JsonGrammar
{
    /// <summary>Name of the start rule of every grammar built here.</summary>
    public const string RootRule = "root";

    private const int MaxDepth = 48;
    private const int MaxRepetition = 256;

    private static readonly JsonWriterOptions CompactWriter = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static readonly (string Name, string Body)[] Primitives =
    [
        ("ws", "\" \"?"),
        ("json-value", "json-object | json-array | json-string | json-number | json-boolean | json-null"),
        ("json-object", "\"{\" ws ( json-string ws \":\" ws json-value ( ws \",\" ws json-string ws \":\" ws json-value )* )? ws \"}\""),
        ("json-array", "\"[\" ws ( json-value ( ws \",\" ws json-value )* )? ws \"]\""),
        ("json-string", "\"\\\"\" json-char* \"\\\"\""),
        ("json-char", "[^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} )"),
        ("json-number", "\"-\"? ( \"0\" | [1-9] [0-9]{0,15} ) ( \".\" [0-9]{1,15} )? ( [eE] [-+]? [0-9]{1,3} )?"),
        ("json-integer", "\"-\"? ( \"0\" | [1-9] [0-9]{0,15} )"),
        ("json-boolean", "\"true\" | \"false\""),
        ("json-null", "\"null\""),
    ];

    private readonly JsonElement _document;
    private readonly List<(string Name, string Body)> _rules = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _refRules = new(StringComparer.Ordinal);
    private int _depth;

    private JsonGrammar(JsonElement document)
    {
        _document = document;
        foreach (var (name, _) in Primitives)
        {
            _names.Add(name);
        }
        _names.Add(RootRule);
    }

    /// <summary>A grammar for any JSON object (<c>response_format: json_object</c>).</summary>
    public static string ForJsonObject()
    {
        var builder = new JsonGrammar(default);
        return builder.Render("json-object");
    }

    /// <summary>A grammar for values that match <paramref name="schema"/> (<c>response_format: json_schema</c>).</summary>
    public static string ForSchema(JsonElement schema)
    {
        var builder = new JsonGrammar(schema);
        return builder.Render(builder.Visit(schema, "schema"));
    }

    /// <summary>
    /// A grammar for the arguments of one function: its <c>parameters</c> schema, or <c>{}</c> when the function
    /// declares none.
    /// </summary>
    public static string ForFunctionArguments(JsonElement? parameters)
    {
        if (parameters is not { ValueKind: JsonValueKind.Object } schema)
        {
            return new JsonGrammar(default).Render("\"{}\"");
        }
        var builder = new JsonGrammar(schema);
        return builder.Render(builder.Visit(schema, "arguments"));
    }

    /// <summary>
    /// A grammar for a call of any one of <paramref name="functions"/>:
    /// <c>{"name": "&lt;name&gt;", "arguments": &lt;arguments&gt;}</c>.
    /// </summary>
    public static string ForAnyFunctionCall(IReadOnlyList<(string Name, JsonElement? Parameters)> functions)
    {
        var builder = new JsonGrammar(default);
        var alternatives = new List<string>(functions.Count);
        foreach (var (name, parameters) in functions)
        {
            string arguments;
            if (parameters is { ValueKind: JsonValueKind.Object } schema)
            {
                // Each function's $refs resolve against its own parameters schema.
                var nested = new JsonGrammar(schema);
                nested._names.UnionWith(builder._names);
                arguments = nested.Visit(schema, "fn-" + name);
                builder._rules.AddRange(nested._rules);
                builder._names.UnionWith(nested._names);
            }
            else
            {
                arguments = "\"{}\"";
            }
            alternatives.Add($"{Literal(JsonString(name))} ws \",\" ws \"\\\"arguments\\\"\" ws \":\" ws {arguments}");
        }
        var call = $"\"{{\" ws \"\\\"name\\\"\" ws \":\" ws ( {string.Join(" | ", alternatives)} ) ws \"}}\"";
        return builder.Render(call);
    }

    private string Render(string rootExpression)
    {
        var text = new StringBuilder();
        text.Append(RootRule).Append(" ::= ").Append(rootExpression).Append('\n');
        foreach (var (name, body) in _rules)
        {
            text.Append(name).Append(" ::= ").Append(body).Append('\n');
        }
        foreach (var (name, body) in Primitives)
        {
            text.Append(name).Append(" ::= ").Append(body).Append('\n');
        }
        return text.ToString();
    }

    /// <summary>Returns a GBNF expression (a rule name or a parenthesised group) for <paramref name="schema"/>.</summary>
    private string Visit(JsonElement schema, string hint)
    {
        if (_depth >= MaxDepth)
        {
            return "json-value";
        }
        _depth++;
        try
        {
            return VisitCore(schema, hint);
        }
        finally
        {
            _depth--;
        }
    }

    private string VisitCore(JsonElement schema, string hint)
    {
        if (schema.ValueKind != JsonValueKind.Object)
        {
            return "json-value";
        }

        if (schema.TryGetProperty("$ref", out var reference) && reference.ValueKind == JsonValueKind.String)
        {
            return Ref(reference.GetString()!);
        }

        if (schema.TryGetProperty("const", out var constant))
        {
            return Literal(CompactJson(constant));
        }

        if (schema.TryGetProperty("enum", out var values) && values.ValueKind == JsonValueKind.Array && values.GetArrayLength() > 0)
        {
            return Group(values.EnumerateArray().Select(v => Literal(CompactJson(v))));
        }

        foreach (var keyword in (ReadOnlySpan<string>)["anyOf", "oneOf"])
        {
            if (schema.TryGetProperty(keyword, out var options) && options.ValueKind == JsonValueKind.Array && options.GetArrayLength() > 0)
            {
                var index = 0;
                return Group(options.EnumerateArray().Select(o => Visit(o, $"{hint}-{index++}")));
            }
        }

        if (schema.TryGetProperty("allOf", out var all) && all.ValueKind == JsonValueKind.Array && all.GetArrayLength() > 0)
        {
            return AllOf(schema, all, hint);
        }

        if (schema.TryGetProperty("type", out var type))
        {
            if (type.ValueKind == JsonValueKind.String)
            {
                return ForType(type.GetString()!, schema, hint);
            }
            if (type.ValueKind == JsonValueKind.Array && type.GetArrayLength() > 0)
            {
                return Group(type.EnumerateArray()
                    .Select(t => t.ValueKind == JsonValueKind.String ? ForType(t.GetString()!, schema, hint) : "json-value")
                    .Distinct(StringComparer.Ordinal));
            }
            return "json-value";
        }

        if (schema.TryGetProperty("properties", out _))
        {
            return ForType("object", schema, hint);
        }
        if (schema.TryGetProperty("items", out _) || schema.TryGetProperty("prefixItems", out _))
        {
            return ForType("array", schema, hint);
        }
        return "json-value";
    }

    private string ForType(string type, JsonElement schema, string hint) => type switch
    {
        "object" => ObjectRule(CollectProperties(schema), Required(schema), AdditionalProperties(schema), hint),
        "array" => ArrayRule(schema, hint),
        "string" => StringRule(schema),
        "number" => "json-number",
        "integer" => "json-integer",
        "boolean" => "json-boolean",
        "null" => "json-null",
        _ => "json-value",
    };

    private static List<(string Name, JsonElement Schema)> CollectProperties(JsonElement schema)
    {
        var result = new List<(string, JsonElement)>();
        if (schema.TryGetProperty("properties", out var properties) && properties.ValueKind == JsonValueKind.Object)
        {
            foreach (var property in properties.EnumerateObject())
            {
                result.Add((property.Name, property.Value));
            }
        }
        return result;
    }

    private static List<string> Required(JsonElement schema)
    {
        var result = new List<string>();
        if (schema.TryGetProperty("required", out var required) && required.ValueKind == JsonValueKind.Array)
        {
            foreach (var item in required.EnumerateArray())
            {
                if (item.ValueKind == JsonValueKind.String && !result.Contains(item.GetString()!, StringComparer.Ordinal))
                {
                    result.Add(item.GetString()!);
                }
            }
        }
        return result;
    }

    private static JsonElement? AdditionalProperties(JsonElement schema) =>
        schema.TryGetProperty("additionalProperties", out var additional) ? additional : null;

    private string AllOf(JsonElement schema, JsonElement all, string hint)
    {
        // Merge object members (resolving $refs); anything that is not an object schema makes the merge fall back.
        var properties = new List<(string Name, JsonElement Schema)>();
        var required = new List<string>();
        var parts = new List<JsonElement> { schema };
        parts.AddRange(all.EnumerateArray());
        var objects = 0;
        for (var index = 0; index < parts.Count; index++)
        {
            var part = parts[index];
            for (var hops = 0; hops < 8 && part.ValueKind == JsonValueKind.Object && part.TryGetProperty("$ref", out var r) && r.ValueKind == JsonValueKind.String; hops++)
            {
                if (ResolvePointer(r.GetString()!) is not { } target)
                {
                    return "json-value";
                }
                part = target;
            }
            if (part.ValueKind != JsonValueKind.Object)
            {
                continue;
            }
            var isObject = part.TryGetProperty("properties", out _)
                || (part.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String && t.GetString() == "object");
            if (!isObject)
            {
                // The schema holding the allOf, or a member that only restates keywords we do not model (e.g. a
                // description), does not break the merge.
                if (index == 0 || !HasShapeKeywords(part))
                {
                    continue;
                }
                return all.GetArrayLength() == 1 ? Visit(all[0], hint) : "json-value";
            }
            objects++;
            foreach (var property in CollectProperties(part))
            {
                if (properties.FindIndex(p => p.Name == property.Name) < 0)
                {
                    properties.Add(property);
                }
            }
            foreach (var name in Required(part))
            {
                if (!required.Contains(name, StringComparer.Ordinal))
                {
                    required.Add(name);
                }
            }
        }
        return objects == 0 ? "json-value" : ObjectRule(properties, required, null, hint);
    }

    private static bool HasShapeKeywords(JsonElement schema)
    {
        foreach (var keyword in (ReadOnlySpan<string>)["type", "enum", "const", "anyOf", "oneOf", "allOf", "items", "prefixItems", "$ref"])
        {
            if (schema.TryGetProperty(keyword, out _))
            {
                return true;
            }
        }
        return false;
    }

    private string ObjectRule(List<(string Name, JsonElement Schema)> properties, List<string> required, JsonElement? additional, string hint)
    {
        if (properties.Count == 0 && required.Count == 0)
        {
            if (additional is { ValueKind: JsonValueKind.Object } valueSchema && HasShapeKeywords(valueSchema))
            {
                var map = NewRule(hint + "-map");
                var value = Visit(valueSchema, hint + "-value");
                Define(map, $"\"{{\" ws ( json-string ws \":\" ws {value} ( ws \",\" ws json-string ws \":\" ws {value} )* )? ws \"}}\"");
                return map;
            }
            if (additional is { ValueKind: JsonValueKind.False })
            {
                return "\"{}\"";
            }
            return "json-object";
        }

        var rule = NewRule(hint);
        var members = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, propertySchema) in properties)
        {
            if (members.ContainsKey(name))
            {
                continue;
            }
            var member = NewRule($"{hint}-{name}-kv");
            var value = Visit(propertySchema, $"{hint}-{name}");
            Define(member, $"{Literal(JsonString(name))} ws \":\" ws {value}");
            members[name] = member;
        }
        foreach (var name in required)
        {
            if (!members.ContainsKey(name))
            {
                var member = NewRule($"{hint}-{name}-kv");
                Define(member, $"{Literal(JsonString(name))} ws \":\" ws json-value");
                members[name] = member;
            }
        }

        var requiredMembers = required.Select(n => members[n]).ToList();
        var optionalMembers = properties.Select(p => p.Name).Distinct(StringComparer.Ordinal)
            .Where(n => !required.Contains(n, StringComparer.Ordinal)).Select(n => members[n]).ToList();

        var body = new StringBuilder("\"{\" ws ");
        if (requiredMembers.Count > 0)
        {
            body.Append(string.Join(" ws \",\" ws ", requiredMembers));
            foreach (var optional in optionalMembers)
            {
                body.Append(" ( ws \",\" ws ").Append(optional).Append(" )?");
            }
        }
        else
        {
            // Any subset of the optional members, in order, with commas only between present members:
            // tail-i ::= ( "," ws member-i )? tail-(i+1); start with some member-i followed by tail-(i+1).
            var tails = new string[optionalMembers.Count + 1];
            tails[optionalMembers.Count] = "";
            for (var i = optionalMembers.Count - 1; i >= 1; i--)
            {
                var tail = NewRule($"{hint}-rest{i}");
                Define(tail, $"( ws \",\" ws {optionalMembers[i]} )? {tails[i + 1]}".TrimEnd());
                tails[i] = tail;
            }
            var starts = optionalMembers.Select((m, i) => $"{m} {tails[i + 1]}".TrimEnd());
            body.Append("( ").Append(string.Join(" | ", starts)).Append(" )?");
        }
        body.Append(" ws \"}\"");
        Define(rule, body.ToString());
        return rule;
    }

    private string ArrayRule(JsonElement schema, string hint)
    {
        var rule = NewRule(hint);
        if (schema.TryGetProperty("prefixItems", out var prefix) && prefix.ValueKind == JsonValueKind.Array && prefix.GetArrayLength() > 0)
        {
            var index = 0;
            var items = prefix.EnumerateArray().Select(p => Visit(p, $"{hint}-{index++}")).ToList();
            Define(rule, $"\"[\" ws {string.Join(" ws \",\" ws ", items)} ws \"]\"");
            return rule;
        }

        var item = schema.TryGetProperty("items", out var itemSchema) ? Visit(itemSchema, hint + "-item") : "json-value";
        var min = Math.Min(ReadCount(schema, "minItems") ?? 0, MaxRepetition);
        var max = ReadCount(schema, "maxItems") is { } m && m <= MaxRepetition ? Math.Max(m, min) : (int?)null;
        // More items after the first: none when at most one item is allowed (GBNF has no zero-count repetition).
        var more = max == 1 ? "" : $" ( ws \",\" ws {item} ){Repeat(Math.Max(min - 1, 0), max - 1)}";
        string body;
        if (max == 0)
        {
            body = "\"[\" ws \"]\"";
        }
        else if (min == 0)
        {
            body = $"\"[\" ws ( {item}{more} )? ws \"]\"";
        }
        else
        {
            body = $"\"[\" ws {item}{more} ws \"]\"";
        }
        Define(rule, body);
        return rule;
    }

    private static string StringRule(JsonElement schema)
    {
        var min = Math.Min(ReadCount(schema, "minLength") ?? 0, MaxRepetition);
        var max = ReadCount(schema, "maxLength") is { } m && m <= MaxRepetition ? Math.Max(m, min) : (int?)null;
        if (min == 0 && max is null)
        {
            return "json-string";
        }
        if (max == 0)
        {
            return Literal("\"\"");
        }
        return $"( \"\\\"\" json-char{Repeat(min, max)} \"\\\"\" )";
    }

    private static string Repeat(int min, int? max) => (min, max) switch
    {
        (0, null) => "*",
        (1, null) => "+",
        (_, null) => $"{{{min},}}",
        _ when min == max => $"{{{min}}}",
        _ => $"{{{min},{max}}}",
    };

    private static int? ReadCount(JsonElement schema, string keyword) =>
        schema.TryGetProperty(keyword, out var value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var count) && count >= 0
            ? count
            : null;

    private string Ref(string reference)
    {
        if (_refRules.TryGetValue(reference, out var existing))
        {
            return existing;
        }
        if (ResolvePointer(reference) is not { } target)
        {
            return "json-value";
        }
        var hint = reference == "#" ? "root-ref" : "ref-" + reference[(reference.LastIndexOf('/') + 1)..];
        var rule = NewRule(hint);
        _refRules[reference] = rule; // registered first so recursive schemas terminate
        Define(rule, Visit(target, hint));
        return rule;
    }

    private JsonElement? ResolvePointer(string reference)
    {
        if (_document.ValueKind != JsonValueKind.Object || !reference.StartsWith('#'))
        {
            return null;
        }
        var current = _document;
        var pointer = reference[1..];
        if (pointer.Length == 0)
        {
            return current;
        }
        if (!pointer.StartsWith('/'))
        {
            return null;
        }
        foreach (var rawSegment in pointer[1..].Split('/'))
        {
            var segment = Uri.UnescapeDataString(rawSegment).Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            if (current.ValueKind == JsonValueKind.Object && current.TryGetProperty(segment, out var next))
            {
                current = next;
            }
            else if (current.ValueKind == JsonValueKind.Array && int.TryParse(segment, NumberStyles.None, CultureInfo.InvariantCulture, out var index) && index < current.GetArrayLength())
            {
                current = current[index];
            }
            else
            {
                return null;
            }
        }
        return current;
    }

    private string NewRule(string hint)
    {
        var clean = new StringBuilder();
        foreach (var c in hint)
        {
            clean.Append(char.IsAsciiLetterOrDigit(c) ? c : '-');
        }
        var baseName = "s-" + clean.ToString().Trim('-');
        if (baseName.Length > 48)
        {
            baseName = baseName[..48].TrimEnd('-');
        }
        var name = baseName;
        for (var i = 2; !_names.Add(name); i++)
        {
            name = baseName + "-" + i.ToString(CultureInfo.InvariantCulture);
        }
        return name;
    }

    private void Define(string name, string body) => _rules.Add((name, body));

    private static string Group(IEnumerable<string> alternatives)
    {
        var list = alternatives.ToList();
        return list.Count == 1 ? list[0] : "( " + string.Join(" | ", list) + " )";
    }

    private static string JsonString(string value) => JsonSerializer.Serialize(value, JsonSerializerOptions);

    private static readonly JsonSerializerOptions JsonSerializerOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static string CompactJson(JsonElement value)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, CompactWriter))
        {
            value.WriteTo(writer);
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>A GBNF string literal that matches <paramref name="text"/> exactly.</summary>
    internal static string Literal(string text)
    {
        var result = new StringBuilder(text.Length + 2);
        result.Append('"');
        foreach (var c in text)
        {
            switch (c)
            {
                case '"': result.Append("\\\""); break;
                case '\\': result.Append("\\\\"); break;
                case '\n': result.Append("\\n"); break;
                case '\r': result.Append("\\r"); break;
                case '\t': result.Append("\\t"); break;
                default:
                    if (c < 0x20 || c == 0x7F)
                    {
                        result.Append("\\x").Append(((int)c).ToString("X2", CultureInfo.InvariantCulture));
                    }
                    else
                    {
                        result.Append(c);
                    }
                    break;
            }
        }
        result.Append('"');
        return result.ToString();
    }
}
