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
        using (var json = new Utf8JsonWriter(buffer, Json.WriterOptions.Relaxed))
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
                    var other => Compact(other, other.GetType()),
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
                json.WriteString("arguments", Compact(call.Arguments ?? new Dictionary<string, object?>(), typeof(IDictionary<string, object?>)));
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

    /// <summary>
    /// A value as compact JSON text with the abstraction's serializer options (whose own setting is indented: the
    /// writer's setting wins).
    /// </summary>
    private static string Compact(object value, Type type)
    {
        var buffer = new ArrayBufferWriter<byte>(128);
        using (var json = new Utf8JsonWriter(buffer, Json.WriterOptions.Relaxed))
        {
            JsonSerializer.Serialize(json, value, AIJsonUtilities.DefaultOptions.GetTypeInfo(type));
        }
        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static void Number(Utf8JsonWriter json, string name, float? value)
    {
        if (value is { } number)
        {
            json.WriteNumber(name, number);
        }
    }

    private static void Number(Utf8JsonWriter json, string name, long? value)
    {
        if (value is { } number)
        {
            json.WriteNumber(name, number);
        }
    }

    private static void WriteOptions(Utf8JsonWriter json, ChatOptions options)
    {
        Number(json, "temperature", options.Temperature);
        Number(json, "top_p", options.TopP);
        Number(json, "max_tokens", options.MaxOutputTokens);
        Number(json, "frequency_penalty", options.FrequencyPenalty);
        Number(json, "presence_penalty", options.PresencePenalty);
        Number(json, "seed", options.Seed);
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
