using System.Collections.Concurrent;
using System.Security.Cryptography;
using Lattice.Client;

namespace Lattice.Samples.SealedChat;

/// <summary>What the app keeps for one browser, server-side: tokens and the chosen runtime never reach the page.</summary>
public sealed class Session
{
    /// <summary>The sign-in in progress: its state and PKCE verifier, until the callback.</summary>
    public AuthorizationRequest? PendingSignIn { get; set; }

    /// <summary>The signed-in user's client: its token provider refreshes the access token and reports a revoked grant.</summary>
    public LatticeClient? Lattice { get; set; }

    /// <summary>The runtime the user chose (with the work key its answers are sealed to).</summary>
    public PersonalRuntime? Runtime { get; set; }

    public void SignOut()
    {
        Lattice?.Dispose();
        Lattice = null;
        Runtime = null;
    }
}

/// <summary>
/// Sessions in memory, keyed by a random cookie. A real app would use its own session or user store (and keep the
/// refresh token there: <see cref="OAuthTokenProvider.Refreshed"/> hands over each rotated one).
/// </summary>
public sealed class Sessions
{
    private const string Cookie = "sealed_chat_session";
    private readonly ConcurrentDictionary<string, Session> _sessions = new(StringComparer.Ordinal);

    public Session Of(HttpContext context)
    {
        if (context.Request.Cookies.TryGetValue(Cookie, out var id) && _sessions.TryGetValue(id, out var existing))
        {
            return existing;
        }
        id = Convert.ToHexString(RandomNumberGenerator.GetBytes(32));
        // Lax, not Strict: the browser must send it on the gateway's redirect back to /callback.
        context.Response.Cookies.Append(Cookie, id, new CookieOptions { HttpOnly = true, SameSite = SameSiteMode.Lax, IsEssential = true });
        return _sessions.GetOrAdd(id, _ => new Session());
    }
}
