using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Lattice.StandIn.OpenAi;

/// <summary>POST /v1/embeddings and the deterministic vectors it returns.</summary>
public static class StandInEmbeddings
{
    public const int DefaultDimensions = 8;

    /// <summary>
    /// The stand-in's embedding of <paramref name="text"/>: block 0 = SHA-256(UTF-8 of text), block k = SHA-256(block k-1);
    /// each block gives eight little-endian uint32 values u mapped to <c>u / 4294967295.0 * 2 - 1</c> (in [-1, 1]);
    /// the first <paramref name="dims"/> values are then L2-normalised (computed in double, stored as float).
    /// For token inputs the text is the compact JSON of the token array, e.g. <c>[1,2,3]</c>.
    /// </summary>
    public static float[] Vector(string text, int dims)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentOutOfRangeException.ThrowIfLessThan(dims, 1);

        var raw = new double[dims];
        Span<byte> block = stackalloc byte[SHA256.HashSizeInBytes];
        Span<byte> next = stackalloc byte[SHA256.HashSizeInBytes];

        int byteCount = Encoding.UTF8.GetByteCount(text);
        byte[] rented = ArrayPool<byte>.Shared.Rent(Math.Max(byteCount, 1));
        try
        {
            int written = Encoding.UTF8.GetBytes(text, rented);
            SHA256.HashData(rented.AsSpan(0, written), block);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }

        int i = 0;
        while (true)
        {
            for (int k = 0; k < 8 && i < dims; k++, i++)
            {
                uint u = BinaryPrimitives.ReadUInt32LittleEndian(block[(k * 4)..]);
                raw[i] = u / (double)uint.MaxValue * 2.0 - 1.0;
            }

            if (i >= dims)
            {
                break;
            }

            SHA256.HashData(block, next);
            next.CopyTo(block);
        }

        double sumSquares = 0;
        foreach (double d in raw)
        {
            sumSquares += d * d;
        }

        double norm = Math.Sqrt(sumSquares);
        var vector = new float[dims];
        for (int j = 0; j < dims; j++)
        {
            vector[j] = norm > 0 ? (float)(raw[j] / norm) : 0f;
        }

        return vector;
    }

    private static readonly JsonEncodedText s_object = JsonEncodedText.Encode("object");
    private static readonly JsonEncodedText s_embedding = JsonEncodedText.Encode("embedding");
    private static readonly JsonEncodedText s_index = JsonEncodedText.Encode("index");

    internal static async Task Handle(HttpContext ctx)
    {
        var buffered = RequestBody.Get(ctx);
        Task? error = TryParse(ctx, buffered.Body, out EmbeddingRequest? request);
        if (error is not null)
        {
            await error;
            return;
        }

        var fault = Fault.From(request!.Model);
        if (fault.Kind != FaultKind.None && await fault.ApplyBeforeResponseAsync(ctx, streaming: false))
        {
            return;
        }

        await WriteResponse(ctx, request);
    }

    private sealed class EmbeddingRequest
    {
        public required string Model { get; init; }

        public required List<string> Items { get; init; }

        public int Tokens { get; init; }

        public int Dimensions { get; init; }

        public bool Base64 { get; init; }
    }

    private static Task? TryParse(HttpContext ctx, byte[] body, out EmbeddingRequest? request)
    {
        request = null;
        using JsonDocument? doc = JsonOut.TryParseObject(body);
        if (doc is null)
        {
            return JsonOut.InvalidJson(ctx);
        }

        JsonElement root = doc.RootElement;
        if (!root.TryGetProperty("model", out JsonElement modelEl) || modelEl.ValueKind != JsonValueKind.String)
        {
            return JsonOut.Error(ctx, StatusCodes.Status400BadRequest, "you must provide a model parameter",
                "invalid_request_error", null, null);
        }

        if (!root.TryGetProperty("input", out JsonElement input) || input.ValueKind == JsonValueKind.Null)
        {
            return JsonOut.MissingParameter(ctx, "input");
        }

        int dims = DefaultDimensions;
        if (root.TryGetProperty("dimensions", out JsonElement dimsEl) && dimsEl.ValueKind != JsonValueKind.Null)
        {
            if (dimsEl.ValueKind != JsonValueKind.Number || !dimsEl.TryGetInt32(out dims) || dims < 1 || dims > 65536)
            {
                return JsonOut.InvalidValue(ctx, "dimensions",
                    $"Invalid value for 'dimensions': expected an integer between 1 and 65536, but got {dimsEl.GetRawText()} instead.");
            }
        }

        bool base64 = false;
        if (root.TryGetProperty("encoding_format", out JsonElement fmt) && fmt.ValueKind != JsonValueKind.Null)
        {
            if (fmt.ValueKind == JsonValueKind.String && fmt.ValueEquals("base64"u8))
            {
                base64 = true;
            }
            else if (fmt.ValueKind != JsonValueKind.String || !fmt.ValueEquals("float"u8))
            {
                return JsonOut.InvalidValue(ctx, "encoding_format",
                    $"Invalid value for 'encoding_format': expected 'float' or 'base64', but got {fmt.GetRawText()} instead.");
            }
        }

        var items = new List<string>();
        int tokens = 0;
        const string invalidInput = "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.";
        switch (input.ValueKind)
        {
            case JsonValueKind.String:
                {
                    string s = input.GetString()!;
                    items.Add(s);
                    tokens += Words.Count(s);
                    break;
                }

            case JsonValueKind.Array when input.GetArrayLength() > 0:
                {
                    JsonValueKind kind = input[0].ValueKind;
                    if (kind == JsonValueKind.Number)
                    {
                        // One input given as a token array.
                        string? json = TokenArrayText(input, out int count);
                        if (json is null)
                        {
                            return JsonOut.InvalidValue(ctx, "input", invalidInput);
                        }

                        items.Add(json);
                        tokens += count;
                        break;
                    }

                    foreach (JsonElement item in input.EnumerateArray())
                    {
                        if (kind == JsonValueKind.String && item.ValueKind == JsonValueKind.String)
                        {
                            string s = item.GetString()!;
                            items.Add(s);
                            tokens += Words.Count(s);
                        }
                        else if (kind == JsonValueKind.Array && item.ValueKind == JsonValueKind.Array
                            && item.GetArrayLength() > 0 && TokenArrayText(item, out int count) is string json)
                        {
                            items.Add(json);
                            tokens += count;
                        }
                        else
                        {
                            return JsonOut.InvalidValue(ctx, "input", invalidInput);
                        }
                    }

                    break;
                }

            default:
                return JsonOut.InvalidValue(ctx, "input", invalidInput);
        }

        request = new EmbeddingRequest
        {
            Model = modelEl.GetString()!,
            Items = items,
            Tokens = tokens,
            Dimensions = dims,
            Base64 = base64,
        };
        return null;
    }

    /// <summary>Compact JSON of an array of integers ("[1,2,3]"), or null when it contains anything else.</summary>
    private static string? TokenArrayText(JsonElement array, out int count)
    {
        count = 0;
        var sb = new StringBuilder("[");
        foreach (JsonElement t in array.EnumerateArray())
        {
            if (t.ValueKind != JsonValueKind.Number || !t.TryGetInt64(out long token))
            {
                return null;
            }

            if (count > 0)
            {
                sb.Append(',');
            }

            sb.Append(token.ToString(CultureInfo.InvariantCulture));
            count++;
        }

        return sb.Append(']').ToString();
    }

    private static Task WriteResponse(HttpContext ctx, EmbeddingRequest request)
    {
        var w = JsonOut.Begin();
        w.WriteStartObject();
        w.WriteString(s_object, "list");
        w.WriteStartArray("data");
        for (int i = 0; i < request.Items.Count; i++)
        {
            float[] vector = Vector(request.Items[i], request.Dimensions);
            w.WriteStartObject();
            w.WriteString(s_object, s_embedding);
            w.WriteNumber(s_index, i);
            if (request.Base64)
            {
                if (!BitConverter.IsLittleEndian)
                {
                    for (int j = 0; j < vector.Length; j++)
                    {
                        vector[j] = BitConverter.Int32BitsToSingle(
                            BinaryPrimitives.ReverseEndianness(BitConverter.SingleToInt32Bits(vector[j])));
                    }
                }

                w.WriteBase64String(s_embedding, MemoryMarshal.AsBytes(vector.AsSpan()));
            }
            else
            {
                w.WriteStartArray(s_embedding);
                foreach (float f in vector)
                {
                    w.WriteNumberValue(f);
                }

                w.WriteEndArray();
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteString("model", Models.Answered(request.Model));
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", request.Tokens);
        w.WriteNumber("total_tokens", request.Tokens);
        w.WriteEndObject();
        w.WriteEndObject();
        return JsonOut.Send(ctx, StatusCodes.Status200OK, w);
    }
}
