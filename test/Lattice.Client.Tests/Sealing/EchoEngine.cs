using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lattice.Runtime.Engines;

namespace Lattice.Client.Tests.Sealing;

/// <summary>
/// A chat engine that answers "You said: …" with the last user message, word by word when streamed, and counts a token
/// per word: the prompt's words come back in the answer, so a canary in the prompt is in both.
/// </summary>
public sealed class EchoEngine(string model = "echo") : IEngine
{
    public string Kind => "echo";

    public IReadOnlyList<EngineCapability> Capabilities { get; } = [new("chat.completions", model, null)];

    public Task LoadAsync(IProgress<double>? progress, CancellationToken cancellationToken) => Task.CompletedTask;

    public static int Words(string text) => text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length;

    public async Task<EngineUsage> ExecuteAsync(EngineRequest request, IEngineOutput output, CancellationToken cancellationToken)
    {
        var body = JsonNode.Parse(request.Body.Span)!;
        var said = body["messages"]!.AsArray().Last(m => m!["role"]!.GetValue<string>() == "user")!["content"]!.GetValue<string>();
        var answer = "You said: " + said;
        var usage = new EngineUsage(Words(said), Words(answer));
        if (!request.Stream)
        {
            await output.StartAsync(200, "application/json", cancellationToken);
            await output.WriteAsync(JsonSerializer.SerializeToUtf8Bytes(new JsonObject
            {
                ["id"] = "chatcmpl-echo",
                ["object"] = "chat.completion",
                ["created"] = 1700000000,
                ["model"] = model,
                ["choices"] = new JsonArray(new JsonObject
                {
                    ["index"] = 0,
                    ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = answer },
                    ["finish_reason"] = "stop",
                }),
                ["usage"] = new JsonObject { ["prompt_tokens"] = usage.PromptTokens, ["completion_tokens"] = usage.CompletionTokens, ["total_tokens"] = usage.PromptTokens + usage.CompletionTokens },
            }), cancellationToken);
            return usage;
        }
        await output.StartAsync(200, "text/event-stream", cancellationToken);
        var words = answer.Split(' ');
        for (var i = 0; i < words.Length; i++)
        {
            await output.WriteAsync(Event(new JsonObject { ["content"] = (i == 0 ? "" : " ") + words[i] }, null), cancellationToken);
        }
        await output.WriteAsync(Event(new JsonObject(), "stop"), cancellationToken);
        await output.WriteAsync("data: [DONE]\n\n"u8.ToArray(), cancellationToken);
        return usage;
    }

    private byte[] Event(JsonObject delta, string? finish)
    {
        var chunk = new JsonObject
        {
            ["id"] = "chatcmpl-echo",
            ["object"] = "chat.completion.chunk",
            ["created"] = 1700000000,
            ["model"] = model,
            ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["delta"] = delta, ["finish_reason"] = finish }),
        };
        return Encoding.UTF8.GetBytes("data: " + chunk.ToJsonString() + "\n\n");
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
