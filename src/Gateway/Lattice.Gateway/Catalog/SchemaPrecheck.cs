using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace Lattice.Gateway.Catalog;

/// <summary>The answer of <see cref="SchemaPrecheck"/>: only <see cref="Valid"/> and <see cref="Invalid"/> are certain.</summary>
internal enum PrecheckVerdict { Valid, Invalid, Unknown }

/// <summary>
/// An allocation-free evaluator for the subset of JSON Schema 2020-12 that the built-in task classes use, so valid
/// input (the hot path) does not pay for JsonSchema.Net's evaluation tree. It answers <see cref="PrecheckVerdict.Valid"/>
/// only when the schema certainly accepts the instance; whenever the library could judge differently (duplicate
/// property names, escaped names, numbers at the edge of decimal/double precision, non-ASCII string lengths, integers
/// written as <c>1.0</c>) it answers <see cref="PrecheckVerdict.Unknown"/> and the caller asks the library.
/// A schema using anything outside the subset (<c>$id</c>, <c>format</c>, <c>pattern</c>, other drafts, …) is not
/// compiled at all.
/// </summary>
internal sealed class SchemaPrecheck
{
    private const string Draft202012 = "https://json-schema.org/draft/2020-12/schema";
    private const int MaxDepth = 128;
    private const int MaxPropertiesForDuplicateCheck = 32;

    private readonly Node _root;

    private SchemaPrecheck(Node root) => _root = root;

    /// <summary>Compiles <paramref name="schema"/>, or returns null when it uses anything this evaluator does not handle exactly.</summary>
    public static SchemaPrecheck? TryCompile(JsonElement schema)
    {
        if (schema.ValueKind != JsonValueKind.Object
            || !schema.TryGetProperty("$schema", out var dialect) || dialect.ValueKind != JsonValueKind.String || !dialect.ValueEquals(Draft202012))
        {
            return null;
        }
        if (DeclaresResources(schema))
        {
            return null;
        }
        var compiler = new Compiler(schema);
        var root = compiler.Compile(schema, "");
        return root is null || !compiler.Complete() ? null : new SchemaPrecheck(root);
    }

    public PrecheckVerdict Check(JsonElement instance) => _root.Check(instance, 0);

    // Embedded resources and anchors change what a reference means; such schemas stay with the library.
    private static bool DeclaresResources(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    if (property.NameEquals("$id") || property.NameEquals("$anchor") || property.NameEquals("$dynamicAnchor")
                        || property.NameEquals("$recursiveAnchor") || DeclaresResources(property.Value))
                    {
                        return true;
                    }
                }
                return false;
            case JsonValueKind.Array:
                foreach (var item in element.EnumerateArray())
                {
                    if (DeclaresResources(item))
                    {
                        return true;
                    }
                }
                return false;
            default:
                return false;
        }
    }

    [Flags]
    private enum Types
    {
        None = 0,
        Null = 1,
        Boolean = 2,
        Object = 4,
        Array = 8,
        Number = 16,
        Integer = 32,
        String = 64,
    }

    private readonly record struct Bound(decimal Decimal, double Double);

    private sealed class Node
    {
        public bool? Constant;
        public Types Type;
        public string[]? Enum;
        public Bound? Minimum, Maximum, ExclusiveMinimum, ExclusiveMaximum;
        public long? MinLength, MaxLength, MinItems, MaxItems;
        public byte[][]? Required;
        public byte[][]? PropertyNames;
        public Node[]? PropertySchemas;
        public Node? AdditionalProperties;
        public Node? Items;
        public Node[]? AllOf, AnyOf, OneOf;
        public Node? Not, If, Then, Else;
        public Node? Ref;

        public PrecheckVerdict Check(JsonElement instance, int depth)
        {
            if (Constant is { } constant)
            {
                return constant ? PrecheckVerdict.Valid : PrecheckVerdict.Invalid;
            }
            if (depth > MaxDepth)
            {
                return PrecheckVerdict.Unknown;
            }
            var verdict = PrecheckVerdict.Valid;
            if (!Merge(ref verdict, CheckType(instance))
                || !Merge(ref verdict, CheckEnum(instance))
                || !Merge(ref verdict, instance.ValueKind switch
                {
                    JsonValueKind.Number => CheckNumber(instance),
                    JsonValueKind.String => CheckString(instance),
                    JsonValueKind.Array => CheckArray(instance, depth),
                    JsonValueKind.Object => CheckObject(instance, depth),
                    _ => PrecheckVerdict.Valid,
                })
                || !Merge(ref verdict, Ref?.Check(instance, depth + 1) ?? PrecheckVerdict.Valid)
                || !Merge(ref verdict, CheckCombinators(instance, depth)))
            {
                return PrecheckVerdict.Invalid;
            }
            return verdict;
        }

        // Returns false when the result is certainly invalid, so the caller can stop.
        private static bool Merge(ref PrecheckVerdict verdict, PrecheckVerdict next)
        {
            if (next == PrecheckVerdict.Invalid)
            {
                return false;
            }
            if (next == PrecheckVerdict.Unknown)
            {
                verdict = PrecheckVerdict.Unknown;
            }
            return true;
        }

        private PrecheckVerdict CheckType(JsonElement instance)
        {
            if (Type == Types.None)
            {
                return PrecheckVerdict.Valid;
            }
            var actual = instance.ValueKind switch
            {
                JsonValueKind.Null => Types.Null,
                JsonValueKind.True or JsonValueKind.False => Types.Boolean,
                JsonValueKind.Object => Types.Object,
                JsonValueKind.Array => Types.Array,
                JsonValueKind.String => Types.String,
                JsonValueKind.Number => Types.Number,
                _ => Types.None,
            };
            if ((Type & actual) != 0)
            {
                return PrecheckVerdict.Valid;
            }
            if (actual == Types.Number && (Type & Types.Integer) != 0)
            {
                // A plain integer literal is an integer for every reading; 1.0, 1e2 or 2^70 are left to the library.
                return instance.TryGetInt64(out _) ? PrecheckVerdict.Valid : PrecheckVerdict.Unknown;
            }
            return PrecheckVerdict.Invalid;
        }

        private PrecheckVerdict CheckEnum(JsonElement instance)
        {
            if (Enum is null)
            {
                return PrecheckVerdict.Valid;
            }
            if (instance.ValueKind != JsonValueKind.String)
            {
                return PrecheckVerdict.Invalid;
            }
            foreach (var value in Enum)
            {
                if (instance.ValueEquals(value))
                {
                    return PrecheckVerdict.Valid;
                }
            }
            return PrecheckVerdict.Invalid;
        }

        private PrecheckVerdict CheckNumber(JsonElement instance)
        {
            if (Minimum is null && Maximum is null && ExclusiveMinimum is null && ExclusiveMaximum is null)
            {
                return PrecheckVerdict.Valid;
            }
            // Decide only where decimal and double agree, whichever the library uses.
            if (!instance.TryGetDecimal(out var m) || !instance.TryGetDouble(out var d) || !double.IsFinite(d))
            {
                return PrecheckVerdict.Unknown;
            }
            var verdict = PrecheckVerdict.Valid;
            if (!Merge(ref verdict, Compare(Minimum, m, d, (x, b) => x >= b, (x, b) => x >= b))
                || !Merge(ref verdict, Compare(Maximum, m, d, (x, b) => x <= b, (x, b) => x <= b))
                || !Merge(ref verdict, Compare(ExclusiveMinimum, m, d, (x, b) => x > b, (x, b) => x > b))
                || !Merge(ref verdict, Compare(ExclusiveMaximum, m, d, (x, b) => x < b, (x, b) => x < b)))
            {
                return PrecheckVerdict.Invalid;
            }
            return verdict;
        }

        private static PrecheckVerdict Compare(Bound? bound, decimal m, double d, Func<decimal, decimal, bool> byDecimal, Func<double, double, bool> byDouble)
        {
            if (bound is not { } b)
            {
                return PrecheckVerdict.Valid;
            }
            var a = byDecimal(m, b.Decimal);
            return a != byDouble(d, b.Double) ? PrecheckVerdict.Unknown : a ? PrecheckVerdict.Valid : PrecheckVerdict.Invalid;
        }

        private PrecheckVerdict CheckString(JsonElement instance)
        {
            if (MinLength is null && MaxLength is null)
            {
                return PrecheckVerdict.Valid;
            }
            // The raw token without its quotes: at least as many bytes as UTF-16 units, code points or graphemes.
            var raw = JsonMarshal.GetRawUtf8Value(instance);
            raw = raw[1..^1];
            // Printable ASCII without escapes (control characters are always escaped): one character per byte for every reading.
            var simple = raw.IndexOf((byte)'\\') < 0 && Ascii.IsValid(raw);
            var verdict = PrecheckVerdict.Valid;
            if (MinLength is { } min)
            {
                if (raw.Length == 0)
                {
                    verdict = min > 0 ? PrecheckVerdict.Invalid : verdict;
                }
                else if (!(min <= 1 || (simple && raw.Length >= min)))
                {
                    verdict = simple ? PrecheckVerdict.Invalid : PrecheckVerdict.Unknown;
                }
            }
            if (verdict != PrecheckVerdict.Invalid && MaxLength is { } max && raw.Length > max)
            {
                verdict = simple ? PrecheckVerdict.Invalid : PrecheckVerdict.Unknown;
            }
            return verdict;
        }

        private PrecheckVerdict CheckArray(JsonElement instance, int depth)
        {
            var length = instance.GetArrayLength();
            if ((MinItems is { } min && length < min) || (MaxItems is { } max && length > max))
            {
                return PrecheckVerdict.Invalid;
            }
            var verdict = PrecheckVerdict.Valid;
            if (Items is not null)
            {
                foreach (var item in instance.EnumerateArray())
                {
                    if (!Merge(ref verdict, Items.Check(item, depth + 1)))
                    {
                        return PrecheckVerdict.Invalid;
                    }
                }
            }
            return verdict;
        }

        private PrecheckVerdict CheckObject(JsonElement instance, int depth)
        {
            var verdict = PrecheckVerdict.Valid;
            if (Required is not null)
            {
                foreach (var name in Required)
                {
                    if (!instance.TryGetProperty(name, out _))
                    {
                        return PrecheckVerdict.Invalid;
                    }
                }
            }
            if (PropertyNames is null && AdditionalProperties is null)
            {
                return verdict;
            }

            var declared = PropertyNames ?? [];
            Span<bool> seen = declared.Length <= 64 ? stackalloc bool[declared.Length] : new bool[declared.Length];
            var undeclared = 0;
            foreach (var property in instance.EnumerateObject())
            {
                var name = JsonMarshal.GetRawUtf8PropertyName(property);
                if (name.IndexOf((byte)'\\') >= 0)
                {
                    // An escaped name may equal a declared one; leave it to the library.
                    return PrecheckVerdict.Unknown;
                }
                var index = IndexOf(declared, name);
                Node? schema;
                if (index >= 0)
                {
                    if (seen[index])
                    {
                        // Duplicate names: which one the library looks at is its business.
                        return PrecheckVerdict.Unknown;
                    }
                    seen[index] = true;
                    schema = PropertySchemas![index];
                }
                else
                {
                    schema = AdditionalProperties;
                    if (schema is not null && ++undeclared > MaxPropertiesForDuplicateCheck)
                    {
                        return PrecheckVerdict.Unknown;
                    }
                }
                if (schema is not null && !Merge(ref verdict, schema.Check(property.Value, depth + 1)))
                {
                    return PrecheckVerdict.Invalid;
                }
            }
            if (AdditionalProperties is not null && undeclared > 1 && HasDuplicateUndeclared(instance, declared))
            {
                return PrecheckVerdict.Unknown;
            }
            return verdict;
        }

        private static int IndexOf(byte[][] names, ReadOnlySpan<byte> name)
        {
            for (var i = 0; i < names.Length; i++)
            {
                if (name.SequenceEqual(names[i]))
                {
                    return i;
                }
            }
            return -1;
        }

        private static bool HasDuplicateUndeclared(JsonElement instance, byte[][] declared)
        {
            var i = 0;
            foreach (var a in instance.EnumerateObject())
            {
                var nameA = JsonMarshal.GetRawUtf8PropertyName(a);
                var j = 0;
                foreach (var b in instance.EnumerateObject())
                {
                    if (j++ > i && IndexOf(declared, nameA) < 0 && nameA.SequenceEqual(JsonMarshal.GetRawUtf8PropertyName(b)))
                    {
                        return true;
                    }
                }
                i++;
            }
            return false;
        }

        private PrecheckVerdict CheckCombinators(JsonElement instance, int depth)
        {
            var verdict = PrecheckVerdict.Valid;
            if (AllOf is not null)
            {
                foreach (var schema in AllOf)
                {
                    if (!Merge(ref verdict, schema.Check(instance, depth + 1)))
                    {
                        return PrecheckVerdict.Invalid;
                    }
                }
            }
            if (AnyOf is not null)
            {
                var any = PrecheckVerdict.Invalid;
                foreach (var schema in AnyOf)
                {
                    var one = schema.Check(instance, depth + 1);
                    if (one == PrecheckVerdict.Valid)
                    {
                        any = PrecheckVerdict.Valid;
                        break;
                    }
                    if (one == PrecheckVerdict.Unknown)
                    {
                        any = PrecheckVerdict.Unknown;
                    }
                }
                if (!Merge(ref verdict, any))
                {
                    return PrecheckVerdict.Invalid;
                }
            }
            if (OneOf is not null)
            {
                int valid = 0, unknown = 0;
                foreach (var schema in OneOf)
                {
                    switch (schema.Check(instance, depth + 1))
                    {
                        case PrecheckVerdict.Valid: valid++; break;
                        case PrecheckVerdict.Unknown: unknown++; break;
                    }
                }
                var one = unknown > 0 ? (valid > 1 ? PrecheckVerdict.Invalid : PrecheckVerdict.Unknown)
                    : valid == 1 ? PrecheckVerdict.Valid : PrecheckVerdict.Invalid;
                if (!Merge(ref verdict, one))
                {
                    return PrecheckVerdict.Invalid;
                }
            }
            if (Not is not null)
            {
                var not = Not.Check(instance, depth + 1) switch
                {
                    PrecheckVerdict.Valid => PrecheckVerdict.Invalid,
                    PrecheckVerdict.Invalid => PrecheckVerdict.Valid,
                    _ => PrecheckVerdict.Unknown,
                };
                if (!Merge(ref verdict, not))
                {
                    return PrecheckVerdict.Invalid;
                }
            }
            if (If is not null)
            {
                var branch = If.Check(instance, depth + 1) switch
                {
                    PrecheckVerdict.Valid => Then?.Check(instance, depth + 1) ?? PrecheckVerdict.Valid,
                    PrecheckVerdict.Invalid => Else?.Check(instance, depth + 1) ?? PrecheckVerdict.Valid,
                    _ => PrecheckVerdict.Unknown,
                };
                if (!Merge(ref verdict, branch))
                {
                    return PrecheckVerdict.Invalid;
                }
            }
            return verdict;
        }
    }

    /// <summary>Turns schema JSON into nodes; any keyword or value it is not sure about makes the whole schema uncompiled.</summary>
    private sealed class Compiler(JsonElement root)
    {
        private readonly Dictionary<string, Node> _byPointer = new(StringComparer.Ordinal);
        private readonly Queue<(string Pointer, Node Node)> _pendingRefs = new();
        private bool _failed;

        public bool Complete()
        {
            while (!_failed && _pendingRefs.TryDequeue(out var pending))
            {
                if (Resolve(pending.Pointer) is not { } target || Compile(target, pending.Pointer) is not { } node)
                {
                    return false;
                }
                pending.Node.Ref = node;
            }
            return !_failed;
        }

        public Node? Compile(JsonElement schema, string pointer)
        {
            if (_byPointer.TryGetValue(pointer, out var existing))
            {
                return existing;
            }
            var node = new Node();
            _byPointer[pointer] = node;
            if (schema.ValueKind is JsonValueKind.True or JsonValueKind.False)
            {
                node.Constant = schema.ValueKind == JsonValueKind.True;
                return node;
            }
            if (schema.ValueKind != JsonValueKind.Object)
            {
                return Fail();
            }
            foreach (var keyword in schema.EnumerateObject())
            {
                var value = keyword.Value;
                var at = pointer + "/" + Escape(keyword.Name);
                var ok = keyword.Name switch
                {
                    "$schema" => pointer.Length == 0 && value.ValueKind == JsonValueKind.String && value.ValueEquals(Draft202012),
                    "title" or "description" or "$comment" => value.ValueKind == JsonValueKind.String,
                    "default" or "examples" => true,
                    "$defs" => value.ValueKind == JsonValueKind.Object, // compiled only where referenced
                    "type" => TryTypes(value, out node.Type),
                    "enum" => TryStrings(value, out node.Enum),
                    "const" => value.ValueKind == JsonValueKind.String && (node.Enum = [value.GetString()!]) is not null && !schema.TryGetProperty("enum", out _),
                    "minimum" => TryBound(value, out node.Minimum),
                    "maximum" => TryBound(value, out node.Maximum),
                    "exclusiveMinimum" => TryBound(value, out node.ExclusiveMinimum),
                    "exclusiveMaximum" => TryBound(value, out node.ExclusiveMaximum),
                    "minLength" => TryCount(value, out node.MinLength),
                    "maxLength" => TryCount(value, out node.MaxLength),
                    "minItems" => TryCount(value, out node.MinItems),
                    "maxItems" => TryCount(value, out node.MaxItems),
                    "required" => TryNames(value, out node.Required),
                    "properties" => TryProperties(value, at, node),
                    "additionalProperties" => (node.AdditionalProperties = Compile(value, at)) is not null,
                    "items" => (node.Items = Compile(value, at)) is not null,
                    "allOf" => TryList(value, at, out node.AllOf),
                    "anyOf" => TryList(value, at, out node.AnyOf),
                    "oneOf" => TryList(value, at, out node.OneOf),
                    "not" => (node.Not = Compile(value, at)) is not null,
                    "if" => (node.If = Compile(value, at)) is not null,
                    "then" => schema.TryGetProperty("if", out _) && (node.Then = Compile(value, at)) is not null,
                    "else" => schema.TryGetProperty("if", out _) && (node.Else = Compile(value, at)) is not null,
                    "$ref" => TryRef(value, node),
                    _ => false, // $id, $anchor, $dynamicRef, format, pattern, prefixItems, unevaluated*, …
                };
                if (!ok || _failed)
                {
                    return Fail();
                }
            }
            return node;
        }

        private Node? Fail()
        {
            _failed = true;
            return null;
        }

        private bool TryRef(JsonElement value, Node node)
        {
            if (value.ValueKind != JsonValueKind.String || value.GetString() is not { } reference || !reference.StartsWith('#'))
            {
                return false;
            }
            var pointer = Uri.UnescapeDataString(reference[1..]);
            if (pointer.Length > 0 && pointer[0] != '/')
            {
                return false; // an anchor name
            }
            _pendingRefs.Enqueue((pointer, node));
            return true;
        }

        private JsonElement? Resolve(string pointer)
        {
            var current = root;
            foreach (var raw in pointer.Split('/', StringSplitOptions.RemoveEmptyEntries))
            {
                var segment = raw.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
                if (current.ValueKind == JsonValueKind.Object && current.TryGetProperty(segment, out var next))
                {
                    current = next;
                }
                else if (current.ValueKind == JsonValueKind.Array && int.TryParse(segment, NumberStyles.None, CultureInfo.InvariantCulture, out var i) && i < current.GetArrayLength())
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

        private static string Escape(string name) => name.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);

        private bool TryProperties(JsonElement value, string at, Node node)
        {
            if (value.ValueKind != JsonValueKind.Object)
            {
                return false;
            }
            var names = new List<byte[]>();
            var schemas = new List<Node>();
            foreach (var property in value.EnumerateObject())
            {
                if (Compile(property.Value, at + "/" + Escape(property.Name)) is not { } child)
                {
                    return false;
                }
                names.Add(Encoding.UTF8.GetBytes(property.Name));
                schemas.Add(child);
            }
            node.PropertyNames = [.. names];
            node.PropertySchemas = [.. schemas];
            return true;
        }

        private bool TryList(JsonElement value, string at, out Node[]? nodes)
        {
            nodes = null;
            if (value.ValueKind != JsonValueKind.Array || value.GetArrayLength() == 0)
            {
                return false;
            }
            var list = new List<Node>();
            var i = 0;
            foreach (var item in value.EnumerateArray())
            {
                if (Compile(item, at + "/" + i++.ToString(CultureInfo.InvariantCulture)) is not { } child)
                {
                    return false;
                }
                list.Add(child);
            }
            nodes = [.. list];
            return true;
        }

        private static bool TryTypes(JsonElement value, out Types types)
        {
            types = Types.None;
            if (value.ValueKind == JsonValueKind.String)
            {
                types = TypeOf(value.GetString());
                return types != Types.None;
            }
            if (value.ValueKind != JsonValueKind.Array || value.GetArrayLength() == 0)
            {
                return false;
            }
            foreach (var item in value.EnumerateArray())
            {
                var one = item.ValueKind == JsonValueKind.String ? TypeOf(item.GetString()) : Types.None;
                if (one == Types.None)
                {
                    return false;
                }
                types |= one;
            }
            return true;
        }

        private static Types TypeOf(string? name) => name switch
        {
            "null" => Types.Null,
            "boolean" => Types.Boolean,
            "object" => Types.Object,
            "array" => Types.Array,
            "number" => Types.Number,
            "integer" => Types.Integer,
            "string" => Types.String,
            _ => Types.None,
        };

        private static bool TryStrings(JsonElement value, out string[]? strings)
        {
            strings = null;
            if (value.ValueKind != JsonValueKind.Array || value.GetArrayLength() == 0)
            {
                return false;
            }
            var list = new List<string>();
            foreach (var item in value.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.String)
                {
                    return false; // numbers, objects, … compare by the library's notion of JSON equality
                }
                list.Add(item.GetString()!);
            }
            strings = [.. list];
            return true;
        }

        private static bool TryNames(JsonElement value, out byte[][]? names)
        {
            names = null;
            if (value.ValueKind != JsonValueKind.Array)
            {
                return false;
            }
            var list = new List<byte[]>();
            foreach (var item in value.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.String)
                {
                    return false;
                }
                list.Add(Encoding.UTF8.GetBytes(item.GetString()!));
            }
            names = [.. list];
            return true;
        }

        private static bool TryBound(JsonElement value, out Bound? bound)
        {
            bound = null;
            if (value.ValueKind != JsonValueKind.Number || !value.TryGetDecimal(out var m) || !value.TryGetDouble(out var d) || !double.IsFinite(d) || (decimal)d != m)
            {
                return false;
            }
            bound = new Bound(m, d);
            return true;
        }

        private static bool TryCount(JsonElement value, out long? count)
        {
            count = null;
            if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out var n) || n < 0)
            {
                return false;
            }
            count = n;
            return true;
        }
    }
}
