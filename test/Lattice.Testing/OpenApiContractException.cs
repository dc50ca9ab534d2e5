namespace Lattice.Testing;

/// <summary>
/// Thrown by <see cref="OpenApiContract.AssertValid"/> when a JSON body does not conform to a schema of
/// OpenAI's OpenAPI description. The message lists every error; <see cref="Errors"/> holds them one by one.
/// </summary>
public sealed class OpenApiContractException : Exception
{
    public OpenApiContractException()
        : this("The JSON body does not conform to the OpenAPI contract.")
    {
    }

    public OpenApiContractException(string message)
        : base(message)
    {
        Errors = [];
    }

    public OpenApiContractException(string message, Exception innerException)
        : base(message, innerException)
    {
        Errors = [];
    }

    public OpenApiContractException(string schemaName, IReadOnlyList<string> errors, string json)
        : base(BuildMessage(schemaName, errors, json))
    {
        SchemaName = schemaName;
        Errors = errors;
    }

    /// <summary>The component schema the body was validated against.</summary>
    public string? SchemaName { get; }

    /// <summary>The validation errors (instance location, message, schema keyword path).</summary>
    public IReadOnlyList<string> Errors { get; }

    private static string BuildMessage(string schemaName, IReadOnlyList<string> errors, string json)
    {
        const int maxBody = 4000;
        var body = json.Length <= maxBody ? json : string.Concat(json.AsSpan(0, maxBody), "… (truncated)");
        return $"JSON does not conform to OpenAPI schema '{schemaName}' ({errors.Count} error(s)):"
            + Environment.NewLine + string.Join(Environment.NewLine, errors.Select(e => "  - " + e))
            + Environment.NewLine + "Body: " + body;
    }
}
