using System.Collections.Concurrent;
using System.Security.Cryptography;
using Lattice.Client;
using Microsoft.Extensions.AI;

namespace Lattice.Samples.SealedChat;

/// <summary>What the app keeps for one browser, server-side: tokens and the chosen runtime never reach the page.</summary>
public sealed class Session
{
    private readonly Lock _gate = new();
    private LatticeClient? _lattice;
    private PersonalRuntime? _runtime;
    private LatticeChatClient? _sealedChat;

    /// <summary>The sign-in in progress: its state and PKCE verifier, until the callback.</summary>
    public AuthorizationRequest? PendingSignIn { get; set; }

    /// <summary>The signed-in user's client: its token provider refreshes the access token and reports a revoked grant.</summary>
    public LatticeClient? Lattice
    {
        get => _lattice;
        set
        {
            lock (_gate)
            {
                DropSealedChat();
                _lattice = value;
            }
        }
    }

    /// <summary>The runtime the user chose (with the work key its answers are sealed to).</summary>
    public PersonalRuntime? Runtime
    {
        get => _runtime;
        set
        {
            lock (_gate)
            {
                DropSealedChat();
                _runtime = value;
            }
        }
    }

    /// <summary>
    /// The sealed chat client for the chosen runtime, made on the first chat and reused by every later one: its calls
    /// share its sealing sessions (one key pair and key agreement per 1,000 calls or 10 minutes, made ahead of them),
    /// where a client per chat would make one for every message. Choosing another runtime, or signing out, forgets it
    /// (and its secrets).
    /// </summary>
    /// <exception cref="SealedDispatchUnsupportedException">The runtime publishes no work key.</exception>
    public IChatClient SealedChat(LatticeClient lattice, PersonalRuntime runtime)
    {
        lock (_gate)
        {
            if (_sealedChat is null || !ReferenceEquals(lattice, _lattice) || !ReferenceEquals(runtime, _runtime))
            {
                DropSealedChat();
                _sealedChat = lattice.GetSealedChatClient(runtime);
            }
            return _sealedChat;
        }
    }

    public void SignOut()
    {
        lock (_gate)
        {
            DropSealedChat();
            _lattice?.Dispose();
            _lattice = null;
            _runtime = null;
        }
    }

    private void DropSealedChat()
    {
        _sealedChat?.Dispose();
        _sealedChat = null;
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
