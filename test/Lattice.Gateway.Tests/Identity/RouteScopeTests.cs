using System.Net;
using System.Text.Json.Nodes;
using Lattice.Gateway.Auth;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Lattice.Gateway.Tests.Identity;

/// <summary>
/// Every route of the real route table, by rule: none is reachable without its credential and scope. A route added
/// without a rule here fails <see cref="Every_route_in_the_route_table_has_a_rule"/>.
/// </summary>
public sealed class RouteScopeTests(RouteScopeTests.Gateway fixture) : IClassFixture<RouteScopeTests.Gateway>
{
    /// <summary>How a route is guarded.</summary>
    public enum Guard
    {
        /// <summary>Anonymous on purpose: health, sign-in pages, the OAuth protocol endpoints.</summary>
        Public,

        /// <summary>The runtime link: its own credential (a bootstrap token, then a runtime credential), never a key or token.</summary>
        RuntimeCredential,

        /// <summary>
        /// <c>/metrics</c>: the scrape token (<c>Lattice:Metrics:Token</c>), never a key or access token, or a loopback address when
        /// <c>Lattice:Metrics:AllowLoopback</c> is set (neither here; see Telemetry/MetricsTests).
        /// </summary>
        MetricsToken,

        /// <summary>A developer key or access token carrying <see cref="Rule.Scope"/> (or <see cref="Rule.Alternative"/>).</summary>
        Scope,

        /// <summary>
        /// The channel between gateway nodes: the cluster secret only. To anyone else — and to everyone on a gateway
        /// without one, like this class's — it is the 404 of a URL that does not exist.
        /// </summary>
        ClusterSecret,
    }

    /// <param name="Path">A concrete request path with plausible ids, in the workspace of tenant A.</param>
    /// <param name="TokenMayHold">
    /// Whether a third-party app's access token can ever carry the scope. The operator's admin scope is for keys only; the
    /// workspace admin scope is for keys and the console's own client (see Console/ConsoleClientTests).
    /// </param>
    public sealed record Rule(string Method, string Pattern, Guard Guard, string Path, string? Scope = null, string? Alternative = null, bool TokenMayHold = true)
    {
        public string[] Satisfying => Alternative is null ? [Scope!] : [Scope!, Alternative];

        public override string ToString() => $"{Method} {Pattern}";
    }

    /// <summary>The gateway with the failed-authentication limit off: this class fails authentication on purpose, a lot.</summary>
    public sealed class Gateway : IAsyncLifetime
    {
        public OAuthGateway Server { get; } = OAuthGateway.With(new() { ["Lattice:FailedAuthPerMinute"] = "0" });

        private readonly Dictionary<string, Task<string>> _tokens = [];
        private readonly SemaphoreSlim _gate = new(1, 1);

        public Task InitializeAsync() => Server.InitializeAsync();

        public Task DisposeAsync() => Server.DisposeAsync();

        /// <summary>An access token of A's user with exactly <paramref name="scopes"/>, made once per scope set.</summary>
        public async Task<string> TokenAsync(IEnumerable<string> scopes)
        {
            var set = scopes.Order(StringComparer.Ordinal).ToArray();
            var name = string.Join(' ', set);
            await _gate.WaitAsync();
            try
            {
                if (!_tokens.TryGetValue(name, out var token))
                {
                    _tokens[name] = token = Credentials.TokenAsync(Server, Server.A, set);
                }
                return await token;
            }
            finally
            {
                _gate.Release();
            }
        }
    }

    private OAuthGateway Server => fixture.Server;

    public static IReadOnlyList<Rule> Rules(OAuthGateway g)
    {
        var ws = g.A.WorkspaceId;
        const string Inference = Scopes.Inference;
        const string Catalog = Scopes.CatalogRead;
        const string Manage = Scopes.PersonalRuntimeManage;
        const string Admin = Scopes.Admin;
        const string WorkspaceAdmin = Scopes.WorkspaceAdmin;
        var rules = new List<Rule>
        {
            new("GET", "/healthz", Guard.Public, "/healthz"),
            // Readiness, like liveness, is for probes that carry no credential; it names checks, never their errors.
            new("*", "/readyz", Guard.Public, "/readyz"),
            new("*", "/metrics", Guard.MetricsToken, "/metrics"),
            // The API reference is published documentation (the page at /docs is middleware, not a route).
            new("GET", "/openapi.json", Guard.Public, "/openapi.json"),
            new("GET", "/account/login", Guard.Public, "/account/login"),
            new("POST", "/account/login", Guard.Public, "/account/login"),
            new("POST", "/account/logout", Guard.Public, "/account/logout"),
            new("GET", "/connect/authorize", Guard.Public, "/connect/authorize"),
            new("POST", "/connect/authorize", Guard.Public, "/connect/authorize"),
            new("POST", "/connect/token", Guard.Public, "/connect/token"),
            new("GET", "/connect/verify", Guard.Public, "/connect/verify"),
            new("POST", "/connect/verify", Guard.Public, "/connect/verify"),
            new("GET", "/connect/verify/done", Guard.Public, "/connect/verify/done"),
            // A one-click sign-in link: only code in the gateway's process (lattice up) issues one; the token is the credential.
            new("GET", "/account/login/link/{token}", Guard.Public, "/account/login/link/lsl_unknown"),
            new("GET", "/account/invitations/{token}", Guard.Public, "/account/invitations/inv_unknown"),
            new("POST", "/account/invitations/{token}", Guard.Public, "/account/invitations/inv_unknown"),
            // The console's page, script and stylesheet: it signs in through /connect/authorize and calls the API like any client.
            new("GET", "/console", Guard.Public, "/console"),
            new("GET", "/console/{**path}", Guard.Public, "/console/keys"),
            // Unknown URLs: the OpenAI 404 envelope, for anyone.
            new("*", "{*path:nonfile}", Guard.Public, "/no/such/route"),

            new("POST", "/v1/runtimes/pair", Guard.RuntimeCredential, "/v1/runtimes/pair"),
            new("*", "/v1/runtimes/connect", Guard.RuntimeCredential, "/v1/runtimes/connect"),
            new("GET", "/v1/runtimes/me", Guard.RuntimeCredential, "/v1/runtimes/me"),

            new("*", "/internal/v1/runtimes/{latticeId}/dispatch", Guard.ClusterSecret, "/internal/v1/runtimes/lat_00000000000000000000/dispatch"),
            new("*", "/internal/v1/hops/{hop}/cancel", Guard.ClusterSecret, "/internal/v1/hops/1/cancel"),

            new("POST", "/v1/personal-runtimes", Guard.Scope, "/v1/personal-runtimes", Manage),
            new("GET", "/v1/personal-runtimes", Guard.Scope, "/v1/personal-runtimes", Inference, Manage),
            new("GET", "/v1/personal-runtimes/{latticeId}", Guard.Scope, "/v1/personal-runtimes/lat_00000000000000000000", Inference, Manage),
            new("POST", "/v1/personal-runtimes/{latticeId}/revoke", Guard.Scope, "/v1/personal-runtimes/lat_00000000000000000000/revoke", Manage),
            new("GET", "/v1/usage/requests", Guard.Scope, "/v1/usage/requests", Scopes.UsageRead),
            new("GET", "/v1/usage", Guard.Scope, "/v1/usage?start_time=0&end_time=60", Scopes.UsageRead),
            // Invoices are the workspace's: an app's access token, whatever its scopes, is refused (403 naming the scope); only an
            // owner's console token, which also holds lattice:workspace:admin, reads them (Console/ConsoleClientTests).
            new("GET", "/v1/invoices", Guard.Scope, "/v1/invoices", Scopes.UsageRead, TokenMayHold: false),
            new("GET", "/v1/invoices/{id}", Guard.Scope, "/v1/invoices/in_202601_000000000000", Scopes.UsageRead, TokenMayHold: false),
            new("GET", "/v1/invoices/{id}/lines.csv", Guard.Scope, "/v1/invoices/in_202601_000000000000/lines.csv", Scopes.UsageRead, TokenMayHold: false),

            new("POST", "/admin/v1/workspaces", Guard.Scope, "/admin/v1/workspaces", Admin, TokenMayHold: false),
            new("GET", "/admin/v1/workspaces", Guard.Scope, "/admin/v1/workspaces", Admin, TokenMayHold: false),
            new("POST", "/admin/v1/users", Guard.Scope, "/admin/v1/users", Admin, TokenMayHold: false),
            new("GET", "/admin/v1/users", Guard.Scope, "/admin/v1/users", Admin, TokenMayHold: false),
            // Only the operator vouches for an address: no token, and no workspace admin, verifies one.
            new("POST", "/admin/v1/users/{userId}/verify-email", Guard.Scope, "/admin/v1/users/usr_unknown/verify-email", Admin, TokenMayHold: false),
            new("GET", "/admin/v1/task-classes", Guard.Scope, "/admin/v1/task-classes", Admin, TokenMayHold: false),
            new("GET", "/admin/v1/task-classes/{name}", Guard.Scope, "/admin/v1/task-classes/chat.completions", Admin, TokenMayHold: false),
            new("POST", "/admin/v1/task-classes", Guard.Scope, "/admin/v1/task-classes", Admin, TokenMayHold: false),
            new("DELETE", "/admin/v1/task-classes/{name}", Guard.Scope, "/admin/v1/task-classes/no.such.task", Admin, TokenMayHold: false),
            new("POST", "/admin/v1/runtimes", Guard.Scope, "/admin/v1/runtimes", Admin, TokenMayHold: false),
            new("POST", "/admin/v1/runtimes/{latticeId}/revoke", Guard.Scope, "/admin/v1/runtimes/lat_00000000000000000000/revoke", Admin, TokenMayHold: false),
            new("GET", "/admin/v1/models", Guard.Scope, "/admin/v1/models", Admin, TokenMayHold: false),
            new("POST", "/admin/v1/models", Guard.Scope, "/admin/v1/models", Admin, TokenMayHold: false),
            new("PUT", "/admin/v1/models/{**id}", Guard.Scope, "/admin/v1/models/lovelace:no-such-model", Admin, TokenMayHold: false),
            new("DELETE", "/admin/v1/models/{**id}", Guard.Scope, "/admin/v1/models/lovelace:no-such-model", Admin, TokenMayHold: false),
            new("GET", "/admin/v1/workspaces/{workspaceId}/billing", Guard.Scope, $"/admin/v1/workspaces/{ws}/billing", Admin, TokenMayHold: false),
            new("PUT", "/admin/v1/workspaces/{workspaceId}/billing", Guard.Scope, $"/admin/v1/workspaces/{ws}/billing", Admin, TokenMayHold: false),

            new("POST", "/admin/v1/workspaces/{workspaceId}/keys", Guard.Scope, $"/admin/v1/workspaces/{ws}/keys", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("GET", "/admin/v1/workspaces/{workspaceId}/keys", Guard.Scope, $"/admin/v1/workspaces/{ws}/keys", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("GET", "/admin/v1/workspaces/{workspaceId}/prices", Guard.Scope, $"/admin/v1/workspaces/{ws}/prices", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("PUT", "/admin/v1/workspaces/{workspaceId}/prices", Guard.Scope, $"/admin/v1/workspaces/{ws}/prices", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("POST", "/admin/v1/keys/{keyId}/revoke", Guard.Scope, "/admin/v1/keys/key_00000000000000000000/revoke", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("GET", "/admin/v1/workspaces/{workspaceId}/limits", Guard.Scope, $"/admin/v1/workspaces/{ws}/limits", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("PUT", "/admin/v1/workspaces/{workspaceId}/limits", Guard.Scope, $"/admin/v1/workspaces/{ws}/limits", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("GET", "/admin/v1/keys/{keyId}/limits", Guard.Scope, "/admin/v1/keys/key_00000000000000000000/limits", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("PUT", "/admin/v1/keys/{keyId}/limits", Guard.Scope, "/admin/v1/keys/key_00000000000000000000/limits", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("PATCH", "/admin/v1/keys/{keyId}", Guard.Scope, "/admin/v1/keys/key_00000000000000000000", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("GET", "/admin/v1/apps/{clientId}/limits", Guard.Scope, "/admin/v1/apps/app_00000000000000000000/limits", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("PUT", "/admin/v1/apps/{clientId}/limits", Guard.Scope, "/admin/v1/apps/app_00000000000000000000/limits", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("POST", "/admin/v1/workspaces/{workspaceId}/budgets", Guard.Scope, $"/admin/v1/workspaces/{ws}/budgets", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("GET", "/admin/v1/workspaces/{workspaceId}/budgets", Guard.Scope, $"/admin/v1/workspaces/{ws}/budgets", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("GET", "/admin/v1/budgets/{budgetId}", Guard.Scope, "/admin/v1/budgets/bud_00000000000000000000", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("PATCH", "/admin/v1/budgets/{budgetId}", Guard.Scope, "/admin/v1/budgets/bud_00000000000000000000", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("DELETE", "/admin/v1/budgets/{budgetId}", Guard.Scope, "/admin/v1/budgets/bud_00000000000000000000", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("GET", "/admin/v1/workspaces/{workspaceId}/members", Guard.Scope, $"/admin/v1/workspaces/{ws}/members", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("POST", "/admin/v1/workspaces/{workspaceId}/members", Guard.Scope, $"/admin/v1/workspaces/{ws}/members", Admin, TokenMayHold: false),
            new("DELETE", "/admin/v1/workspaces/{workspaceId}/members/{userId}", Guard.Scope, $"/admin/v1/workspaces/{ws}/members/usr_00000000000000000000", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("POST", "/admin/v1/workspaces/{workspaceId}/apps", Guard.Scope, $"/admin/v1/workspaces/{ws}/apps", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("GET", "/admin/v1/workspaces/{workspaceId}/apps", Guard.Scope, $"/admin/v1/workspaces/{ws}/apps", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("GET", "/admin/v1/apps/{clientId}", Guard.Scope, $"/admin/v1/apps/{g.A.ClientId}", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("DELETE", "/admin/v1/apps/{clientId}", Guard.Scope, "/admin/v1/apps/app_00000000000000000000", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("POST", "/admin/v1/workspaces/{workspaceId}/invitations", Guard.Scope, $"/admin/v1/workspaces/{ws}/invitations", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("GET", "/admin/v1/workspaces/{workspaceId}/invitations", Guard.Scope, $"/admin/v1/workspaces/{ws}/invitations", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("POST", "/admin/v1/invitations/{invitationId}/revoke", Guard.Scope, "/admin/v1/invitations/ivt_00000000000000000000/revoke", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("GET", "/admin/v1/workspaces/{workspaceId}/grants", Guard.Scope, $"/admin/v1/workspaces/{ws}/grants", WorkspaceAdmin, Admin, TokenMayHold: false),
            new("POST", "/admin/v1/grants/{grantId}/revoke", Guard.Scope, "/admin/v1/grants/00000000-0000-0000-0000-000000000000/revoke", WorkspaceAdmin, Admin, TokenMayHold: false),
        };
        // Anthropic's surface: the same credentials and scope, its own envelope (see Code).
        rules.Add(new("POST", "/v1/messages", Guard.Scope, "/v1/messages", Inference));
        rules.Add(new("POST", "/v1/messages/count_tokens", Guard.Scope, "/v1/messages/count_tokens", Inference));
        // OpenAI's Responses API: inference; a kept response is found only in its own workspace (404 elsewhere).
        rules.Add(new("POST", "/v1/responses", Guard.Scope, "/v1/responses", Inference));
        rules.Add(new("GET", "/v1/responses/{id}", Guard.Scope, "/v1/responses/resp_00000000000000000000", Inference));
        rules.Add(new("DELETE", "/v1/responses/{id}", Guard.Scope, "/v1/responses/resp_00000000000000000000", Inference));
        rules.Add(new("GET", "/v1/responses/{id}/input_items", Guard.Scope, "/v1/responses/resp_00000000000000000000/input_items", Inference));
        foreach (var prefix in new[] { "/v1", "/openai/v1" })
        {
            rules.Add(new("POST", prefix + "/chat/completions", Guard.Scope, prefix + "/chat/completions", Inference));
            rules.Add(new("POST", prefix + "/embeddings", Guard.Scope, prefix + "/embeddings", Inference));
            rules.Add(new("POST", prefix + "/audio/transcriptions", Guard.Scope, prefix + "/audio/transcriptions", Inference));
            rules.Add(new("POST", prefix + "/tasks/{task}", Guard.Scope, prefix + "/tasks/chat.completions", Inference));
            rules.Add(new("GET", prefix + "/models", Guard.Scope, prefix + "/models", Catalog, Inference));
            rules.Add(new("GET", prefix + "/models/{**id}", Guard.Scope, prefix + "/models/lovelace:chat", Catalog, Inference));
        }
        return rules;
    }

    /// <summary>What the app actually routes: one (method, pattern) per method of every endpoint; "*" for any method.</summary>
    private static List<string> RouteTable(IServiceProvider services) =>
        services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .SelectMany(e => (e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods is { Count: > 0 } methods ? methods : ["*"])
                .Select(m => $"{m} {e.RoutePattern.RawText}"))
            .Distinct()
            .Order(StringComparer.Ordinal)
            .ToList();

    private IEnumerable<Rule> Scoped => Rules(Server).Where(r => r.Guard == Guard.Scope);

    [Fact]
    public void Every_route_in_the_route_table_has_a_rule()
    {
        var routed = RouteTable(Server.Services);
        var ruled = Rules(Server).Select(r => r.ToString()).Order(StringComparer.Ordinal).ToList();
        Assert.True(ruled.Count == ruled.Distinct().Count(), "A route has two rules.");
        var unruled = routed.Except(ruled).ToList();
        var stale = ruled.Except(routed).ToList();
        Assert.True(unruled.Count == 0, "Routes without a rule in RouteScopeTests.Rules (say which credential and scope each needs): " + string.Join(", ", unruled));
        Assert.True(stale.Count == 0, "Rules for routes that no longer exist: " + string.Join(", ", stale));
    }

    [Fact]
    public async Task Without_a_credential_no_protected_route_answers_but_401()
    {
        using var anonymous = Server.Client(null);
        using var bogusKey = Server.Client("sk_not_a_key_0123456789abcdef");
        using var bogusToken = Server.Client("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl");
        var failures = new List<string>();
        foreach (var rule in Rules(Server).Where(r => r.Guard is Guard.RuntimeCredential or Guard.Scope))
        {
            foreach (var (name, client) in new[] { ("none", anonymous), ("unknown key", bogusKey), ("forged token", bogusToken) })
            {
                var (status, body) = await SendAsync(client, rule);
                if (status != HttpStatusCode.Unauthorized || Code(body) != "invalid_api_key")
                {
                    failures.Add($"{rule} with {name}: {(int)status} {body}");
                }
            }
        }
        Assert.True(failures.Count == 0, string.Join('\n', failures));
    }

    [Fact]
    public async Task Without_a_credential_a_route_does_not_read_the_body()
    {
        // A body that cannot be bound must not get a 400 before the credential is checked: the request is
        // not the caller's to make, whatever it carries.
        using var anonymous = Server.Client(null);
        var failures = new List<string>();
        foreach (var rule in Scoped.Where(r => r.Method is "POST" or "PUT"))
        {
            using var request = new HttpRequestMessage(new HttpMethod(rule.Method), rule.Path.TrimStart('/'))
            {
                Content = new StringContent("{\"name\": ", System.Text.Encoding.UTF8, "application/json"),
            };
            using var response = await anonymous.SendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            if (response.StatusCode != HttpStatusCode.Unauthorized || Code(body) != "invalid_api_key")
            {
                failures.Add($"{rule}: {(int)response.StatusCode} {body}");
            }
        }
        Assert.True(failures.Count == 0, string.Join('\n', failures));
    }

    [Fact]
    public async Task Public_routes_need_no_credential()
    {
        using var anonymous = Server.Client(null);
        var failures = new List<string>();
        foreach (var rule in Rules(Server).Where(r => r.Guard == Guard.Public))
        {
            var (status, body) = await SendAsync(anonymous, rule);
            if (status is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden || Code(body) is "invalid_api_key" or "insufficient_scopes")
            {
                failures.Add($"{rule}: {(int)status} {body}");
            }
        }
        Assert.True(failures.Count == 0, string.Join('\n', failures));
    }

    [Fact]
    public async Task The_runtime_link_takes_no_developer_key_or_access_token()
    {
        var key = await Credentials.KeyAsync(Server, Server.A.WorkspaceId, Scopes.Known);
        var token = await fixture.TokenAsync(OAuthGateway.AllLatticeScopes);
        var failures = new List<string>();
        foreach (var rule in Rules(Server).Where(r => r.Guard == Guard.RuntimeCredential))
        {
            foreach (var (name, credential) in new[] { ("key", key), ("token", token) })
            {
                using var client = Server.Client(credential);
                var (status, body) = await SendAsync(client, rule, rule.Method == "POST" ? new JsonObject { ["bootstrapToken"] = credential } : null);
                if (status != HttpStatusCode.Unauthorized || Code(body) != "invalid_api_key")
                {
                    failures.Add($"{rule} with a {name}: {(int)status} {body}");
                }
            }
        }
        Assert.True(failures.Count == 0, string.Join('\n', failures));
    }

    [Fact]
    public async Task The_node_channel_is_a_404_to_keys_tokens_and_everyone_when_no_cluster_secret_is_configured()
    {
        var key = await Credentials.KeyAsync(Server, Server.A.WorkspaceId, Scopes.Known);
        var token = await fixture.TokenAsync(OAuthGateway.AllLatticeScopes);
        var failures = new List<string>();
        foreach (var rule in Rules(Server).Where(r => r.Guard == Guard.ClusterSecret))
        {
            foreach (var (name, credential) in new[] { ("none", null), ("key", key), ("token", token), ("admin key", OAuthGateway.AdminKey) })
            {
                using var client = Server.Client(credential);
                foreach (var method in new[] { "POST", "GET" })
                {
                    var (status, body) = await Credentials.SendAsync(client, method, rule.Path.TrimStart('/'), new JsonObject { ["model"] = "lattice:personal:lat_00000000000000000000" });
                    if (status != HttpStatusCode.NotFound || Code(body) != "not_found")
                    {
                        failures.Add($"{method} {rule.Pattern} with {name}: {(int)status} {body}");
                    }
                }
            }
        }
        Assert.True(failures.Count == 0, string.Join('\n', failures));
    }

    [Fact]
    public async Task A_developer_key_lacking_the_scope_gets_403_naming_it()
    {
        var failures = new List<string>();
        foreach (var group in Scoped.GroupBy(r => string.Join(' ', r.Satisfying)))
        {
            // Every other scope there is, so only the one that matters is missing.
            var key = await Credentials.KeyAsync(Server, Server.A.WorkspaceId, Scopes.Known.Except(group.First().Satisfying));
            using var client = Server.Client(key);
            foreach (var rule in group)
            {
                await ExpectMissingScopeAsync(client, rule, failures, "key");
            }
        }
        Assert.True(failures.Count == 0, string.Join('\n', failures));
    }

    [Fact]
    public async Task A_developer_key_with_the_scope_gets_through()
    {
        var failures = new List<string>();
        foreach (var scope in Scoped.SelectMany(r => r.Satisfying).Distinct())
        {
            var key = await Credentials.KeyAsync(Server, Server.A.WorkspaceId, [scope]);
            using var client = Server.Client(key);
            foreach (var rule in Scoped.Where(r => r.Satisfying.Contains(scope)))
            {
                await ExpectThroughAsync(client, rule, failures, $"key with only {scope}");
            }
        }
        Assert.True(failures.Count == 0, string.Join('\n', failures));
    }

    [Fact]
    public async Task An_access_token_lacking_the_scope_gets_403_naming_it()
    {
        var failures = new List<string>();
        foreach (var group in Scoped.Where(r => r.TokenMayHold).GroupBy(r => string.Join(' ', r.Satisfying)))
        {
            var token = await fixture.TokenAsync(OAuthGateway.AllLatticeScopes.Except(group.First().Satisfying));
            using var client = Server.Client(token);
            foreach (var rule in group)
            {
                await ExpectMissingScopeAsync(client, rule, failures, "token");
            }
        }
        // The admin API is for keys (and the console): no third-party app's token, however wide its grant, reaches it.
        using (var widest = Server.Client(await fixture.TokenAsync(OAuthGateway.AllLatticeScopes)))
        {
            foreach (var rule in Scoped.Where(r => !r.TokenMayHold))
            {
                await ExpectMissingScopeAsync(widest, rule, failures, "token with every scope");
            }
        }
        Assert.True(failures.Count == 0, string.Join('\n', failures));
    }

    [Fact]
    public async Task An_access_token_with_the_scope_gets_through()
    {
        var failures = new List<string>();
        foreach (var scope in Scoped.Where(r => r.TokenMayHold).SelectMany(r => r.Satisfying).Distinct())
        {
            using var client = Server.Client(await fixture.TokenAsync([scope]));
            foreach (var rule in Scoped.Where(r => r.TokenMayHold && r.Satisfying.Contains(scope)))
            {
                await ExpectThroughAsync(client, rule, failures, $"token with only {scope}");
            }
        }
        Assert.True(failures.Count == 0, string.Join('\n', failures));
    }

    [Fact]
    public async Task Streaming_over_SSE_needs_only_the_inference_scope()
    {
        var body = new JsonObject
        {
            ["model"] = "lovelace:chat",
            ["stream"] = true,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
        };
        var key = await Credentials.KeyAsync(Server, Server.A.WorkspaceId, [Scopes.Inference]);
        var token = await fixture.TokenAsync([Scopes.Inference]);
        foreach (var credential in new[] { key, token })
        {
            using var client = Server.Client(credential);
            var (status, text) = await Credentials.SendAsync(client, "POST", "v1/chat/completions", body);
            Assert.True(status == HttpStatusCode.OK, text);
            Assert.StartsWith("data: {", text, StringComparison.Ordinal);
            Assert.EndsWith("data: [DONE]\n\n", text, StringComparison.Ordinal);
        }

        // Streaming is no way around the inference scope.
        using var without = Server.Client(await fixture.TokenAsync([Scopes.CatalogRead, Scopes.Streaming]));
        var (refused, error) = await Credentials.SendAsync(without, "POST", "v1/chat/completions", body);
        Assert.Equal(HttpStatusCode.Forbidden, refused);
        Assert.Equal("insufficient_scopes", Code(error));
        Assert.Contains(Scopes.Inference, Credentials.Error(error)["message"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    private static async Task ExpectMissingScopeAsync(HttpClient client, Rule rule, List<string> failures, string credential)
    {
        var (status, body) = await SendAsync(client, rule);
        if (status != HttpStatusCode.Forbidden || Code(body) != "insufficient_scopes")
        {
            failures.Add($"{rule} with a {credential} lacking {rule.Scope}: {(int)status} {body}");
            return;
        }
        var message = Credentials.Error(body)["message"]?.GetValue<string>() ?? "";
        if (!message.Contains(rule.Scope!, StringComparison.Ordinal))
        {
            failures.Add($"{rule} with a {credential}: the 403 does not name {rule.Scope}: {message}");
        }
    }

    private static async Task ExpectThroughAsync(HttpClient client, Rule rule, List<string> failures, string credential)
    {
        var (status, body) = await SendAsync(client, rule);
        if (status is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
        {
            failures.Add($"{rule} with a {credential}: {(int)status} {body}");
        }
    }

    private static Task<(HttpStatusCode Status, string Body)> SendAsync(HttpClient client, Rule rule, JsonNode? body = null) =>
        Credentials.SendAsync(client, rule.Method == "*" ? "GET" : rule.Method, rule.Path.TrimStart('/'), body);

    private static string? Code(string body)
    {
        // Pages are HTML and OAuth protocol errors have a string "error": neither is the OpenAI envelope.
        try
        {
            if (JsonNode.Parse(body) is not JsonObject { } root || root["error"] is not JsonObject error)
            {
                return null;
            }
            // Anthropic's envelope has no code: its type for the 401 and 403 stands for OpenAI's code.
            if (root["type"] is JsonValue type && type.ToString() == "error")
            {
                return error["type"]?.ToString() switch
                {
                    "authentication_error" => "invalid_api_key",
                    "permission_error" => "insufficient_scopes",
                    var other => other,
                };
            }
            return error["code"] is JsonValue code ? code.ToString() : null;
        }
        catch (System.Text.Json.JsonException)
        {
            return null;
        }
    }
}
