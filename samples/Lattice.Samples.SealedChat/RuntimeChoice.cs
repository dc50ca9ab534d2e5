using Lattice.Client;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Mvc;

namespace Lattice.Samples.SealedChat;

/// <summary>The user picks one of their reachable personal runtimes that can take sealed chats.</summary>
public static class RuntimeChoice
{
    private const string ChatTask = "chat.completions";

    public static void MapRuntimeChoice(this WebApplication app)
    {
        app.MapGet("/runtimes", async (HttpContext context, Sessions sessions, IAntiforgery antiforgery, CancellationToken cancellationToken) =>
        {
            if (sessions.Of(context).Lattice is not { } lattice)
            {
                return Results.Redirect("/");
            }
            IReadOnlyList<PersonalRuntime> reachable;
            try
            {
                reachable = await lattice.Runtimes.ListReachableAsync(ChatTask, cancellationToken: cancellationToken);
            }
            catch (LatticeException failure)
            {
                return Results.Redirect(FailureScreens.UrlFor(failure));
            }
            var sealable = reachable.Where(r => r.PublicWorkKey is not null).ToList();
            if (sealable.Count == 0)
            {
                return Results.Redirect("/problem/" + FailureScreens.SelectRuntime);
            }
            var token = antiforgery.GetAndStoreTokens(context);
            var buttons = string.Concat(sealable.Select(r =>
                $"""<li><button name="runtime" value="{Html.Encode(r.LatticeId)}">Use {Html.Encode(r.DisplayName)}</button> {Html.Encode(string.Join(", ", r.Capabilities!.Where(c => c.Task == ChatTask).Select(c => c.Model)))}</li>"""));
            return Html.Page("Choose a runtime", $"""
                <h1>Choose a runtime</h1>
                <p>Your personal runtimes that are online now. The chat goes to the one you pick, and nowhere else.</p>
                <form method="post" action="/runtimes">
                <input type="hidden" name="{Html.Encode(token.FormFieldName)}" value="{Html.Encode(token.RequestToken)}">
                <ul>{buttons}</ul>
                </form>
                """);
        });

        app.MapPost("/runtimes", async ([FromForm] string runtime, HttpContext context, Sessions sessions, CancellationToken cancellationToken) =>
        {
            var session = sessions.Of(context);
            if (session.Lattice is not { } lattice)
            {
                return Results.Redirect("/");
            }
            try
            {
                // Read it again: its status now, and the work key the chat will be sealed to.
                session.Runtime = await lattice.Runtimes.GetAsync(runtime, cancellationToken);
                return Results.Redirect("/");
            }
            catch (LatticeException failure)
            {
                return Results.Redirect(FailureScreens.UrlFor(failure));
            }
        });
    }
}
