using System.Globalization;
using System.Numerics;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;

namespace Lattice.Testing;

/// <summary>
/// Converts a single-document YAML stream into a <see cref="JsonNode"/> tree, resolving plain
/// scalars with the YAML 1.2 core schema (the schema JSON-compatible YAML uses):
/// <list type="bullet">
/// <item>quoted, literal (<c>|</c>) and folded (<c>&gt;</c>) scalars are always strings
/// (so <c>"1.0"</c> or <c>'123'</c> stay strings);</item>
/// <item>plain <c>null</c>/<c>Null</c>/<c>NULL</c>/<c>~</c>/empty are null;</item>
/// <item>plain <c>true</c>/<c>false</c> (also Title and UPPER case) are booleans;</item>
/// <item>plain decimal, <c>0o</c> octal and <c>0x</c> hex integers and decimal floats are numbers;</item>
/// <item>everything else is a string — including YAML 1.1 booleans such as <c>y</c>, <c>yes</c>,
/// <c>on</c>, <c>off</c> and dates such as <c>2025-01-01</c>.</item>
/// </list>
/// Explicit <c>!!str</c>/<c>!!int</c>/<c>!!float</c>/<c>!!bool</c>/<c>!!null</c> tags are honoured,
/// anchors/aliases are expanded (deep copies) and <c>&lt;&lt;</c> merge keys are applied.
/// Duplicate mapping keys and non-scalar keys are rejected.
/// </summary>
internal static partial class YamlJson
{
    private const string TagPrefix = "tag:yaml.org,2002:";

    public static JsonNode? Parse(TextReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        return Parse(reader.ReadToEnd());
    }

    private static JsonNode? ParseCore(TextReader reader)
    {
        var parser = new Parser(reader);
        parser.Consume<StreamStart>();
        if (parser.TryConsume<StreamEnd>(out _))
        {
            return null;
        }

        parser.Consume<DocumentStart>();
        var anchors = new Dictionary<string, JsonNode?>(StringComparer.Ordinal);
        var root = ReadNode(parser, anchors);
        parser.Consume<DocumentEnd>();
        if (!parser.TryConsume<StreamEnd>(out _))
        {
            throw new YamlException(parser.Current?.Start ?? Mark.Empty, parser.Current?.End ?? Mark.Empty,
                "Expected a single YAML document, found more than one.");
        }

        return root;
    }

    public static JsonNode? Parse(string yaml)
    {
        ArgumentNullException.ThrowIfNull(yaml);
        using var reader = new StringReader(BlankEmptyBlockScalars(yaml));
        return ParseCore(reader);
    }

    /// <summary>
    /// Works around a YamlDotNet scanner bug: a block scalar (<c>|</c>, <c>|+</c>, <c>&gt;</c>, …) whose only
    /// content lines are whitespace is valid YAML (YAML 1.2 §8.1.1.1: with no non-empty line, the content
    /// indentation is that of the longest line, so every line is empty), but YamlDotNet rejects it with
    /// "found extra spaces in first line". Emptying those whitespace-only lines does not change the value
    /// (the scalar still consists of the same line breaks). OpenAI's spec has one such scalar
    /// (an <c>example: |+</c> under <c>stop</c>).
    /// </summary>
    internal static string BlankEmptyBlockScalars(string yaml)
    {
        if (!yaml.Contains('|', StringComparison.Ordinal) && !yaml.Contains('>', StringComparison.Ordinal))
        {
            return yaml;
        }

        var lines = yaml.Split('\n');
        var changed = false;
        for (var i = 0; i < lines.Length; i++)
        {
            var header = BlockScalarHeader().Match(lines[i].TrimEnd('\r'));
            if (!header.Success)
            {
                continue;
            }

            var headerIndent = header.Groups["indent"].Length;
            var next = i + 1;
            while (next < lines.Length && string.IsNullOrWhiteSpace(lines[next]))
            {
                next++;
            }

            var nextIndent = next < lines.Length ? lines[next].Length - lines[next].TrimStart(' ').Length : 0;
            if (next == i + 1 || nextIndent > headerIndent)
            {
                continue; // no blank lines, or the scalar has real content: nothing to fix
            }

            for (var j = i + 1; j < next; j++)
            {
                var blank = lines[j].EndsWith('\r') ? "\r" : string.Empty;
                if (lines[j] != blank)
                {
                    lines[j] = blank;
                    changed = true;
                }
            }

            i = next - 1;
        }

        return changed ? string.Join('\n', lines) : yaml;
    }

    private static JsonNode? ReadNode(IParser parser, Dictionary<string, JsonNode?> anchors)
    {
        if (parser.TryConsume<AnchorAlias>(out var alias))
        {
            if (!anchors.TryGetValue(alias.Value.Value, out var target))
            {
                throw new YamlException(alias.Start, alias.End, $"Unknown alias '*{alias.Value.Value}'.");
            }

            return target?.DeepClone();
        }

        if (parser.TryConsume<Scalar>(out var scalar))
        {
            var value = ConvertScalar(scalar);
            Remember(anchors, scalar.Anchor, value);
            return value;
        }

        if (parser.TryConsume<SequenceStart>(out var sequenceStart))
        {
            var array = new JsonArray();
            while (!parser.TryConsume<SequenceEnd>(out _))
            {
                array.Add(ReadNode(parser, anchors));
            }

            Remember(anchors, sequenceStart.Anchor, array);
            return array;
        }

        if (parser.TryConsume<MappingStart>(out var mappingStart))
        {
            var obj = new JsonObject();
            List<JsonObject>? merges = null;
            while (!parser.TryConsume<MappingEnd>(out _))
            {
                var keyEvent = parser.Current;
                if (!parser.TryConsume<Scalar>(out var keyScalar))
                {
                    throw new YamlException(keyEvent?.Start ?? Mark.Empty, keyEvent?.End ?? Mark.Empty,
                        "Only scalar mapping keys can be converted to JSON.");
                }

                var value = ReadNode(parser, anchors);
                if (keyScalar.Style == ScalarStyle.Plain && keyScalar.Tag.IsEmpty && keyScalar.Value == "<<")
                {
                    merges ??= [];
                    CollectMergeSources(value, merges, keyScalar);
                    continue;
                }

                if (obj.ContainsKey(keyScalar.Value))
                {
                    throw new YamlException(keyScalar.Start, keyScalar.End, $"Duplicate mapping key '{keyScalar.Value}'.");
                }

                obj.Add(keyScalar.Value, value);
            }

            if (merges is not null)
            {
                // Explicit keys win over merged ones; earlier merge sources win over later ones.
                foreach (var source in merges)
                {
                    foreach (var (key, mergedValue) in source)
                    {
                        if (!obj.ContainsKey(key))
                        {
                            obj.Add(key, mergedValue?.DeepClone());
                        }
                    }
                }
            }

            Remember(anchors, mappingStart.Anchor, obj);
            return obj;
        }

        var unexpected = parser.Current;
        throw new YamlException(unexpected?.Start ?? Mark.Empty, unexpected?.End ?? Mark.Empty,
            $"Unexpected YAML event {unexpected?.GetType().Name ?? "(end of input)"}.");
    }

    private static void CollectMergeSources(JsonNode? value, List<JsonObject> merges, Scalar key)
    {
        switch (value)
        {
            case JsonObject single:
                merges.Add(single);
                break;
            case JsonArray many when many.All(n => n is JsonObject):
                merges.AddRange(many.Cast<JsonObject>());
                break;
            default:
                throw new YamlException(key.Start, key.End, "A '<<' merge key needs a mapping or a sequence of mappings.");
        }
    }

    private static void Remember(Dictionary<string, JsonNode?> anchors, AnchorName anchor, JsonNode? value)
    {
        if (!anchor.IsEmpty)
        {
            // Later anchors with the same name override earlier ones (YAML 1.2 §3.2.2.2).
            anchors[anchor.Value] = value;
        }
    }

    private static JsonNode? ConvertScalar(Scalar scalar)
    {
        var text = scalar.Value;
        if (!scalar.Tag.IsEmpty && !scalar.Tag.IsNonSpecific)
        {
            return scalar.Tag.Value switch
            {
                TagPrefix + "str" => JsonValue.Create(text),
                TagPrefix + "null" => null,
                TagPrefix + "bool" => ParseBool(text) ?? throw Invalid(scalar, "bool"),
                TagPrefix + "int" => ParseInteger(text) ?? throw Invalid(scalar, "int"),
                TagPrefix + "float" => ParseFloat(text) ?? throw Invalid(scalar, "float"),
                // Unknown application tags: keep the textual value.
                _ => JsonValue.Create(text),
            };
        }

        // Non-plain scalars (quoted, literal, folded) and the non-specific tag '!' are strings.
        if (scalar.Style != ScalarStyle.Plain || scalar.Tag.IsNonSpecific)
        {
            return JsonValue.Create(text);
        }

        if (text.Length == 0 || text is "~" or "null" or "Null" or "NULL")
        {
            return null;
        }

        return ParseBool(text) ?? ParseInteger(text) ?? ParseFloat(text) ?? JsonValue.Create(text);
    }

    private static YamlException Invalid(Scalar scalar, string tag) =>
        new(scalar.Start, scalar.End, $"Value '{scalar.Value}' is not a valid !!{tag}.");

    private static JsonValue? ParseBool(string text) => text switch
    {
        "true" or "True" or "TRUE" => JsonValue.Create(true),
        "false" or "False" or "FALSE" => JsonValue.Create(false),
        _ => null,
    };

    private static JsonValue? ParseInteger(string text)
    {
        if (DecimalInteger().IsMatch(text))
        {
            return FromBigInteger(BigInteger.Parse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture));
        }

        if (OctalInteger().IsMatch(text))
        {
            var value = BigInteger.Zero;
            foreach (var c in text.AsSpan(2))
            {
                value = (value * 8) + (c - '0');
            }

            return FromBigInteger(value);
        }

        if (HexInteger().IsMatch(text))
        {
            // A leading zero keeps BigInteger from reading the top bit as a sign.
            return FromBigInteger(BigInteger.Parse("0" + text[2..], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture));
        }

        return null;
    }

    private static JsonValue FromBigInteger(BigInteger value)
    {
        if (value >= long.MinValue && value <= long.MaxValue)
        {
            return JsonValue.Create((long)value);
        }

        if (value >= (BigInteger)decimal.MinValue && value <= (BigInteger)decimal.MaxValue)
        {
            return JsonValue.Create((decimal)value);
        }

        return JsonValue.Create((double)value);
    }

    private static JsonValue? ParseFloat(string text)
    {
        // .inf / .nan are floats in YAML but have no JSON representation: they stay strings.
        if (!DecimalFloat().IsMatch(text))
        {
            return null;
        }

        if (decimal.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var d))
        {
            return JsonValue.Create(d);
        }

        var dbl = double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);
        return double.IsFinite(dbl) ? JsonValue.Create(dbl) : null;
    }

    // "key: |+", "- >-", "key: &anchor !tag |2" … ; the header line's indentation is captured.
    [GeneratedRegex(@"^(?<indent> *)(?:- +|[^#]*?: +)(?:&\S+ +)?(?:!\S* +)?[|>](?:[+-]?[1-9]?|[1-9][+-])[ \t]*(?:#.*)?$", RegexOptions.CultureInvariant)]
    private static partial Regex BlockScalarHeader();

    [GeneratedRegex(@"^[-+]?[0-9]+$", RegexOptions.CultureInvariant)]
    private static partial Regex DecimalInteger();

    [GeneratedRegex(@"^0o[0-7]+$", RegexOptions.CultureInvariant)]
    private static partial Regex OctalInteger();

    [GeneratedRegex(@"^0x[0-9a-fA-F]+$", RegexOptions.CultureInvariant)]
    private static partial Regex HexInteger();

    [GeneratedRegex(@"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$", RegexOptions.CultureInvariant)]
    private static partial Regex DecimalFloat();
}
