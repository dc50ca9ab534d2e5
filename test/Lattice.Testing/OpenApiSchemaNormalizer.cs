using System.Text.Json.Nodes;

namespace Lattice.Testing;

/// <summary>
/// Rewrites the OpenAPI 3.0 leftovers found in OpenAI's (nominally 3.1) description into their
/// JSON Schema 2020-12 equivalents, so that the schemas mean what their authors wrote:
/// <list type="bullet">
/// <item><c>nullable: true</c> (3.0 only; an unknown, ignored keyword in 3.1) becomes
/// <c>anyOf: [ {the schema without nullable}, {type: "null"} ]</c>; <c>nullable: false</c> is dropped;</item>
/// <item>boolean <c>exclusiveMinimum</c>/<c>exclusiveMaximum</c> (3.0 / draft-04 style, invalid in 2020-12)
/// become the numeric form using the sibling <c>minimum</c>/<c>maximum</c>.</item>
/// </list>
/// Nothing else is touched: no constraint is removed or relaxed. The walk is schema-aware (it only
/// descends through keywords whose values are subschemas), so a property that happens to be
/// <em>named</em> <c>nullable</c> is never mistaken for the keyword.
/// </summary>
internal static class OpenApiSchemaNormalizer
{
    private static readonly string[] SchemaMapKeywords =
        ["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"];

    private static readonly string[] SingleSchemaKeywords =
    [
        "additionalProperties", "unevaluatedProperties", "unevaluatedItems", "additionalItems", "contains",
        "propertyNames", "if", "then", "else", "not", "contentSchema",
    ];

    private static readonly string[] SchemaArrayKeywords = ["allOf", "anyOf", "oneOf", "prefixItems"];

    public sealed class Report
    {
        public int NullableRewritten { get; set; }

        public int ExclusiveBoundsRewritten { get; set; }
    }

    /// <summary>Normalises every schema under <c>#/components/schemas</c> in place.</summary>
    public static Report NormalizeComponentSchemas(JsonNode document)
    {
        var report = new Report();
        if (document["components"]?["schemas"] is JsonObject schemas)
        {
            foreach (var (_, schema) in schemas.ToList())
            {
                NormalizeSchema(schema, report);
            }
        }

        return report;
    }

    private static void NormalizeSchema(JsonNode? node, Report report)
    {
        if (node is not JsonObject schema)
        {
            return; // boolean schema (or malformed): nothing to rewrite
        }

        foreach (var keyword in SchemaMapKeywords)
        {
            if (schema[keyword] is JsonObject map)
            {
                foreach (var (_, subschema) in map.ToList())
                {
                    NormalizeSchema(subschema, report);
                }
            }
        }

        foreach (var keyword in SingleSchemaKeywords)
        {
            NormalizeSchema(schema[keyword], report);
        }

        switch (schema["items"])
        {
            case JsonObject items:
                NormalizeSchema(items, report);
                break;
            case JsonArray tupleItems: // draft-04 style tuple
                foreach (var item in tupleItems)
                {
                    NormalizeSchema(item, report);
                }

                break;
        }

        foreach (var keyword in SchemaArrayKeywords)
        {
            if (schema[keyword] is JsonArray list)
            {
                foreach (var item in list)
                {
                    NormalizeSchema(item, report);
                }
            }
        }

        RewriteExclusiveBound(schema, "exclusiveMinimum", "minimum", report);
        RewriteExclusiveBound(schema, "exclusiveMaximum", "maximum", report);
        RewriteNullable(schema, report);
    }

    private static void RewriteExclusiveBound(JsonObject schema, string exclusiveKeyword, string inclusiveKeyword, Report report)
    {
        if (schema[exclusiveKeyword] is not JsonValue flag || !flag.TryGetValue<bool>(out var exclusive))
        {
            return; // absent, or already the numeric 2020-12 form
        }

        schema.Remove(exclusiveKeyword);
        if (exclusive && schema[inclusiveKeyword] is JsonValue bound)
        {
            schema.Remove(inclusiveKeyword);
            schema[exclusiveKeyword] = bound;
        }

        report.ExclusiveBoundsRewritten++;
    }

    private static void RewriteNullable(JsonObject schema, Report report)
    {
        if (schema["nullable"] is not JsonValue flag || !flag.TryGetValue<bool>(out var nullable))
        {
            return;
        }

        schema.Remove("nullable");
        if (!nullable)
        {
            return;
        }

        // Move every keyword into an inner schema and make the outer one "inner OR null".
        // Done in place so that references to this schema keep pointing at the same object.
        var inner = new JsonObject();
        foreach (var (key, value) in schema.ToList())
        {
            schema.Remove(key);
            inner[key] = value;
        }

        schema["anyOf"] = new JsonArray(inner, new JsonObject { ["type"] = "null" });
        report.NullableRewritten++;
    }
}
