using System.Net;
using System.Text;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>
/// Malformed requests to the sign-in, consent and protocol endpoints get a 4xx in the endpoint's own shape
/// (OAuth errors from the protocol endpoints, the page from the sign-in form) — never a 500, never a hang. Two
/// answer 200 by design: introspecting an unknown token (<c>{"active":false}</c>, RFC 7662) and the "done" page.
/// </summary>
public sealed class IdentityBadRequestTests(OAuthGateway gateway) : IClassFixture<OAuthGateway>
{
    public static TheoryData<string, string, string?, string?, int> Cases => new()
    {
        { "POST", "account/login", "application/json", """{"email":"a@b.c","password":"x"}""", 400 },
        { "POST", "account/login", "application/x-www-form-urlencoded", "email=a%40b.c&password=x", 400 },
        { "POST", "account/login", null, null, 400 },
        { "POST", "account/logout", "application/json", "{}", 400 },
        { "GET", "connect/authorize", null, null, 400 },
        { "GET", "connect/authorize?client_id=nope&response_type=code", null, null, 400 },
        { "POST", "connect/authorize", "application/json", "{}", 400 },
        { "POST", "connect/authorize", "application/x-www-form-urlencoded", "decision=accept", 400 },
        { "POST", "connect/token", "application/json", """{"grant_type":"authorization_code"}""", 400 },
        { "POST", "connect/token", "application/x-www-form-urlencoded", "grant_type=password&username=a&password=b&client_id=lattice-cli", 400 },
        { "POST", "connect/token", "application/x-www-form-urlencoded", "grant_type=authorization_code&code=forged&client_id=lattice-cli&code_verifier=x", 400 },
        { "POST", "connect/token", "application/x-www-form-urlencoded", "grant_type=refresh_token&refresh_token=forged&client_id=lattice-cli", 400 },
        { "POST", "connect/device", "application/x-www-form-urlencoded", "client_id=unknown", 401 },
        { "POST", "connect/device", "application/x-www-form-urlencoded", "client_id=lattice-cli&scope=lattice:admin", 400 },
        { "POST", "connect/verify", "application/json", "{}", 400 },
        { "POST", "connect/revoke", "application/x-www-form-urlencoded", "token=x", 401 },
        { "POST", "connect/introspect", "application/x-www-form-urlencoded", "token=x&client_id=lattice-cli", 200 },
        { "GET", "connect/verify/done", null, null, 200 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Gets_a_client_error_not_a_server_error(string method, string path, string? contentType, string? body, int expected)
    {
        using var http = gateway.Client(null);
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        if (body is not null)
        {
            request.Content = new StringContent(body, Encoding.UTF8, contentType!);
        }
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        using var response = await http.SendAsync(request, cts.Token);
        var status = (int)response.StatusCode;
        var text = await response.Content.ReadAsStringAsync(cts.Token);
        Assert.True(status == expected, $"{method} {path} → {status} (expected {expected}): {text}");
    }
}
