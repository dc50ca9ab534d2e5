using Lattice.Client;

namespace Lattice.Samples.SealedChat;

/// <summary>
/// Every failure ends on one of five screens, each saying what the user can do about it. The SDK's exception types
/// carry the decision: no parsing of messages or status codes.
/// </summary>
public static class FailureScreens
{
    public const string SelectRuntime = "select_runtime";
    public const string Reauthorize = "reauthorize";
    public const string ReconnectRuntime = "reconnect_runtime";
    public const string RetryLater = "retry_later";
    public const string Support = "support";

    private sealed record Screen(string Title, string Message, string ActionUrl, string Action);

    private static readonly Dictionary<string, Screen> Screens = new(StringComparer.Ordinal)
    {
        [SelectRuntime] = new("Choose a runtime", "None of your runtimes is online, or none is chosen. Start yours (lattice daemon), then choose it.", "/runtimes", "Choose a runtime"),
        [Reauthorize] = new("Sign in again", "Your permission for Sealed Chat was withdrawn or has run out.", "/signin", "Sign in with Lattice"),
        [ReconnectRuntime] = new("Reconnect your runtime", "Your runtime is offline. Start it again (lattice daemon), then retry.", "/", "Retry"),
        [RetryLater] = new("Try again later", "Lattice is busy, or your runtime's relay is unavailable for the moment.", "/", "Retry"),
        [Support] = new("Something went wrong", "This was not expected. If it keeps happening, contact support with the request id below.", "/", "Back to the chat"),
    };

    /// <summary>The screen for <paramref name="failure"/>.</summary>
    public static string For(Exception failure) => failure switch
    {
        ReauthorizeException => Reauthorize,                      // revoked grant, spent refresh token, consent denied
        RuntimeUnreachableException => ReconnectRuntime,           // the chosen runtime is offline (or revoked)
        NoReachableRuntimeException or PersonalLatticeNotFoundException or SealedDispatchUnsupportedException => SelectRuntime,
        RateLimitExceededException or RelayUnavailableException or CountersUnavailableException or ExecutionTimeoutException => RetryLater,
        _ => Support,
    };

    /// <summary>The screen's address, with the request id when the gateway gave one (for support).</summary>
    public static string UrlFor(Exception failure) =>
        "/problem/" + For(failure) + (failure is LatticeException { RequestId: { } id } ? "?request_id=" + Uri.EscapeDataString(id) : "");

    public static void MapFailureScreens(this WebApplication app)
    {
        app.MapGet("/problem/{screen}", (string screen, string? request_id) =>
        {
            if (!Screens.TryGetValue(screen, out var shown))
            {
                return Html.Page("Not found", "<h1>Not found</h1>", StatusCodes.Status404NotFound);
            }
            var requestId = request_id is null ? "" : $"""<p>Request id: <code id="request-id">{Html.Encode(request_id)}</code></p>""";
            return Html.Page(shown.Title, $"""
                <main id="screen" data-screen="{screen}">
                <h1>{Html.Encode(shown.Title)}</h1>
                <p id="message">{Html.Encode(shown.Message)}</p>
                {requestId}
                <p><a id="action" href="{shown.ActionUrl}">{Html.Encode(shown.Action)}</a></p>
                </main>
                """);
        });
    }
}
