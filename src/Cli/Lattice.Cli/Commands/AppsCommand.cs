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
        create.SetAction(async (parse, ct) =>
        {
            var target = admin.Resolve(parse);
            if (target is null)
            {
                return 2;
            }
            var body = new JsonObject
            {
                ["name"] = parse.GetValue(name),
                ["redirect_uris"] = Array(parse.GetValue(redirectUris)),
                ["scopes"] = Array(parse.GetValue(scopes)),
                ["confidential"] = parse.GetValue(confidential),
                ["device_flow"] = parse.GetValue(deviceFlow),
            };
            var result = await target.SendAsync(HttpMethod.Post, $"/admin/v1/workspaces/{target.Workspace}/apps", body, ct);
            if (result is null)
            {
                return 1;
            }
            Console.WriteLine($"Created app {result["name"]} in {result["workspace_id"]}.");
            Console.WriteLine($"Client ID: {result["client_id"]}");
            if (result["client_secret"] is { } secret)
            {
                Console.WriteLine($"Client secret (shown once): {secret}");
            }
            return 0;
        });

        var list = new Command("list", "List the workspace's OAuth apps (never their secrets).");
        list.SetAction(async (parse, ct) =>
        {
            var target = admin.Resolve(parse);
            if (target is null)
            {
                return 2;
            }
            var result = await target.SendAsync(HttpMethod.Get, $"/admin/v1/workspaces/{target.Workspace}/apps", null, ct);
            if (result is null)
            {
                return 1;
            }
            Console.WriteLine($"{"CLIENT ID",-30} {"NAME",-20} {"TYPE",-13} {"FLOWS",-12} REDIRECT URIS");
            foreach (var app in result["data"]!.AsArray())
            {
                var type = app!["confidential"]!.GetValue<bool>() ? "confidential" : "public";
                var redirects = app["redirect_uris"]!.AsArray().Select(u => u!.GetValue<string>()).ToList();
                var flows = string.Join(',', new[] { redirects.Count > 0 ? "code" : null, app["device_flow"]!.GetValue<bool>() ? "device" : null }.OfType<string>());
                Console.WriteLine($"{app["client_id"],-30} {app["name"],-20} {type,-13} {flows,-12} {string.Join(' ', redirects)}");
                Console.WriteLine($"{"",-30} scopes: {string.Join(' ', app["scopes"]!.AsArray().Select(s => s!.GetValue<string>()))}");
            }
            return 0;
        });

        var clientId = new Argument<string>("client-id") { Description = "The app's client id (app_…)." };
        var delete = new Command("delete", "Delete an app; every grant made to it is revoked at once.") { clientId };
        delete.SetAction(async (parse, ct) =>
        {
            var target = admin.Resolve(parse, needWorkspace: false);
            if (target is null)
            {
                return 2;
            }
            var id = parse.GetValue(clientId)!;
            if (await target.SendAsync(HttpMethod.Delete, $"/admin/v1/apps/{Uri.EscapeDataString(id)}", null, ct) is null)
            {
                return 1;
            }
            Console.WriteLine($"Deleted {id}; its grants are revoked.");
            return 0;
        });

        return admin.Group("apps", "Manage OAuth apps (Sign in with Lattice clients).", create, list, delete);
    }

    private static JsonArray Array(string[]? values) => new((values ?? []).Select(v => (JsonNode?)v).ToArray());
}
