using System.CommandLine;
using System.Text.Json.Nodes;

namespace Lattice.Cli.Commands;

/// <summary><c>lattice keys create|list|revoke</c>: developer keys, with their rate limits, through the admin API of a running gateway.</summary>
internal static class KeysCommand
{
    public static Command Create()
    {
        var admin = new AdminOptions();

        var name = new Option<string>("--name") { Description = "A name to recognise the key by.", DefaultValueFactory = _ => "cli" };
        var expiresIn = new Option<string?>("--expires-in") { Description = "Lifetime such as 30d, 12h or 90m; never expires when omitted." };
        var scopes = new Option<string[]>("--scope") { Description = "A scope to grant (repeatable); the developer defaults when omitted.", AllowMultipleArgumentsPerToken = false };
        var limits = new LimitOptions();
        var create = new Command("create", "Create a developer key; the secret is shown once.") { name, expiresIn, scopes };
        foreach (var option in limits.All)
        {
            create.Options.Add(option);
        }
        create.SetAction(async (parse, ct) =>
        {
            long? expiresAt = null;
            if (parse.GetValue(expiresIn) is { } lifetime)
            {
                if (ParseLifetime(lifetime) is not { } span)
                {
                    await Console.Error.WriteLineAsync($"--expires-in '{lifetime}' is not a lifetime such as 30d, 12h or 90m.");
                    return 2;
                }
                expiresAt = DateTimeOffset.UtcNow.Add(span).ToUnixTimeSeconds();
            }
            if (!limits.TryRead(parse, out var edits, out var limitError))
            {
                await Console.Error.WriteLineAsync(limitError);
                return 2;
            }
            var body = new JsonObject { ["name"] = parse.GetValue(name), ["expires_at"] = expiresAt };
            if (parse.GetValue(scopes) is { Length: > 0 } granted)
            {
                body["scopes"] = new JsonArray(granted.Select(s => (JsonNode?)s).ToArray());
            }
            if (edits.Count > 0)
            {
                body["limits"] = LimitSettings.Merge(null, edits);
            }
            return await admin.SendAsync(parse, HttpMethod.Post, t => $"/admin/v1/workspaces/{t.Workspace}/keys", body, result =>
            {
                Console.WriteLine($"Created {result["id"]} in {result["workspace_id"]}.");
                Console.WriteLine($"Key (shown once): {result["key"]}");
                if (result["limits"] is { } set)
                {
                    Console.WriteLine($"Limits: {LimitSettings.Compact(set)}");
                }
            }, ct);
        });

        var list = new Command("list", "List the workspace's keys (never their secrets).");
        list.SetAction((parse, ct) => admin.SendAsync(parse, HttpMethod.Get, t => $"/admin/v1/workspaces/{t.Workspace}/keys", null, result =>
        {
            Console.WriteLine($"{"ID",-26} {"NAME",-16} {"PREFIX",-13} {"EXPIRES",-20} {"STATUS",-8} LIMITS");
            foreach (var key in result["data"]!.AsArray())
            {
                var status = key!["revoked_at"] is null ? "active" : "revoked";
                var expires = key["expires_at"] is { } e ? DateTimeOffset.FromUnixTimeSeconds(e.GetValue<long>()).ToString("u") : "never";
                Console.WriteLine($"{key["id"],-26} {key["name"],-16} {key["prefix"] + "…",-13} {expires,-20} {status,-8} {LimitSettings.Compact(key["limits"])}");
            }
        }, ct));

        var keyId = new Argument<string>("key-id") { Description = "The id of the key (key_…)." };
        var revoke = new Command("revoke", "Revoke a key; the very next request with it fails.") { keyId };
        revoke.SetAction((parse, ct) => admin.SendAsync(parse, HttpMethod.Post, _ => $"/admin/v1/keys/{Uri.EscapeDataString(parse.GetValue(keyId)!)}/revoke", null,
            result => Console.WriteLine($"Revoked {result["id"]}."), ct, needWorkspace: false));

        return admin.Group("keys", "Manage developer keys.", create, list, revoke);
    }

    internal static TimeSpan? ParseLifetime(string text)
    {
        if (text.Length < 2 || !long.TryParse(text[..^1], out var n) || n <= 0 || n > 100_000)
        {
            return null;
        }
        return char.ToLowerInvariant(text[^1]) switch
        {
            'd' => TimeSpan.FromDays(n),
            'h' => TimeSpan.FromHours(n),
            'm' => TimeSpan.FromMinutes(n),
            's' => TimeSpan.FromSeconds(n),
            _ => null,
        };
    }
}
