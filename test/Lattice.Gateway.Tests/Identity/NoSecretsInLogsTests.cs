using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>
/// With every log level on (Trace), a whole session — sign-in, consent, token exchange, refresh, dispatch,
/// revocation, failed attempts — leaves no password, key, client secret, token, code or prompt in the logs.
/// </summary>
public sealed class NoSecretsInLogsTests : IAsyncLifetime
{
    private const string Prompt = "my very private prompt about otters";
    private readonly OAuthGateway _gateway = OAuthGateway.With([], LogLevel.Trace);

    public Task InitializeAsync() => _gateway.InitializeAsync();

    public Task DisposeAsync() => _gateway.DisposeAsync();

    [Fact]
    public async Task A_whole_session_logs_no_secret_token_or_prompt()
    {
        var a = _gateway.A;
        var tokens = await CodeFlow.RunAsync(_gateway, a, a.ClientId, a.ClientSecret, ["lattice:compute:inference", "offline_access"]);
        var access = tokens["access_token"]!.GetValue<string>();
        var refresh = tokens["refresh_token"]!.GetValue<string>();
        var rotated = await CodeFlow.TokenAsync(_gateway, new()
        {
            ["grant_type"] = "refresh_token", ["refresh_token"] = refresh, ["client_id"] = a.ClientId, ["client_secret"] = a.ClientSecret,
        });

        using (var api = _gateway.Client(access))
        using (var chat = await api.PostAsJsonAsync("v1/chat/completions", new JsonObject
        {
            ["model"] = "lovelace:chat",
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = Prompt }),
        }))
        {
            var answer = await chat.Content.ReadAsStringAsync();
            Assert.True(chat.StatusCode == HttpStatusCode.OK, answer);
            Assert.Contains(Prompt, answer);
        }
        using (var bad = _gateway.Client(a.Key + "x"))
        {
            (await bad.GetAsync("v1/models")).Dispose();
        }
        using (var browser = _gateway.NewBrowser())
        {
            (await browser.SignInAsync(a.Email, OAuthGateway.Password + "!")).Dispose();
        }
        using (var http = _gateway.Client(null))
        {
            (await http.PostAsync("connect/revoke", new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["token"] = rotated["refresh_token"]!.GetValue<string>(), ["client_id"] = a.ClientId, ["client_secret"] = a.ClientSecret,
            }))).Dispose();
        }

        var logs = string.Join('\n', _gateway.Logs);
        // The log really was on: OpenIddict traced the requests it handled.
        Assert.Contains("OpenIddict", logs);
        string[] secrets =
        [
            OAuthGateway.Password, a.Key, a.ClientSecret, OAuthGateway.AdminKey, OAuthGateway.UpstreamKey,
            access, refresh, rotated["access_token"]!.GetValue<string>(), rotated["refresh_token"]!.GetValue<string>(),
            access.Split('.')[2], Prompt,
        ];
        foreach (var secret in secrets)
        {
            Assert.False(logs.Contains(secret, StringComparison.Ordinal), $"the logs contain a secret ({secret[..Math.Min(8, secret.Length)]}…)");
        }
    }
}
