using System.Buffers;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace Lattice.Client;

/// <summary>Writes a chat-completions request body from Microsoft.Extensions.AI's messages and options.</summary>
internal static class ChatRequestWriter
{
    public static byte[] Write(string model, IEnumerable<ChatMessage> messages, ChatOptions? options, bool stream)
    {
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("model", model);
            json.WriteStartArray("messages");
            if (options?.Instructions is { Length: > 0 } instructions)
            {
                json.WriteStartObject();
                json.WriteString("role", "system");
                json.WriteString("content", instructions);
                json.WriteEndObject();
            }
            foreach (var message in messages)
            {
                WriteMessage(json, message);
            }
            json.WriteEndArray();
            if (stream)
            {
                json.WriteBoolean("stream", true);
                json.WriteStartObject("stream_options");
                json.WriteBoolean("include_usage", true);
                json.WriteEndObject();
            }
            if (options is not null)
            {
                WriteOptions(json, options);
            }
            json.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    private static void WriteMessage(Utf8JsonWriter json, ChatMessage message)
    {
        var role = message.Role.Value;
        // A tool result is its own "tool" message per call, whatever role the abstraction put it under.
        foreach (var content in message.Contents)
        {
            if (content is FunctionResultContent result)
            {
                json.WriteStartObject();
                json.WriteString("role", "tool");
                json.WriteString("tool_call_id", result.CallId);
                json.WriteString("content", result.Result switch
                {
                    null => "",
                    string text => text,
                    JsonElement element => element.GetRawText(),
                    var other => JsonSerializer.Serialize(other, AIJsonUtilities.DefaultOptions.GetTypeInfo(other.GetType())),
                });
                json.WriteEndObject();
            }
        }

        var parts = message.Contents.Where(c => c is TextContent or DataContent or UriContent).ToList();
        var calls = message.Contents.OfType<FunctionCallContent>().ToList();
        if (parts.Count == 0 && calls.Count == 0)
        {
            return;
        }
        json.WriteStartObject();
        json.WriteString("role", role);
        if (message.AuthorName is { Length: > 0 } name)
        {
            json.WriteString("name", name);
        }
        if (parts.Count == 0)
        {
            json.WriteNull("content");
        }
        else if (parts.All(p => p is TextContent))
        {
            json.WriteString("content", string.Concat(parts.Cast<TextContent>().Select(t => t.Text)));
        }
        else
        {
            json.WriteStartArray("content");
            foreach (var part in parts)
            {
                WritePart(json, part);
            }
            json.WriteEndArray();
        }
        if (calls.Count > 0)
        {
            json.WriteStartArray("tool_calls");
            foreach (var call in calls)
            {
                json.WriteStartObject();
                json.WriteString("id", call.CallId);
                json.WriteString("type", "function");
                json.WriteStartObject("function");
                json.WriteString("name", call.Name);
                json.WriteString("arguments", JsonSerializer.Serialize(call.Arguments ?? new Dictionary<string, object?>(),
                    AIJsonUtilities.DefaultOptions.GetTypeInfo(typeof(IDictionary<string, object?>))));
                json.WriteEndObject();
                json.WriteEndObject();
            }
            json.WriteEndArray();
        }
        json.WriteEndObject();
    }

    private static void WritePart(Utf8JsonWriter json, AIContent part)
    {
        json.WriteStartObject();
        switch (part)
        {
            case TextContent text:
                json.WriteString("type", "text");
                json.WriteString("text", text.Text);
                break;
            case DataContent data when data.HasTopLevelMediaType("image"):
                json.WriteString("type", "image_url");
                json.WriteStartObject("image_url");
                json.WriteString("url", data.Uri);
                json.WriteEndObject();
                break;
            case UriContent uri when uri.HasTopLevelMediaType("image"):
                json.WriteString("type", "image_url");
                json.WriteStartObject("image_url");
                json.WriteString("url", uri.Uri.AbsoluteUri);
                json.WriteEndObject();
                break;
            default:
                throw new NotSupportedException($"A chat message part of type {part.GetType().Name} ({(part as DataContent)?.MediaType}) cannot be sent to chat completions.");
        }
        json.WriteEndObject();
    }

    private static void WriteOptions(Utf8JsonWriter json, ChatOptions options)
    {
        if (options.Temperature is { } temperature)
        {
            json.WriteNumber("temperature", temperature);
        }
        if (options.TopP is { } topP)
        {
            json.WriteNumber("top_p", topP);
        }
        if (options.MaxOutputTokens is { } max)
        {
            json.WriteNumber("max_tokens", max);
        }
        if (options.FrequencyPenalty is { } frequency)
        {
            json.WriteNumber("frequency_penalty", frequency);
        }
        if (options.PresencePenalty is { } presence)
        {
            json.WriteNumber("presence_penalty", presence);
        }
        if (options.Seed is { } seed)
        {
            json.WriteNumber("seed", seed);
        }
        if (options.StopSequences is { Count: > 0 } stops)
        {
            json.WriteStartArray("stop");
            foreach (var stop in stops)
            {
                json.WriteStringValue(stop);
            }
            json.WriteEndArray();
        }
        var functions = options.Tools?.OfType<AIFunctionDeclaration>().ToList() ?? [];
        if (functions.Count > 0)
        {
            json.WriteStartArray("tools");
            foreach (var function in functions)
            {
                json.WriteStartObject();
                json.WriteString("type", "function");
                json.WriteStartObject("function");
                json.WriteString("name", function.Name);
                if (function.Description is { Length: > 0 } description)
                {
                    json.WriteString("description", description);
                }
                json.WritePropertyName("parameters");
                function.JsonSchema.WriteTo(json);
                json.WriteEndObject();
                json.WriteEndObject();
            }
            json.WriteEndArray();
            if (options.AllowMultipleToolCalls is { } parallel)
            {
                json.WriteBoolean("parallel_tool_calls", parallel);
            }
        }
        switch (options.ToolMode)
        {
            case NoneChatToolMode:
                json.WriteString("tool_choice", "none");
                break;
            case AutoChatToolMode when functions.Count > 0:
                json.WriteString("tool_choice", "auto");
                break;
            case RequiredChatToolMode { RequiredFunctionName: { } required }:
                json.WriteStartObject("tool_choice");
                json.WriteString("type", "function");
                json.WriteStartObject("function");
                json.WriteString("name", required);
                json.WriteEndObject();
                json.WriteEndObject();
                break;
            case RequiredChatToolMode:
                json.WriteString("tool_choice", "required");
                break;
        }
        switch (options.ResponseFormat)
        {
            case ChatResponseFormatJson { Schema: { } schema } format:
                json.WriteStartObject("response_format");
                json.WriteString("type", "json_schema");
                json.WriteStartObject("json_schema");
                json.WriteString("name", format.SchemaName ?? "answer");
                if (format.SchemaDescription is { } description)
                {
                    json.WriteString("description", description);
                }
                json.WritePropertyName("schema");
                schema.WriteTo(json);
                json.WriteEndObject();
                json.WriteEndObject();
                break;
            case ChatResponseFormatJson:
                json.WriteStartObject("response_format");
                json.WriteString("type", "json_object");
                json.WriteEndObject();
                break;
        }
        // Fields the abstraction has no name for (vendor fields, logprobs, user, …) go through as they are.
        if (options.AdditionalProperties is { Count: > 0 } extra)
        {
            foreach (var (name, value) in extra)
            {
                json.WritePropertyName(name);
                if (value is null)
                {
                    json.WriteNullValue();
                }
                else
                {
                    JsonSerializer.Serialize(json, value, AIJsonUtilities.DefaultOptions.GetTypeInfo(value.GetType()));
                }
            }
        }
    }
}
