using System.Text.Json;
using Lattice.Protocol;

namespace Lattice.Runtime.Engines.Embeddings;

/// <summary>The parts of OpenAI's <c>CreateEmbeddingRequest</c> the engine uses.</summary>
/// <param name="Model">The body's <c>model</c>, echoed in the response (null when absent).</param>
/// <param name="Inputs">The texts to embed, in request order.</param>
/// <param name="Base64">True for <c>encoding_format: "base64"</c>.</param>
/// <param name="Dimensions">The requested vector length, or null for the model's full length.</param>
internal sealed record EmbeddingsRequest(string? Model, IReadOnlyList<string> Inputs, bool Base64, int? Dimensions);

/// <summary>Why a request was refused: the envelope's message, <c>param</c> and <c>code</c>.</summary>
internal sealed record EmbeddingsRequestError(string Message, string? Param, string Code);

internal static class EmbeddingsRequestParser
{
    /// <summary>Reads the body; returns null and sets <paramref name="error"/> when the request cannot be served.</summary>
    public static EmbeddingsRequest? Parse(ReadOnlyMemory<byte> body, int maxInputs, int modelDimensions, out EmbeddingsRequestError? error)
    {
        error = null;
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body);
        }
        catch (JsonException)
        {
            error = new("The request body is not valid JSON.", null, ErrorCodes.InvalidJson);
            return null;
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                error = new("The request body must be a JSON object.", null, ErrorCodes.InvalidJson);
                return null;
            }

            string? model = null;
            if (root.TryGetProperty("model", out var modelElement) && modelElement.ValueKind == JsonValueKind.String)
            {
                model = modelElement.GetString();
            }

            var inputs = ReadInputs(root, maxInputs, out error);
            if (inputs is null)
            {
                return null;
            }

            var base64 = false;
            if (root.TryGetProperty("encoding_format", out var format) && format.ValueKind != JsonValueKind.Null)
            {
                switch (format.ValueKind == JsonValueKind.String ? format.GetString() : null)
                {
                    case "float":
                        break;
                    case "base64":
                        base64 = true;
                        break;
                    default:
                        error = new("'encoding_format' must be \"float\" or \"base64\".", "encoding_format", ErrorCodes.InvalidValue);
                        return null;
                }
            }

            int? dimensions = null;
            if (root.TryGetProperty("dimensions", out var dims) && dims.ValueKind != JsonValueKind.Null)
            {
                if (dims.ValueKind != JsonValueKind.Number || !dims.TryGetInt32(out var value) || value < 1)
                {
                    error = new("'dimensions' must be a positive integer.", "dimensions", ErrorCodes.InvalidValue);
                    return null;
                }
                if (value > modelDimensions)
                {
                    error = new(
                        $"'dimensions' is {value}, but this model's embeddings have {modelDimensions} dimensions; ask for at most {modelDimensions}.",
                        "dimensions",
                        ErrorCodes.InvalidValue);
                    return null;
                }
                dimensions = value;
            }

            return new EmbeddingsRequest(model, inputs, base64, dimensions);
        }
    }

    private static List<string>? ReadInputs(JsonElement root, int maxInputs, out EmbeddingsRequestError? error)
    {
        error = null;
        if (!root.TryGetProperty("input", out var input) || input.ValueKind == JsonValueKind.Null)
        {
            error = new("'input' is required.", "input", ErrorCodes.MissingRequiredParameter);
            return null;
        }

        switch (input.ValueKind)
        {
            case JsonValueKind.String:
                var text = input.GetString()!;
                if (text.Length == 0)
                {
                    error = new("'input' must not be an empty string.", "input", ErrorCodes.InvalidValue);
                    return null;
                }
                return [text];

            case JsonValueKind.Array:
                var count = input.GetArrayLength();
                if (count == 0)
                {
                    error = new("'input' must not be an empty array.", "input", ErrorCodes.InvalidValue);
                    return null;
                }
                if (count > maxInputs)
                {
                    error = new($"'input' has {count} items; at most {maxInputs} are allowed in one request.", "input", ErrorCodes.InvalidValue);
                    return null;
                }
                var texts = new List<string>(count);
                var index = 0;
                foreach (var item in input.EnumerateArray())
                {
                    if (item.ValueKind is JsonValueKind.Number or JsonValueKind.Array)
                    {
                        error = new(
                            "'input' holds token arrays, which this model does not accept (its tokenizer is not OpenAI's); send the text instead.",
                            "input",
                            ErrorCodes.InvalidValue);
                        return null;
                    }
                    if (item.ValueKind != JsonValueKind.String)
                    {
                        error = new($"'input[{index}]' must be a string.", "input", ErrorCodes.InvalidValue);
                        return null;
                    }
                    var itemText = item.GetString()!;
                    if (itemText.Length == 0)
                    {
                        error = new($"'input[{index}]' must not be an empty string.", "input", ErrorCodes.InvalidValue);
                        return null;
                    }
                    texts.Add(itemText);
                    index++;
                }
                return texts;

            default:
                error = new("'input' must be a string or an array of strings.", "input", ErrorCodes.InvalidValue);
                return null;
        }
    }
}
