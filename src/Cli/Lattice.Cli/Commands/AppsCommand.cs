using System.CommandLine;
using System.Text.Json.Nodes;

namespace Lattice.Cli.Commands;

/// <summary><c>lattice apps create|list|delete</c>: a workspace's OAuth apps (Sign in with Lattice clients) through the admin API.</summary>
internal static class AppsCommand
{
    public static Command Create()
    {
        var admin = new AdminOptions();

        var name = new Option<string>("--name") { Description = "The name people see on the consent page.", Required = true };
        var redirectUris = new Option<string[]>("--redirect-uri") { Description = "A redirect URI for the authorization code flow (repeatable).", AllowMultipleArgumentsPerToken = false };
        var scopes = new Option<string[]>("--scope") { Description = "A scope the app may ask for (repeatable; at least one).", AllowMultipleArgumentsPerToken = false, Required = true };
        var confidential = new Option<bool>("--confidential") { Description = "A server-side app with a client secret (shown once); public (PKCE only) otherwise." };
        var deviceFlow = new Option<bool>("--device-flow") { Description = "Allow the device authorization grant (for CLIs and TVs)." };
        var create = new Command("create", "Register an OAuth app; a confidential app's secret is shown once.") { name, redirectUris, scopes, confidential, deviceFlow };
        create.SetAction((parse, ct) =>
        {
            var body = new JsonObject
            {
                ["name"] = parse.GetValue(name),
                ["redirect_uris"] = Array(parse.GetValue(redirectUris)),
                ["scopes"] = Array(parse.GetValue(scopes)),
                ["confidential"] = parse.GetValue(confidential),
                ["device_flow"] = parse.GetValue(deviceFlow),
            };
            return admin.SendAsync(parse, HttpMethod.Post, t => $"/admin/v1/workspaces/{t.Workspace}/apps", body, result =>
            {
                Console.WriteLine($"Created app {result["name"]} in {result["workspace_id"]}.");
                Console.WriteLine($"Client ID: {result["client_id"]}");
                if (result["client_secret"] is { } secret)
                {
                    Console.WriteLine($"Client secret (shown once): {secret}");
                }
            }, ct);
        });

        var list = new Command("list", "List the workspace's OAuth apps (never their secrets).");
        list.SetAction((parse, ct) => admin.SendAsync(parse, HttpMethod.Get, t => $"/admin/v1/workspaces/{t.Workspace}/apps", null, result =>
        {
            Console.WriteLine($"{"CLIENT ID",-30} {"NAME",-20} {"TYPE",-13} {"FLOWS",-12} REDIRECT URIS");
            foreach (var app in result["data"]!.AsArray())
            {
                var type = app!["confidential"]!.GetValue<bool>() ? "confidential" : "public";
                var redirects = app["redirect_uris"]!.AsArray().Select(u => u!.GetValue<string>()).ToList();
                var flows = string.Join(',', new[] { redirects.Count > 0 ? "code" : null, app["device_flow"]!.GetValue<bool>() ? "device" : null }.OfType<string>());
                Console.WriteLine($"{app["client_id"],-30} {app["name"],-20} {type,-13} {flows,-12} {string.Join(' ', redirects)}");
                Console.WriteLine($"{"",-30} scopes: {string.Join(' ', app["scopes"]!.AsArray().Select(s => s!.GetValue<string>()))}");
            }
        }, ct));

        var clientId = new Argument<string>("client-id") { Description = "The app's client id (app_…)." };
        var delete = new Command("delete", "Delete an app; every grant made to it is revoked at once.") { clientId };
        delete.SetAction((parse, ct) => admin.SendAsync(parse, HttpMethod.Delete, _ => $"/admin/v1/apps/{Uri.EscapeDataString(parse.GetValue(clientId)!)}", null,
            _ => Console.WriteLine($"Deleted {parse.GetValue(clientId)}; its grants are revoked."), ct, needWorkspace: false));

        return admin.Group("apps", "Manage OAuth apps (Sign in with Lattice clients).", create, list, delete);
    }

    private static JsonArray Array(string[]? values) => new((values ?? []).Select(v => (JsonNode?)v).ToArray());
}
