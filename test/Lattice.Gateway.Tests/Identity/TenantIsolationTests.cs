using System.Net;
using System.Text.Json.Nodes;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>
/// The isolation matrix: a credential of workspace A (its developer key, and an access token of its user) never
/// reads or uses workspace B's runtimes, keys, apps, grants, members or models. B's resource answers exactly as
/// an id that does not exist (byte for byte, with the id swapped), so nothing leaks its existence.
/// </summary>
public sealed class TenantIsolationTests(TenantIsolationTests.World world) : IClassFixture<TenantIsolationTests.World>
{
    /// <summary>Two tenants with personal runtimes (one shared with the workspace, one owned by its user), grants, and a second user in A.</summary>
    public sealed class World : IAsyncLifetime
    {
        public OAuthGateway Server { get; } = new();

        public string TokenA { get; private set; } = "";
        public string TokenA2 { get; private set; } = "";
        public string TokenB { get; private set; } = "";
        public string RuntimeAShared { get; private set; } = "";
        public string RuntimeAOwned { get; private set; } = "";
        public string RuntimeBShared { get; private set; } = "";
        public string RuntimeBOwned { get; private set; } = "";
        public string KeyIdB { get; private set; } = "";
        public string GrantIdB { get; private set; } = "";

        public async Task InitializeAsync()
        {
            await Server.InitializeAsync();
            var a = Server.A;
            var b = Server.B;
            TokenA = await Credentials.TokenAsync(Server, a, OAuthGateway.AllLatticeScopes);
            TokenB = await Credentials.TokenAsync(Server, b, OAuthGateway.AllLatticeScopes);

            // A second person in workspace A, granting A's app.
            var email = $"a2-{Guid.NewGuid():N}@example.test";
            var user = (await OAuthGateway.PostAsync(Server.Admin, "admin/v1/users", new JsonObject { ["email"] = email, ["password"] = OAuthGateway.Password }))["id"]!.GetValue<string>();
            await OAuthGateway.PostAsync(Server.Admin, $"admin/v1/workspaces/{a.WorkspaceId}/members", new JsonObject { ["user_id"] = user });
            TokenA2 = await Credentials.TokenAsync(Server, a with { UserId = user, Email = email }, OAuthGateway.AllLatticeScopes);

            // A key's runtime belongs to the workspace; a token's to the user who granted it.
            RuntimeAShared = await CreateRuntimeAsync(a.Key, "a-shared");
            RuntimeAOwned = await CreateRuntimeAsync(TokenA, "a-owned");
            RuntimeBShared = await CreateRuntimeAsync(b.Key, "b-shared");
            RuntimeBOwned = await CreateRuntimeAsync(TokenB, "b-owned");

            using var bAdmin = Server.Client(b.Key);
            KeyIdB = JsonNode.Parse(await bAdmin.GetStringAsync($"admin/v1/workspaces/{b.WorkspaceId}/keys"))!["data"]![0]!["id"]!.GetValue<string>();
            GrantIdB = JsonNode.Parse(await bAdmin.GetStringAsync($"admin/v1/workspaces/{b.WorkspaceId}/grants"))!["data"]![0]!["id"]!.GetValue<string>();
        }

        private async Task<string> CreateRuntimeAsync(string credential, string name)
        {
            using var http = Server.Client(credential);
            var created = await OAuthGateway.PostAsync(http, "v1/personal-runtimes", new JsonObject { ["displayName"] = name });
            return created["runtime"]!["latticeId"]!.GetValue<string>();
        }

        public Task DisposeAsync() => Server.DisposeAsync();
    }

    private OAuthGateway Server => world.Server;

    private string CredentialOfA(string kind) => kind == "key" ? Server.A.Key : world.TokenA;

    /// <summary>The admin API answers a token 403 (tokens never hold an admin scope) and a key 404: the same for B's id as for none.</summary>
    private static HttpStatusCode AdminStatusFor(string kind) => kind == "key" ? HttpStatusCode.NotFound : HttpStatusCode.Forbidden;

    [Theory]
    [InlineData("key")]
    [InlineData("token")]
    public async Task Bs_personal_runtimes_are_not_there_for_A(string kind)
    {
        using var http = Server.Client(CredentialOfA(kind));
        foreach (var runtime in new[] { world.RuntimeBShared, world.RuntimeBOwned })
        {
            await ExpectSameAsMissingAsync(http, HttpStatusCode.NotFound, "GET", id => $"v1/personal-runtimes/{id}", runtime);
            await ExpectSameAsMissingAsync(http, HttpStatusCode.NotFound, "POST", id => $"v1/personal-runtimes/{id}/revoke", runtime);
            await ExpectSameAsMissingAsync(http, HttpStatusCode.NotFound, "GET", id => $"v1/models/lattice:personal:{id}", runtime);
            await ExpectSameAsMissingAsync(http, HttpStatusCode.NotFound, "POST", _ => "v1/chat/completions", runtime, id => Chat("lattice:personal:" + id));
            await ExpectSameAsMissingAsync(http, HttpStatusCode.NotFound, "POST", _ => "v1/tasks/chat.completions", runtime, id => Chat("lattice:personal:" + id));
            await ExpectSameAsMissingAsync(http, HttpStatusCode.NotFound, "POST", _ => "openai/v1/embeddings", runtime,
                id => new JsonObject { ["model"] = "lattice:personal:" + id, ["input"] = "hi" });
        }

        var listed = await RuntimeIdsAsync(http);
        Assert.DoesNotContain(world.RuntimeBShared, listed);
        Assert.DoesNotContain(world.RuntimeBOwned, listed);
        Assert.Contains(world.RuntimeAShared, listed);
        var models = await ModelIdsAsync(http);
        Assert.DoesNotContain("lattice:personal:" + world.RuntimeBShared, models);
        Assert.DoesNotContain("lattice:personal:" + world.RuntimeBOwned, models);
        Assert.Contains("lattice:personal:" + world.RuntimeAShared, models);
        Assert.Contains("lovelace:chat", models);

        // The revoke attempts changed nothing.
        using var b = Server.Client(Server.B.Key);
        foreach (var runtime in new[] { world.RuntimeBShared, world.RuntimeBOwned })
        {
            var record = JsonNode.Parse(await b.GetStringAsync($"v1/personal-runtimes/{runtime}"))!;
            Assert.Equal("unpaired", record["status"]!.GetValue<string>());
        }
    }

    [Theory]
    [InlineData("key")]
    [InlineData("token")]
    public async Task Bs_developer_keys_are_not_there_for_A(string kind)
    {
        using var http = Server.Client(CredentialOfA(kind));
        var status = AdminStatusFor(kind);
        await ExpectSameAsMissingAsync(http, status, "GET", ws => $"admin/v1/workspaces/{ws}/keys", Server.B.WorkspaceId);
        await ExpectSameAsMissingAsync(http, status, "POST", ws => $"admin/v1/workspaces/{ws}/keys", Server.B.WorkspaceId, _ => new JsonObject { ["name"] = "intruder" });
        await ExpectSameAsMissingAsync(http, status, "POST", key => $"admin/v1/keys/{key}/revoke", world.KeyIdB);

        using var b = Server.Client(Server.B.Key);
        Assert.Equal(HttpStatusCode.OK, (await b.GetAsync("v1/models")).StatusCode);
        var keys = JsonNode.Parse(await b.GetStringAsync($"admin/v1/workspaces/{Server.B.WorkspaceId}/keys"))!["data"]!.AsArray();
        Assert.DoesNotContain(keys, k => k!["name"]!.GetValue<string>() == "intruder");
    }

    [Theory]
    [InlineData("key")]
    [InlineData("token")]
    public async Task Bs_oauth_apps_are_not_there_for_A(string kind)
    {
        using var http = Server.Client(CredentialOfA(kind));
        var status = AdminStatusFor(kind);
        await ExpectSameAsMissingAsync(http, status, "GET", app => $"admin/v1/apps/{app}", Server.B.ClientId);
        await ExpectSameAsMissingAsync(http, status, "DELETE", app => $"admin/v1/apps/{app}", Server.B.ClientId);
        await ExpectSameAsMissingAsync(http, status, "DELETE", app => $"admin/v1/apps/{app}", Server.B.PublicClientId);
        await ExpectSameAsMissingAsync(http, status, "GET", ws => $"admin/v1/workspaces/{ws}/apps", Server.B.WorkspaceId);
        await ExpectSameAsMissingAsync(http, status, "POST", ws => $"admin/v1/workspaces/{ws}/apps", Server.B.WorkspaceId, _ => new JsonObject
        {
            ["name"] = "intruder",
            ["redirect_uris"] = new JsonArray(OAuthGateway.RedirectUri),
            ["scopes"] = new JsonArray("lattice:compute:inference"),
        });

        using var b = Server.Client(Server.B.Key);
        Assert.Equal(HttpStatusCode.OK, (await b.GetAsync($"admin/v1/apps/{Server.B.ClientId}")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await b.GetAsync($"admin/v1/apps/{Server.B.PublicClientId}")).StatusCode);
        var apps = JsonNode.Parse(await b.GetStringAsync($"admin/v1/workspaces/{Server.B.WorkspaceId}/apps"))!["data"]!.AsArray();
        Assert.Equal(2, apps.Count);
    }

    [Theory]
    [InlineData("key")]
    [InlineData("token")]
    public async Task Bs_grants_are_not_there_for_A(string kind)
    {
        using var http = Server.Client(CredentialOfA(kind));
        var status = AdminStatusFor(kind);
        await ExpectSameAsMissingAsync(http, status, "GET", ws => $"admin/v1/workspaces/{ws}/grants", Server.B.WorkspaceId);
        await ExpectSameAsMissingAsync(http, status, "POST", grant => $"admin/v1/grants/{grant}/revoke", world.GrantIdB);

        // B's user's token still works: the grant was not revoked.
        using var b = Server.Client(world.TokenB);
        Assert.Equal(HttpStatusCode.OK, (await b.GetAsync("v1/models")).StatusCode);
    }

    [Theory]
    [InlineData("key")]
    [InlineData("token")]
    public async Task Bs_members_are_not_there_for_A(string kind)
    {
        using var http = Server.Client(CredentialOfA(kind));
        var status = AdminStatusFor(kind);
        await ExpectSameAsMissingAsync(http, status, "GET", ws => $"admin/v1/workspaces/{ws}/members", Server.B.WorkspaceId);
        // Only operators add members, so A's credentials are refused before any workspace is looked at.
        await ExpectSameAsMissingAsync(http, HttpStatusCode.Forbidden, "POST", ws => $"admin/v1/workspaces/{ws}/members", Server.B.WorkspaceId, _ => new JsonObject { ["user_id"] = Server.A.UserId });
        await ExpectSameAsMissingAsync(http, status, "DELETE", ws => $"admin/v1/workspaces/{ws}/members/{Server.B.UserId}", Server.B.WorkspaceId);

        using var b = Server.Client(Server.B.Key);
        var members = JsonNode.Parse(await b.GetStringAsync($"admin/v1/workspaces/{Server.B.WorkspaceId}/members"))!["data"]!.AsArray()
            .Select(m => m!["user_id"]!.GetValue<string>()).ToList();
        Assert.Equal([Server.B.UserId], members);
    }

    [Fact]
    public async Task A_second_user_does_not_see_the_first_users_runtime_but_the_workspace_key_does()
    {
        using var second = Server.Client(world.TokenA2);
        var owned = world.RuntimeAOwned;
        await ExpectSameAsMissingAsync(second, HttpStatusCode.NotFound, "GET", id => $"v1/personal-runtimes/{id}", owned);
        await ExpectSameAsMissingAsync(second, HttpStatusCode.NotFound, "POST", id => $"v1/personal-runtimes/{id}/revoke", owned);
        await ExpectSameAsMissingAsync(second, HttpStatusCode.NotFound, "GET", id => $"v1/models/lattice:personal:{id}", owned);
        await ExpectSameAsMissingAsync(second, HttpStatusCode.NotFound, "POST", _ => "v1/chat/completions", owned, id => Chat("lattice:personal:" + id));
        Assert.DoesNotContain(owned, await RuntimeIdsAsync(second));
        Assert.DoesNotContain("lattice:personal:" + owned, await ModelIdsAsync(second));

        // The workspace's shared runtime is theirs to use: it is merely offline.
        Assert.Contains(world.RuntimeAShared, await RuntimeIdsAsync(second));
        Assert.Contains("lattice:personal:" + world.RuntimeAShared, await ModelIdsAsync(second));
        var (offline, body) = await Credentials.SendAsync(second, "POST", "v1/chat/completions", Chat("lattice:personal:" + world.RuntimeAShared));
        Assert.Equal(HttpStatusCode.Conflict, offline);
        Assert.Equal("runtime_unreachable", Credentials.Error(body)["code"]!.GetValue<string>());

        foreach (var credential in new[] { Server.A.Key, world.TokenA })
        {
            using var http = Server.Client(credential);
            var record = JsonNode.Parse(await http.GetStringAsync($"v1/personal-runtimes/{owned}"))!;
            Assert.Equal("unpaired", record["status"]!.GetValue<string>());
            Assert.Contains(owned, await RuntimeIdsAsync(http));
            Assert.Contains("lattice:personal:" + owned, await ModelIdsAsync(http));
        }
    }

    /// <summary>
    /// Sends the request for <paramref name="real"/> (B's, or another user's) and for an id of the same shape that
    /// exists nowhere; both must answer <paramref name="expected"/> with the same body once the id is swapped.
    /// </summary>
    private static async Task ExpectSameAsMissingAsync(HttpClient http, HttpStatusCode expected, string method, Func<string, string> path, string real,
        Func<string, JsonNode>? body = null)
    {
        var missing = Missing(real);
        var (realStatus, realBody) = await Credentials.SendAsync(http, method, path(real), body?.Invoke(real));
        var (missingStatus, missingBody) = await Credentials.SendAsync(http, method, path(missing), body?.Invoke(missing));
        Assert.True(missingStatus == expected, $"{method} {path(missing)}: {(int)missingStatus} {missingBody}");
        Assert.True(realStatus == expected, $"{method} {path(real)}: {(int)realStatus} {realBody}");
        Assert.Equal(missingBody.Replace(missing, "{id}", StringComparison.Ordinal), realBody.Replace(real, "{id}", StringComparison.Ordinal));
    }

    /// <summary>The same prefix and length, every other letter and digit a zero: an id that exists nowhere.</summary>
    private static string Missing(string id)
    {
        var prefix = id.IndexOf('_') + 1;
        return id[..prefix] + new string([.. id[prefix..].Select(c => char.IsAsciiLetterOrDigit(c) ? '0' : c)]);
    }

    private static JsonObject Chat(string model) => new()
    {
        ["model"] = model,
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
    };

    private static async Task<List<string>> RuntimeIdsAsync(HttpClient http) =>
        JsonNode.Parse(await http.GetStringAsync("v1/personal-runtimes"))!["runtimes"]!.AsArray().Select(r => r!["latticeId"]!.GetValue<string>()).ToList();

    private static async Task<List<string>> ModelIdsAsync(HttpClient http) =>
        JsonNode.Parse(await http.GetStringAsync("v1/models"))!["data"]!.AsArray().Select(m => m!["id"]!.GetValue<string>()).ToList();
}
