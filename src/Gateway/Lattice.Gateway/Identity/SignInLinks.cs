using System.Collections.Concurrent;
using Lattice.Gateway.Auth;

namespace Lattice.Gateway.Identity;

/// <summary>
/// One-click sign-in links (<c>/account/login/link/{token}</c>) for the person <c>lattice up</c> made: the command
/// asks this node for one and prints it, and opening it starts that person's session and shows the console. A link
/// works once, only on the node that issued it, and only while that process runs — it is kept in memory, hashed. There
/// is no HTTP route that issues one: only code in the gateway's own process can.
/// </summary>
public sealed class SignInLinks
{
    public const string PathPrefix = "/account/login/link";
    private const string TokenPrefix = "lsl_";

    private readonly ConcurrentDictionary<string, string> _userByHash = new(StringComparer.Ordinal);

    /// <summary>A new link's path for <paramref name="userId"/>, relative to the gateway's root.</summary>
    public string Issue(string userId)
    {
        var token = ApiKeySecrets.NewSecret(TokenPrefix);
        _userByHash[ApiKeySecrets.Hash(token)] = userId;
        return $"{PathPrefix}/{token}";
    }

    /// <summary>The user the link was issued for, once; null for a link that is unknown or already used.</summary>
    public string? Redeem(string token) =>
        token.StartsWith(TokenPrefix, StringComparison.Ordinal) && token.Length <= 200 && _userByHash.TryRemove(ApiKeySecrets.Hash(token), out var userId)
            ? userId
            : null;

}

/// <summary>The route that redeems a <see cref="SignInLinks"/> link.</summary>
public static class SignInLinkEndpoints
{
    public static IEndpointRouteBuilder MapSignInLinks(this IEndpointRouteBuilder routes)
    {
        routes.MapGet(SignInLinks.PathPrefix + "/{token}", RedeemAsync);
        return routes;
    }

    private static async Task<IResult> RedeemAsync(HttpContext context, string token, SignInLinks links, UserService users)
    {
        if (links.Redeem(token) is not { } userId || await users.FindAsync(userId) is not { } user)
        {
            return Pages.Message("Sign-in link", "This sign-in link has been used already or is no longer valid. Sign in with your e-mail and password.",
                StatusCodes.Status404NotFound);
        }
        await IdentityEndpoints.StartSessionAsync(context, user);
        // Not cached, and no Referer onwards: the token is in this URL.
        context.Response.Headers.CacheControl = "no-store";
        context.Response.Headers["Referrer-Policy"] = "no-referrer";
        return Results.Redirect(Console.ConsoleClient.BasePath);
    }
}
