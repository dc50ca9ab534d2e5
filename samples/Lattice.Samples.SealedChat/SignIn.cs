using Lattice.Client;
using Microsoft.AspNetCore.Http.Extensions;
using Microsoft.Extensions.Options;

namespace Lattice.Samples.SealedChat;

/// <summary>Sign in with Lattice: the authorization code flow with PKCE, then a private-only client for the user.</summary>
public static class SignIn
{
    public static void MapSignIn(this WebApplication app)
    {
        app.MapGet("/", (HttpContext context, Sessions sessions) => sessions.Of(context) switch
        {
            { Lattice: null } => Html.Page("Sign in", """
                <h1>Sealed Chat</h1>
                <p>Chat with a model on your own machine. Lattice relays the conversation without being able to read it.</p>
                <p><a id="sign-in" href="/signin">Sign in with Lattice</a></p>
                """),
            { Runtime: null } => Results.Redirect("/runtimes"),
            { Runtime: { } runtime } => Chat.Page(runtime),
        });

        // Starts a sign-in: a fresh state and PKCE verifier, kept server-side; the browser goes to the consent page.
        app.MapGet("/signin", (HttpContext context, Sessions sessions, LatticeOAuthClient oauth, IOptions<SealedChatOptions> options) =>
        {
            var session = sessions.Of(context);
            session.SignOut();
            session.PendingSignIn = oauth.CreateAuthorizationRequest(options.Value.RedirectUri, SealedChatServices.Scopes);
            return TypedResults.Redirect(session.PendingSignIn.Url.AbsoluteUri);
        });

        // The gateway sends the browser back here with a code (or error=access_denied).
        app.MapGet("/callback", async (HttpContext context, Sessions sessions, LatticeOAuthClient oauth, IOptions<SealedChatOptions> options, CancellationToken cancellationToken) =>
        {
            var session = sessions.Of(context);
            if (session.PendingSignIn is not { } pending)
            {
                return Results.Redirect("/");
            }
            session.PendingSignIn = null;
            OAuthTokens tokens;
            try
            {
                tokens = await oauth.ExchangeCallbackAsync(pending, new Uri(context.Request.GetEncodedUrl()), cancellationToken);
            }
            catch (Exception failure) when (failure is LatticeException or InvalidOperationException)
            {
                return Results.Redirect(FailureScreens.UrlFor(failure));
            }
            session.Lattice = new LatticeClient(new LatticeClientOptions
            {
                Endpoint = options.Value.Gateway!,
                // Refreshes the access token as it expires; a revoked grant surfaces as a ReauthorizeException.
                TokenProvider = new OAuthTokenProvider(oauth, tokens),
                // Only the user's own runtimes: a call to anything else is refused before it is sent.
                CapacityPolicy = CapacityPolicy.PrivateOnly,
            });
            return Results.Redirect("/runtimes");
        });
    }
}
