using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Lattice.Runtime.Engines.Llama;

/// <summary>A request the engine cannot serve as sent; answered with a 400 in OpenAI's error envelope.</summary>
internal sealed class ChatRequestException(string message, string? param, string? code = null) : Exception(message)
{
    public string? Param { get; } = param;

    public string? Code { get; } = code;
}

/// <summary>One prompt message, reduced to what a chat template needs.</summary>
internal sealed record ChatMessage(string Role, string Content);

/// <summary>How the output is constrained and returned.</summary>
internal enum OutputMode
{
    /// <summary>Free text in <c>message.content</c>.</summary>
    Text,

    /// <summary>JSON text (grammar-constrained) in <c>message.content</c>.</summary>
    Json,

    /// <summary>The arguments of one forced function, returned as <c>message.tool_calls[0]</c>.</summary>
    FunctionArguments,

    /// <summary><c>{"name","arguments"}</c> of any of several functions, returned as <c>message.tool_calls[0]</c>.</summary>
    AnyFunctionCall,
}

/// <summary>An OpenAI chat completion request, validated and reduced to what the engine uses.</summary>
internal sealed class ChatRequest
{
    public const int MaxChoices = 128;
    public const int MaxStopSequences = 4;

    public string? Model { get; private init; }
    public required IReadOnlyList<ChatMessage> Messages { get; init; }
    public bool Stream { get; private init; }
    public bool IncludeUsage { get; private init; }
    public float Temperature { get; private init; } = 1f;
    public float TopP { get; private init; } = 1f;
    public float FrequencyPenalty { get; private init; }
    public float PresencePenalty { get; private init; }
    public int N { get; private init; } = 1;
    public int? MaxTokens { get; private init; }
    public long? Seed { get; private init; }
    public IReadOnlyList<string> Stop { get; private init; } = [];
    public IReadOnlyDictionary<int, float> LogitBias { get; private init; } = new Dictionary<int, float>();
    public OutputMode Mode { get; private init; }

    /// <summary>The GBNF grammar (root rule <see cref="JsonGrammar.RootRule"/>) for every mode but <see cref="OutputMode.Text"/>.</summary>
    public string? Grammar { get; private init; }

    /// <summary>The forced function's name in <see cref="OutputMode.FunctionArguments"/>.</summary>
    public string? FunctionName { get; private init; }

    private static readonly string[] Roles = ["system", "developer", "user", "assistant", "tool", "function"];

    /// <summary>Parses and validates <paramref name="body"/>; throws <see cref="ChatRequestException"/> when it is malformed.</summary>
    public static ChatRequest Parse(ReadOnlyMemory<byte> body, bool streamRequested)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException)
        {
            throw new ChatRequestException(
                "We could not parse the JSON body of your request. The API expects a JSON payload, but what was sent was not valid JSON.",
                null);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new ChatRequestException(
                    $"Invalid type for the request body: expected an object, but got {Describe(root)} instead.", null, "invalid_type");
            }
            return Parse(root, streamRequested);
        }
    }

    private static ChatRequest Parse(JsonElement root, bool streamRequested)
    {
        var model = Optional(root, "model") is { } m ? RequireString(m, "model") : null;

        if (Optional(root, "messages") is not { } messagesElement)
        {
            throw new ChatRequestException("Missing required parameter: 'messages'.", "messages", "missing_required_parameter");
        }
        if (messagesElement.ValueKind != JsonValueKind.Array)
        {
            throw InvalidType("messages", "an array", messagesElement);
        }
        if (messagesElement.GetArrayLength() == 0)
        {
            throw new ChatRequestException(
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.", "messages", "empty_array");
        }
        var messages = new List<ChatMessage>(messagesElement.GetArrayLength());
        var i = 0;
        foreach (var message in messagesElement.EnumerateArray())
        {
            messages.Add(ParseMessage(message, $"messages[{i++}]"));
        }

        var stream = streamRequested || (Optional(root, "stream") is { } s && RequireBool(s, "stream"));
        var includeUsage = false;
        if (Optional(root, "stream_options") is { } streamOptions)
        {
            if (streamOptions.ValueKind != JsonValueKind.Object)
            {
                throw InvalidType("stream_options", "an object", streamOptions);
            }
            if (!stream)
            {
                throw new ChatRequestException("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options", "invalid_value");
            }
            includeUsage = Optional(streamOptions, "include_usage") is { } u && RequireBool(u, "stream_options.include_usage");
        }

        var temperature = Optional(root, "temperature") is { } t ? RequireNumber(t, "temperature", 0, 2) : 1f;
        var topP = Optional(root, "top_p") is { } p ? RequireNumber(p, "top_p", 0, 1) : 1f;
        var frequencyPenalty = Optional(root, "frequency_penalty") is { } fp ? RequireNumber(fp, "frequency_penalty", -2, 2) : 0f;
        var presencePenalty = Optional(root, "presence_penalty") is { } pp ? RequireNumber(pp, "presence_penalty", -2, 2) : 0f;
        var n = Optional(root, "n") is { } nElement ? (int)RequireInteger(nElement, "n", 1, MaxChoices) : 1;

        int? maxTokens = null;
        foreach (var name in (ReadOnlySpan<string>)["max_completion_tokens", "max_tokens"])
        {
            if (Optional(root, name) is { } max)
            {
                maxTokens ??= (int)RequireInteger(max, name, 1, int.MaxValue);
            }
        }

        long? seed = Optional(root, "seed") is { } seedElement ? RequireInteger(seedElement, "seed", long.MinValue, long.MaxValue) : null;

        var stop = new List<string>();
        if (Optional(root, "stop") is { } stopElement)
        {
            if (stopElement.ValueKind == JsonValueKind.String)
            {
                stop.Add(stopElement.GetString()!);
            }
            else if (stopElement.ValueKind == JsonValueKind.Array)
            {
                if (stopElement.GetArrayLength() > MaxStopSequences)
                {
                    throw new ChatRequestException(
                        $"Invalid 'stop': array too long. Expected an array with maximum length {MaxStopSequences}, but got an array with length {stopElement.GetArrayLength()} instead.",
                        "stop", "array_above_max_length");
                }
                var index = 0;
                foreach (var item in stopElement.EnumerateArray())
                {
                    stop.Add(RequireString(item, $"stop[{index++}]"));
                }
            }
            else
            {
                throw InvalidType("stop", "a string or an array of strings", stopElement);
            }
        }
        stop.RemoveAll(x => x.Length == 0);

        var logitBias = new Dictionary<int, float>();
        if (Optional(root, "logit_bias") is { } biasElement)
        {
            if (biasElement.ValueKind != JsonValueKind.Object)
            {
                throw InvalidType("logit_bias", "an object", biasElement);
            }
            foreach (var entry in biasElement.EnumerateObject())
            {
                if (!int.TryParse(entry.Name, NumberStyles.None, CultureInfo.InvariantCulture, out var token))
                {
                    throw new ChatRequestException($"Invalid key in 'logit_bias': {entry.Name}. Keys must be token ids.", "logit_bias", "invalid_value");
                }
                logitBias[token] = RequireNumber(entry.Value, $"logit_bias.{entry.Name}", -100, 100);
            }
        }

        if (Optional(root, "logprobs") is { } logprobs && RequireBool(logprobs, "logprobs"))
        {
            throw new ChatRequestException("'logprobs' is not supported by this model.", "logprobs", "unsupported_parameter");
        }
        if (Optional(root, "top_logprobs") is { } topLogprobs)
        {
            RequireInteger(topLogprobs, "top_logprobs", 0, 20);
        }

        var (mode, grammar, functionName) = ParseOutputMode(root);

        return new ChatRequest
        {
            Model = model,
            Messages = messages,
            Stream = stream,
            IncludeUsage = includeUsage,
            Temperature = temperature,
            TopP = topP,
            FrequencyPenalty = frequencyPenalty,
            PresencePenalty = presencePenalty,
            N = n,
            MaxTokens = maxTokens,
            Seed = seed,
            Stop = stop,
            LogitBias = logitBias,
            Mode = mode,
            Grammar = grammar,
            FunctionName = functionName,
        };
    }

    private static ChatMessage ParseMessage(JsonElement message, string path)
    {
        if (message.ValueKind != JsonValueKind.Object)
        {
            throw InvalidType(path, "an object", message);
        }
        if (Optional(message, "role") is not { } roleElement)
        {
            throw new ChatRequestException($"Missing required parameter: '{path}.role'.", $"{path}.role", "missing_required_parameter");
        }
        var role = RequireString(roleElement, $"{path}.role");
        if (!Roles.Contains(role, StringComparer.Ordinal))
        {
            throw new ChatRequestException(
                $"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.",
                $"{path}.role", "invalid_value");
        }

        var text = new StringBuilder();
        if (Optional(message, "content") is { } content)
        {
            AppendContent(text, content, role, $"{path}.content");
        }
        else if (role is not "assistant")
        {
            throw new ChatRequestException($"Missing required parameter: '{path}.content'.", $"{path}.content", "missing_required_parameter");
        }

        if (role == "assistant" && Optional(message, "tool_calls") is { } toolCalls)
        {
            if (toolCalls.ValueKind != JsonValueKind.Array)
            {
                throw InvalidType($"{path}.tool_calls", "an array", toolCalls);
            }
            var index = 0;
            foreach (var call in toolCalls.EnumerateArray())
            {
                var callPath = $"{path}.tool_calls[{index++}]";
                if (call.ValueKind != JsonValueKind.Object)
                {
                    throw InvalidType(callPath, "an object", call);
                }
                if (Optional(call, "function") is not { ValueKind: JsonValueKind.Object } function)
                {
                    // Custom tool calls carry free-form input.
                    if (Optional(call, "custom") is { ValueKind: JsonValueKind.Object } custom)
                    {
                        AppendLine(text, $"{{\"name\":{JsonSerializer.Serialize(Optional(custom, "name") is { } cn ? RequireString(cn, $"{callPath}.custom.name") : "")},\"input\":{JsonSerializer.Serialize(Optional(custom, "input") is { } ci ? RequireString(ci, $"{callPath}.custom.input") : "")}}}");
                        continue;
                    }
                    throw new ChatRequestException($"Missing required parameter: '{callPath}.function'.", $"{callPath}.function", "missing_required_parameter");
                }
                var name = Optional(function, "name") is { } nameElement ? RequireString(nameElement, $"{callPath}.function.name") : "";
                var arguments = Optional(function, "arguments") is { } argumentsElement ? RequireString(argumentsElement, $"{callPath}.function.arguments") : "{}";
                AppendLine(text, $"{{\"name\":{JsonSerializer.Serialize(name)},\"arguments\":{(IsJson(arguments) ? arguments.Trim() : JsonSerializer.Serialize(arguments))}}}");
            }
        }

        var mappedRole = role switch
        {
            "developer" => "system",
            "function" => "tool",
            _ => role,
        };
        return new ChatMessage(mappedRole, text.ToString());
    }

    private static void AppendContent(StringBuilder text, JsonElement content, string role, string path)
    {
        if (content.ValueKind == JsonValueKind.String)
        {
            text.Append(content.GetString());
            return;
        }
        if (content.ValueKind != JsonValueKind.Array)
        {
            throw InvalidType(path, "one of a string or array of objects", content);
        }
        var index = 0;
        foreach (var part in content.EnumerateArray())
        {
            var partPath = $"{path}[{index++}]";
            if (part.ValueKind != JsonValueKind.Object)
            {
                throw InvalidType(partPath, "an object", part);
            }
            if (Optional(part, "type") is not { } typeElement)
            {
                throw new ChatRequestException($"Missing required parameter: '{partPath}.type'.", $"{partPath}.type", "missing_required_parameter");
            }
            var type = RequireString(typeElement, $"{partPath}.type");
            string piece;
            switch (type)
            {
                case "text":
                    piece = Optional(part, "text") is { } textElement
                        ? RequireString(textElement, $"{partPath}.text")
                        : throw new ChatRequestException($"Missing required parameter: '{partPath}.text'.", $"{partPath}.text", "missing_required_parameter");
                    break;
                case "refusal" when role == "assistant":
                    piece = Optional(part, "refusal") is { } refusalElement
                        ? RequireString(refusalElement, $"{partPath}.refusal")
                        : throw new ChatRequestException($"Missing required parameter: '{partPath}.refusal'.", $"{partPath}.refusal", "missing_required_parameter");
                    break;
                default:
                    throw new ChatRequestException(
                        $"Invalid value: '{type}'. This model only supports 'text' content parts.", $"{partPath}.type", "invalid_value");
            }
            AppendLine(text, piece);
        }
    }

    private static void AppendLine(StringBuilder text, string piece)
    {
        if (text.Length > 0)
        {
            text.Append('\n');
        }
        text.Append(piece);
    }

    private static (OutputMode Mode, string? Grammar, string? FunctionName) ParseOutputMode(JsonElement root)
    {
        var functions = new List<(string Name, JsonElement? Parameters)>();
        if (Optional(root, "tools") is { } tools)
        {
            if (tools.ValueKind != JsonValueKind.Array)
            {
                throw InvalidType("tools", "an array", tools);
            }
            var index = 0;
            foreach (var tool in tools.EnumerateArray())
            {
                var path = $"tools[{index++}]";
                if (tool.ValueKind != JsonValueKind.Object)
                {
                    throw InvalidType(path, "an object", tool);
                }
                var type = Optional(tool, "type") is { } typeElement ? RequireString(typeElement, $"{path}.type") : "function";
                if (type != "function")
                {
                    // Custom tools are never forced here; they stay unused unless the model is told about them.
                    continue;
                }
                if (Optional(tool, "function") is not { } function)
                {
                    throw new ChatRequestException($"Missing required parameter: '{path}.function'.", $"{path}.function", "missing_required_parameter");
                }
                if (function.ValueKind != JsonValueKind.Object)
                {
                    throw InvalidType($"{path}.function", "an object", function);
                }
                if (Optional(function, "name") is not { } nameElement)
                {
                    throw new ChatRequestException($"Missing required parameter: '{path}.function.name'.", $"{path}.function.name", "missing_required_parameter");
                }
                var name = RequireString(nameElement, $"{path}.function.name");
                JsonElement? parameters = null;
                if (Optional(function, "parameters") is { } parametersElement)
                {
                    if (parametersElement.ValueKind != JsonValueKind.Object)
                    {
                        throw InvalidType($"{path}.function.parameters", "an object", parametersElement);
                    }
                    parameters = parametersElement;
                }
                functions.Add((name, parameters));
            }
        }

        if (Optional(root, "tool_choice") is { } choice)
        {
            if (choice.ValueKind == JsonValueKind.String)
            {
                switch (choice.GetString())
                {
                    case "none":
                    case "auto":
                        break;
                    case "required":
                        if (functions.Count == 0)
                        {
                            throw new ChatRequestException("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.", "tool_choice", "invalid_value");
                        }
                        return functions.Count == 1
                            ? (OutputMode.FunctionArguments, JsonGrammar.ForFunctionArguments(functions[0].Parameters), functions[0].Name)
                            : (OutputMode.AnyFunctionCall, JsonGrammar.ForAnyFunctionCall(functions), null);
                    default:
                        throw new ChatRequestException(
                            $"Invalid value: '{choice.GetString()}'. Supported values are: 'none', 'auto', and 'required'.", "tool_choice", "invalid_value");
                }
            }
            else if (choice.ValueKind == JsonValueKind.Object)
            {
                var type = Optional(choice, "type") is { } typeElement ? RequireString(typeElement, "tool_choice.type") : null;
                if (type != "function")
                {
                    throw new ChatRequestException(
                        $"Invalid value: '{type}'. This model supports 'tool_choice' of type 'function' only.", "tool_choice.type", "invalid_value");
                }
                if (Optional(choice, "function") is not { ValueKind: JsonValueKind.Object } function
                    || Optional(function, "name") is not { } nameElement)
                {
                    throw new ChatRequestException("Missing required parameter: 'tool_choice.function.name'.", "tool_choice.function.name", "missing_required_parameter");
                }
                var name = RequireString(nameElement, "tool_choice.function.name");
                var index = functions.FindIndex(f => f.Name == name);
                if (index < 0)
                {
                    throw new ChatRequestException(
                        $"Invalid value for 'tool_choice': tool choice '{name}' does not match any of the specified tools.", "tool_choice", "invalid_value");
                }
                return (OutputMode.FunctionArguments, JsonGrammar.ForFunctionArguments(functions[index].Parameters), name);
            }
            else
            {
                throw InvalidType("tool_choice", "a string or an object", choice);
            }
        }

        if (Optional(root, "response_format") is { } format)
        {
            if (format.ValueKind != JsonValueKind.Object)
            {
                throw InvalidType("response_format", "an object", format);
            }
            if (Optional(format, "type") is not { } typeElement)
            {
                throw new ChatRequestException("Missing required parameter: 'response_format.type'.", "response_format.type", "missing_required_parameter");
            }
            switch (RequireString(typeElement, "response_format.type"))
            {
                case "text":
                    break;
                case "json_object":
                    return (OutputMode.Json, JsonGrammar.ForJsonObject(), null);
                case "json_schema":
                    if (Optional(format, "json_schema") is not { } jsonSchema)
                    {
                        throw new ChatRequestException("Missing required parameter: 'response_format.json_schema'.", "response_format.json_schema", "missing_required_parameter");
                    }
                    if (jsonSchema.ValueKind != JsonValueKind.Object)
                    {
                        throw InvalidType("response_format.json_schema", "an object", jsonSchema);
                    }
                    if (Optional(jsonSchema, "schema") is { } schema)
                    {
                        if (schema.ValueKind != JsonValueKind.Object)
                        {
                            throw InvalidType("response_format.json_schema.schema", "an object", schema);
                        }
                        return (OutputMode.Json, JsonGrammar.ForSchema(schema), null);
                    }
                    return (OutputMode.Json, JsonGrammar.ForJsonObject(), null);
                case var other:
                    throw new ChatRequestException(
                        $"Invalid value: '{other}'. Supported values are: 'text', 'json_object', and 'json_schema'.", "response_format.type", "invalid_value");
            }
        }

        return (OutputMode.Text, null, null);
    }

    private static bool IsJson(string text)
    {
        try
        {
            using var _ = JsonDocument.Parse(text);
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>The property's value, or null when it is absent or JSON null (OpenAI treats both as "not set").</summary>
    private static JsonElement? Optional(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;

    private static string RequireString(JsonElement value, string path) =>
        value.ValueKind == JsonValueKind.String ? value.GetString()! : throw InvalidType(path, "a string", value);

    private static bool RequireBool(JsonElement value, string path) => value.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw InvalidType(path, "a boolean", value),
    };

    private static float RequireNumber(JsonElement value, string path, double min, double max)
    {
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out var number) || !double.IsFinite(number))
        {
            throw InvalidType(path, "a decimal", value);
        }
        if (number < min)
        {
            throw new ChatRequestException(
                $"Invalid '{path}': decimal below minimum value. Expected a value >= {Format(min)}, but got {Format(number)} instead.", path, "decimal_below_min_value");
        }
        if (number > max)
        {
            throw new ChatRequestException(
                $"Invalid '{path}': decimal above maximum value. Expected a value <= {Format(max)}, but got {Format(number)} instead.", path, "decimal_above_max_value");
        }
        return (float)number;
    }

    private static long RequireInteger(JsonElement value, string path, long min, long max)
    {
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out var number))
        {
            if (value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out var d) && Math.Floor(d) == d && double.IsFinite(d))
            {
                // An integral value too large for 64 bits.
                throw new ChatRequestException(
                    $"Invalid '{path}': integer {(d < 0 ? "below minimum" : "above maximum")} value. Expected a value {(d < 0 ? ">= " + Format(min) : "<= " + Format(max))}, but got {value.GetRawText()} instead.",
                    path, d < 0 ? "integer_below_min_value" : "integer_above_max_value");
            }
            throw InvalidType(path, "an integer", value);
        }
        if (number < min)
        {
            throw new ChatRequestException(
                $"Invalid '{path}': integer below minimum value. Expected a value >= {Format(min)}, but got {Format(number)} instead.", path, "integer_below_min_value");
        }
        if (number > max)
        {
            throw new ChatRequestException(
                $"Invalid '{path}': integer above maximum value. Expected a value <= {Format(max)}, but got {Format(number)} instead.", path, "integer_above_max_value");
        }
        return number;
    }

    private static string Format(double value) => value.ToString(CultureInfo.InvariantCulture);

    private static ChatRequestException InvalidType(string path, string expected, JsonElement actual) =>
        new($"Invalid type for '{path}': expected {expected}, but got {Describe(actual)} instead.", path, "invalid_type");

    private static string Describe(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => value.TryGetInt64(out _) ? "an integer" : "a decimal",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };
}
