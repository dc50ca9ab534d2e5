using System.Runtime.CompilerServices;
using System.Text.Json;
using Lattice.Client.Json;
using Lattice.Client.Pipeline;
using Microsoft.Extensions.AI;

namespace Lattice.Client;

/// <summary>
/// Microsoft.Extensions.AI's <see cref="IChatClient"/> over Lattice's <c>/v1/chat/completions</c>: any app written
/// against the abstraction gets Lattice with one line, <c>IChatClient chat = lattice.GetChatClient("lovelace:chat");</c>.
/// The model is <see cref="ChatOptions.ModelId"/>, else the client's, else the pinned runtime's.
/// </summary>
public class LatticeChatClient : IChatClient
{
    private const string Path = "v1/chat/completions";
    private readonly LatticeClient _client;
    private readonly string? _model;
    private readonly ChatClientMetadata _metadata;
    private readonly Sealing.SealedTarget? _sealed;

    internal LatticeChatClient(LatticeClient client, string? model, Sealing.SealedTarget? sealedTo = null)
    {
        _client = client;
        _model = model;
        _sealed = sealedTo;
        _metadata = new ChatClientMetadata("lattice", client.Options.Endpoint, model);
    }

    /// <summary>
    /// Sends the chat: as it is, or sealed to the runtime's work key (<see cref="LatticeClient.GetSealedChatClient"/>),
    /// in which case the answer has been opened when this returns.
    /// </summary>
    private async Task<HttpResponseMessage> SendAsync(string model, IEnumerable<ChatMessage> messages, ChatOptions? options, bool stream,
        HttpCompletionOption completion, CancellationToken cancellationToken)
    {
        var body = ChatRequestWriter.Write(model, messages, options, stream);
        if (_sealed is not null)
        {
            return await Sealing.SealedCall.SendAsync(_client, _sealed, Path, body, stream, completion, cancellationToken).ConfigureAwait(false);
        }
        using var request = LatticeClient.JsonRequest(Path, model, body);
        return await _client.SendAsync(request, completion, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The model a call goes to: a sealed client's runtime always, else the call's, the client's or the pinned runtime's.</summary>
    private string ModelFor(ChatOptions? options) => _sealed?.Model ?? _client.ResolveModel(options?.ModelId, _model);

    /// <inheritdoc/>
    public virtual async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        using var response = await SendAsync(ModelFor(options), messages, options, stream: false, HttpCompletionOption.ResponseContentRead, cancellationToken).ConfigureAwait(false);
        var completion = await LatticeClient.ReadAsync(response, OpenAiJsonContext.Default.ChatCompletion, cancellationToken).ConfigureAwait(false);

        var choice = completion.Choices is { Count: > 0 } choices ? choices[0] : null;
        var message = new ChatMessage(ChatRole.Assistant, (IList<AIContent>)[]) { RawRepresentation = choice?.Message };
        if (choice?.Message is { } wire)
        {
            if (wire.Content is { Length: > 0 } text)
            {
                message.Contents.Add(new TextContent(text));
            }
            if (wire.Refusal is { Length: > 0 } refusal)
            {
                message.Contents.Add(new TextContent(refusal));
            }
            foreach (var call in wire.ToolCalls ?? [])
            {
                message.Contents.Add(FunctionCall(call.Id ?? "", call.Function?.Name ?? "", call.Function?.Arguments));
            }
        }
        return new ChatResponse(message)
        {
            ResponseId = completion.Id,
            ModelId = completion.Model,
            CreatedAt = completion.Created > 0 ? DateTimeOffset.FromUnixTimeSeconds(completion.Created) : null,
            FinishReason = FinishReason(choice?.FinishReason),
            Usage = Usage(completion.Usage),
            RawRepresentation = completion,
            AdditionalProperties = RequestIdProperty(response),
        };
    }

    /// <inheritdoc/>
    public virtual async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        using var response = await SendAsync(ModelFor(options), messages, options, stream: true, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
        var requestId = RequestIdProperty(response);
        // Tool calls arrive in fragments keyed by index; they are whole only once the stream says why it finished.
        Dictionary<int, (string? Id, string? Name, System.Text.StringBuilder Arguments)>? calls = null;
        await foreach (var data in SseReader.ReadAsync(response, cancellationToken).ConfigureAwait(false))
        {
            var chunk = JsonSerializer.Deserialize(data, OpenAiJsonContext.Default.ChatCompletion);
            if (chunk is null)
            {
                continue;
            }
            var update = new ChatResponseUpdate
            {
                ResponseId = chunk.Id,
                MessageId = chunk.Id,
                ModelId = chunk.Model,
                CreatedAt = chunk.Created > 0 ? DateTimeOffset.FromUnixTimeSeconds(chunk.Created) : null,
                RawRepresentation = chunk,
                AdditionalProperties = requestId,
            };
            if (chunk.Choices is { Count: > 0 } choices && choices[0] is var choice)
            {
                if (choice.Delta is { } delta)
                {
                    update.Role = delta.Role is { } role ? new ChatRole(role) : ChatRole.Assistant;
                    if (delta.Content is { Length: > 0 } text)
                    {
                        update.Contents.Add(new TextContent(text));
                    }
                    if (delta.Refusal is { Length: > 0 } refusal)
                    {
                        update.Contents.Add(new TextContent(refusal));
                    }
                    foreach (var fragment in delta.ToolCalls ?? [])
                    {
                        calls ??= [];
                        var index = fragment.Index ?? 0;
                        if (!calls.TryGetValue(index, out var call))
                        {
                            call = (null, null, new System.Text.StringBuilder());
                        }
                        calls[index] = (fragment.Id ?? call.Id, fragment.Function?.Name ?? call.Name, call.Arguments.Append(fragment.Function?.Arguments));
                    }
                }
                if (choice.FinishReason is { } finish)
                {
                    update.FinishReason = FinishReason(finish);
                    FlushCalls(calls, update);
                }
            }
            if (chunk.Usage is { } usage)
            {
                update.Contents.Add(new UsageContent(Usage(usage)!));
            }
            yield return update;
        }
        if (calls is { Count: > 0 })
        {
            var last = new ChatResponseUpdate { Role = ChatRole.Assistant, AdditionalProperties = requestId };
            FlushCalls(calls, last);
            yield return last;
        }
    }

    private static void FlushCalls(Dictionary<int, (string? Id, string? Name, System.Text.StringBuilder Arguments)>? calls, ChatResponseUpdate update)
    {
        if (calls is null)
        {
            return;
        }
        foreach (var (_, call) in calls.OrderBy(c => c.Key))
        {
            update.Contents.Add(FunctionCall(call.Id ?? "", call.Name ?? "", call.Arguments.ToString()));
        }
        calls.Clear();
    }

    private static FunctionCallContent FunctionCall(string id, string name, string? arguments) =>
        FunctionCallContent.CreateFromParsedArguments(string.IsNullOrEmpty(arguments) ? "{}" : arguments, id, name,
            static json => (IDictionary<string, object?>?)JsonSerializer.Deserialize(json, AIJsonUtilities.DefaultOptions.GetTypeInfo(typeof(IDictionary<string, object?>))));

    /// <summary>The gateway's request id of the answer, as <c>AdditionalProperties["x-request-id"]</c>.</summary>
    internal static AdditionalPropertiesDictionary? RequestIdProperty(HttpResponseMessage response) =>
        ErrorReader.RequestIdOf(response) is { } id ? new AdditionalPropertiesDictionary { ["x-request-id"] = id } : null;

    private static ChatFinishReason? FinishReason(string? reason) => reason switch
    {
        null => null,
        "stop" => ChatFinishReason.Stop,
        "length" => ChatFinishReason.Length,
        "tool_calls" or "function_call" => ChatFinishReason.ToolCalls,
        "content_filter" => ChatFinishReason.ContentFilter,
        _ => new ChatFinishReason(reason),
    };

    internal static UsageDetails? Usage(ChatUsage? usage) => usage is null ? null : new UsageDetails
    {
        InputTokenCount = usage.PromptTokens,
        OutputTokenCount = usage.CompletionTokens,
        TotalTokenCount = usage.TotalTokens,
        CachedInputTokenCount = usage.PromptTokensDetails?.CachedTokens,
        ReasoningTokenCount = usage.CompletionTokensDetails?.ReasoningTokens,
    };

    /// <inheritdoc/>
    public virtual object? GetService(Type serviceType, object? serviceKey = null) =>
        LatticeClient.ServiceOf(this, _metadata, _client, serviceType, serviceKey);

    /// <summary>
    /// The <see cref="LatticeClient"/> owns the connection; a sealed client forgets its sealing sessions' secrets here
    /// (and seals nothing after).
    /// </summary>
    public void Dispose()
    {
        _sealed?.Dispose();
        GC.SuppressFinalize(this);
    }
}
