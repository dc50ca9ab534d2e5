namespace Lattice.Gateway.Anthropic;

/// <summary>
/// The pairs the Messages API and chat completions name differently, kept once and read in both directions: by the
/// Anthropic surface (a Messages request to a chat target) and by Anthropic upstreams (a chat request to a Messages
/// target).
/// </summary>
public static class MessagesMapping
{
    /// <summary>Chat <c>finish_reason</c> and Messages <c>stop_reason</c>; the first pair with a value wins going back.</summary>
    private static readonly (string Finish, string Stop)[] StopReasons =
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        ("stop", "stop_sequence"),
        ("stop", "pause_turn"),
        ("length", "model_context_window_exceeded"),
    ];

    /// <summary>Messages <c>tool_choice.type</c> and the chat <c>tool_choice</c> string (a named tool is an object in both).</summary>
    private static readonly (string Messages, string Chat)[] ToolChoices =
    [
        ("auto", "auto"),
        ("any", "required"),
        ("none", "none"),
    ];

    /// <summary>The Messages <c>stop_reason</c> for a chat finish reason (<c>end_turn</c> for anything unknown).</summary>
    public static string StopReasonFor(string? finishReason)
    {
        foreach (var (finish, stop) in StopReasons)
        {
            if (finish == finishReason)
            {
                return stop;
            }
        }
        return "end_turn";
    }

    /// <summary>The chat finish reason for a Messages <c>stop_reason</c> (<c>stop</c> for anything unknown).</summary>
    public static string FinishReasonFor(string? stopReason)
    {
        foreach (var (finish, stop) in StopReasons)
        {
            if (stop == stopReason)
            {
                return finish;
            }
        }
        return "stop";
    }

    /// <summary>The chat <c>tool_choice</c> string for a Messages <c>tool_choice.type</c>; null for <c>tool</c> or an unknown type.</summary>
    public static string? ChatToolChoice(string? messagesType) =>
        Array.Find(ToolChoices, p => p.Messages == messagesType).Chat;

    /// <summary>The Messages <c>tool_choice.type</c> for a chat <c>tool_choice</c> string; null when there is none.</summary>
    public static string? MessagesToolChoice(string? chatChoice) =>
        Array.Find(ToolChoices, p => p.Chat == chatChoice).Messages;
}
