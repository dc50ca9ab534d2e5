namespace Lattice.Gateway.Tasks;

/// <summary>
/// A validated task input, still as the client's bytes. The only thing dispatch may change is the value of
/// <c>model</c>, so the input remembers where that value sits instead of keeping a parsed document.
/// </summary>
public sealed class TaskInput
{
    public required byte[] Body { get; init; }
    public required int Length { get; init; }
    public required string Model { get; init; }
    public required bool Stream { get; init; }
    /// <summary>The client asked for a stream's usage chunk (<c>stream_options.include_usage: true</c>).</summary>
    public bool IncludeUsage { get; init; }
    /// <summary>The most output tokens the client allows (<c>max_completion_tokens</c>, else <c>max_tokens</c>); null when it names none.</summary>
    public long? MaxTokens { get; init; }
    /// <summary>Content-Type to send upstream (multipart keeps its boundary).</summary>
    public required string ContentType { get; init; }

    /// <summary>
    /// Set for a sealed request (docs/sealed-dispatch.md): <see cref="Body"/> is ciphertext the gateway cannot read,
    /// bound to this request id; <see cref="ContentType"/> is the type of the body inside.
    /// </summary>
    public string? SealedRequestId { get; init; }

    /// <summary>For JSON: offset of the <c>model</c> value token (with its quotes) in <see cref="Body"/>.</summary>
    public int ModelValueStart { get; init; } = -1;
    public int ModelValueLength { get; init; }

    /// <summary>For multipart: the parts, so the model part can be rewritten and the rest sent as they came.</summary>
    public IReadOnlyList<MultipartPart>? Parts { get; init; }
    public string? Boundary { get; init; }

    /// <summary>
    /// A translating surface's request as the client sent it (JSON <paramref name="body"/>), beside its translation
    /// <paramref name="translated"/>: what a target that speaks the surface's own API is sent, only the model replaced.
    /// </summary>
    public static TaskInput ClientBytes(byte[] body, int length, TaskInput translated)
    {
        var (modelStart, modelLength) = Protocol.JsonFields.FindTopLevelString(body.AsSpan(0, length), "model"u8);
        return new TaskInput
        {
            Body = body,
            Length = length,
            Model = translated.Model,
            Stream = translated.Stream,
            MaxTokens = translated.MaxTokens,
            ContentType = "application/json",
            ModelValueStart = modelStart,
            ModelValueLength = modelLength,
        };
    }
}

/// <summary>One multipart section, headers as received.</summary>
public sealed record MultipartPart(string Name, IReadOnlyList<KeyValuePair<string, string>> Headers, byte[] Content);
