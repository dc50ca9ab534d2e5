using System.CommandLine;
using Lattice.Gateway.Identity;

namespace Lattice.Cli.Commands;

/// <summary>
/// <c>lattice login</c> and <c>lattice logout</c>: Sign in with Lattice from a terminal with the device authorization
/// grant (client <c>lattice-cli</c>); the tokens live in <c>&lt;data-dir&gt;/oauth-token.json</c>.
/// </summary>
internal static class LoginCommands
{
    /// <summary>
    /// Everything the CLI client may ask for: every Lattice scope, refresh tokens, and the e-mail address so the CLI
    /// can say who signed in.
    /// </summary>
    public static readonly string[] DefaultScopes = [.. IdentityServices.GrantableScopes, "offline_access", "email"];

    private static Option<string> DataDirOption() => new("--data-dir")
    {
        Description = "Data directory: where the token is stored and whose env file names the gateway.",
        DefaultValueFactory = _ => EnvFile.DefaultDataDirectory,
    };

    private static Option<string?> GatewayOption() => new("--gateway") { Description = "Gateway URL (default: LATTICE_BASE_URL, or the env file of `lattice up`)." };

    private static HttpClient Http() => new(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(30) };

    public static Command CreateLogin()
    {
        var dataDir = DataDirOption();
        var gateway = GatewayOption();
        var scopes = new Option<string[]>("--scope") { Description = "A scope to ask for (repeatable); every Lattice scope plus offline_access and email when omitted.", AllowMultipleArgumentsPerToken = false };
        var printToken = new Option<bool>("--print-token") { Description = "Also print the access token (it is a secret: anyone holding it acts as you)." };
        var command = new Command("login", "Sign in with Lattice from this terminal (OAuth device authorization) and store the token.") { dataDir, gateway, scopes, printToken };
        command.SetAction(async (parse, ct) =>
        {
            var directory = Path.GetFullPath(parse.GetValue(dataDir)!);
            if (AdminApi.GatewayOrigin(directory, parse.GetValue(gateway)) is not { } origin)
            {
                return 2;
            }
            var requested = parse.GetValue(scopes) is { Length: > 0 } chosen ? chosen : DefaultScopes;
            using var http = Http();
            var client = new DeviceLogin(http, IdentityServices.CliClientId);

            var (endpoints, failure, detail) = await client.DiscoverAsync(origin, ct);
            if (endpoints is null)
            {
                await Console.Error.WriteLineAsync(DeviceLogin.Describe(failure, detail));
                return 1;
            }
            var (device, codeFailure, codeDetail) = await client.RequestCodeAsync(endpoints, requested, ct);
            if (device is null)
            {
                await Console.Error.WriteLineAsync(DeviceLogin.Describe(codeFailure, codeDetail));
                return 1;
            }

            Console.WriteLine($"To sign in to {origin.GetLeftPart(UriPartial.Authority)}, open this page in a browser:");
            Console.WriteLine();
            Console.WriteLine($"  {device.VerificationUri}");
            Console.WriteLine();
            Console.WriteLine("and enter the code");
            Console.WriteLine();
            Console.WriteLine($"  Code: {device.UserCode}");
            Console.WriteLine();
            if (device.VerificationUriComplete is { } complete)
            {
                Console.WriteLine($"Or open {complete}");
            }
            Console.WriteLine($"Waiting for approval (the code expires in {Math.Round(device.ExpiresIn.TotalMinutes)} minutes; Ctrl-C cancels)…");
            Console.Out.Flush();

            TokenResponse? token;
            try
            {
                (token, failure, detail) = await client.PollAsync(endpoints, device, TimeProvider.System, ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                await Console.Error.WriteLineAsync("Cancelled; not signed in.");
                return 130;
            }
            if (token is null)
            {
                await Console.Error.WriteLineAsync(DeviceLogin.Describe(failure, detail));
                return 1;
            }

            var claims = TokenClaims.Read(token.AccessToken);
            var expiresAt = token.ExpiresIn is { } seconds ? DateTimeOffset.UtcNow.AddSeconds(seconds).ToUnixTimeSeconds() : claims.ExpiresAt;
            var stored = new StoredToken(origin.GetLeftPart(UriPartial.Authority), IdentityServices.CliClientId, token.TokenType, token.AccessToken, token.RefreshToken,
                expiresAt, token.Scope, claims.Subject, claims.Email, claims.WorkspaceId);
            TokenFile.Write(directory, stored);

            Console.WriteLine();
            Console.WriteLine($"Signed in as {claims.Email ?? claims.Subject ?? "(unknown user)"}{(claims.Email is not null && claims.Subject is not null ? $" ({claims.Subject})" : "")}" +
                $"{(claims.WorkspaceId is null ? "" : $", workspace {claims.WorkspaceId}")}.");
            if (token.Scope is { Length: > 0 } granted)
            {
                Console.WriteLine($"Scopes: {granted}");
            }
            var expiry = expiresAt is { } at ? $"; the access token expires {DateTimeOffset.FromUnixTimeSeconds(at):u}" : "";
            Console.WriteLine($"Token saved to {TokenFile.PathIn(directory)} (readable by you only){expiry}.");
            if (token.RefreshToken is null)
            {
                Console.WriteLine("No refresh token was granted (offline_access was not allowed): sign in again when it expires.");
            }
            if (parse.GetValue(printToken))
            {
                Console.WriteLine(token.AccessToken);
            }
            return 0;
        });
        return command;
    }

    public static Command CreateLogout()
    {
        var dataDir = DataDirOption();
        var command = new Command("logout", "Revoke the stored sign-in at the gateway and delete the token file.") { dataDir };
        command.SetAction(async (parse, ct) =>
        {
            var directory = Path.GetFullPath(parse.GetValue(dataDir)!);
            if (TokenFile.Read(directory) is not { } stored)
            {
                Console.WriteLine(File.Exists(TokenFile.PathIn(directory)) ? "The token file is unreadable; deleting it." : "Not signed in.");
                TokenFile.Delete(directory);
                return 0;
            }
            using var http = Http();
            var client = new DeviceLogin(http, stored.ClientId);
            var revoked = false;
            string? detail;
            var (endpoints, failure, discoveryDetail) = await client.DiscoverAsync(new Uri(stored.Gateway), ct);
            if (endpoints?.Revocation is { } revocation)
            {
                // Revoking the refresh token revokes the whole grant, and with it every access token it issued.
                (revoked, detail) = stored.RefreshToken is { } refresh
                    ? await client.RevokeAsync(revocation, refresh, "refresh_token", ct)
                    : await client.RevokeAsync(revocation, stored.AccessToken, "access_token", ct);
            }
            else
            {
                detail = endpoints is null ? DeviceLogin.Describe(failure, discoveryDetail) : "the gateway has no revocation endpoint";
            }
            TokenFile.Delete(directory);
            if (!revoked)
            {
                await Console.Error.WriteLineAsync($"Deleted the local token, but could not revoke it at {stored.Gateway}: {detail}");
                return 1;
            }
            Console.WriteLine($"Signed out of {stored.Gateway}: the grant is revoked and {TokenFile.PathIn(directory)} is deleted.");
            return 0;
        });
        return command;
    }
}
