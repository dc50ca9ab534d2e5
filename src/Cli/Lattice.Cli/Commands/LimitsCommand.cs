using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;

namespace Lattice.Cli.Commands;

/// <summary>
/// <c>lattice limits get|set|clear</c>: the rate limits on the workspace (default), a key (<c>--key</c>) or an OAuth
/// app (<c>--app</c>, each of its users separately) through the admin API.
/// </summary>
internal static class LimitsCommand
{
    public static Command Create()
    {
        var admin = new AdminOptions();
        var key = new Option<string?>("--key") { Description = "The limits of this developer key (key_…) instead of the workspace's." };
        var app = new Option<string?>("--app") { Description = "The limits of this OAuth app (its client id) instead of the workspace's; they hold for each of its users." };
        var json = new Option<bool>("--json") { Description = "Print the API's JSON instead of a line." };
        var flags = new LimitOptions();

        string? Path(ParseResult parse, AdminApi target)
        {
            if (parse.GetValue(key) is { } keyId)
            {
                return parse.GetValue(app) is null ? $"/admin/v1/keys/{Uri.EscapeDataString(keyId)}/limits" : null;
            }
            return parse.GetValue(app) is { } clientId
                ? $"/admin/v1/apps/{Uri.EscapeDataString(clientId)}/limits"
                : $"/admin/v1/workspaces/{Uri.EscapeDataString(target.Workspace)}/limits";
        }

        // Each subcommand: resolve the target, then run its own step against the limits path.
        Command Sub(string name, string description, Func<ParseResult, AdminApi, string, CancellationToken, Task<int>> run, params Option[] options)
        {
            var command = new Command(name, description) { key, app };
            foreach (var option in options)
            {
                command.Options.Add(option);
            }
            command.SetAction(async (parse, ct) =>
            {
                // A key or an app is found without the workspace; the workspace's own limits need it.
                var target = admin.Resolve(parse, needWorkspace: parse.GetValue(key) is null && parse.GetValue(app) is null);
                if (target is null)
                {
                    return 2;
                }
                if (Path(parse, target) is not { } path)
                {
                    await Console.Error.WriteLineAsync("Give one of --key and --app (neither for the workspace's limits).");
                    return 2;
                }
                return await run(parse, target, path, ct);
            });
            return command;
        }

        async Task<int> Show(ParseResult parse, JsonNode? result)
        {
            if (result is null)
            {
                return 1;
            }
            await Console.Out.WriteLineAsync(parse.GetValue(json) ? result.ToJsonString() : LimitSettings.Describe(result));
            return 0;
        }

        var get = Sub("get", "Show the rate limits.", async (parse, target, path, ct) =>
            await Show(parse, await target.SendAsync(HttpMethod.Get, path, null, ct)), json);

        var set = Sub("set", "Change some rate limits; those not given keep their value. 0 or none removes a limit.", async (parse, target, path, ct) =>
        {
            if (!flags.TryRead(parse, out var edits, out var error))
            {
                await Console.Error.WriteLineAsync(error);
                return 2;
            }
            if (edits.Count == 0)
            {
                await Console.Error.WriteLineAsync("Nothing to set: give --rpm, --tpm and/or --concurrency (or use `lattice limits clear`).");
                return 2;
            }
            // The API replaces the whole object; read it first so a flag not given keeps its limit.
            if (await target.SendAsync(HttpMethod.Get, path, null, ct) is not { } current)
            {
                return 1;
            }
            return await Show(parse, await target.SendAsync(HttpMethod.Put, path, LimitSettings.Merge(current["limits"], edits), ct));
        }, [json, .. flags.All]);

        var clear = Sub("clear", "Remove every rate limit.", async (parse, target, path, ct) =>
            await Show(parse, await target.SendAsync(HttpMethod.Put, path, new JsonObject(), ct)), json);

        return admin.Group("limits", "Rate limits (requests and tokens per minute, requests in flight) on the workspace, a key or an app.", get, set, clear);
    }
}

/// <summary><c>--rpm</c>, <c>--tpm</c> and <c>--concurrency</c>, shared by <c>lattice limits set</c> and <c>lattice keys create</c>.</summary>
internal sealed class LimitOptions
{
    private const string ValueHelp = "a positive whole number; 0 or none for no limit";

    private readonly Option<string?>[] _options =
    [
        new("--rpm") { Description = $"Requests per minute ({ValueHelp}).", HelpName = "N" },
        new("--tpm") { Description = $"Tokens per minute: input plus max_tokens, settled to the actual count ({ValueHelp}).", HelpName = "N" },
        new("--concurrency") { Description = $"Requests in flight at once ({ValueHelp}).", HelpName = "N" },
    ];

    public Option[] All => [.. _options];

    /// <summary>The limits given on the command line (field → value, null to remove), or a message naming the bad one.</summary>
    public bool TryRead(ParseResult parse, out Dictionary<string, long?> edits, out string error)
    {
        edits = [];
        error = "";
        for (var i = 0; i < _options.Length; i++)
        {
            if (parse.GetValue(_options[i]) is not { } text)
            {
                continue;
            }
            if (!LimitSettings.TryParse(LimitSettings.Flags[i], text, out var value, out error))
            {
                return false;
            }
            edits[LimitSettings.Flags[i].Field] = value;
        }
        return true;
    }
}

/// <summary>The admin API's <c>limits</c> object as the CLI reads, edits and prints it.</summary>
internal static class LimitSettings
{
    public sealed record Flag(string Name, string Field, string Short, long Max);

    /// <summary>The three limits, in the API's order, with the gateway's own upper bounds.</summary>
    public static readonly Flag[] Flags =
    [
        new("--rpm", "requests_per_minute", "rpm", int.MaxValue),
        new("--tpm", "tokens_per_minute", "tpm", 1_000_000_000_000),
        new("--concurrency", "max_concurrent", "conc", int.MaxValue),
    ];

    /// <summary>A flag's value: a whole number from 1 to the limit's maximum, or <c>0</c>/<c>none</c> (null) for no limit.</summary>
    public static bool TryParse(Flag flag, string text, out long? value, out string error)
    {
        value = null;
        error = "";
        var trimmed = text.Trim();
        if (trimmed is "0" || trimmed.Equals("none", StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }
        if (long.TryParse(trimmed, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= 1 && n <= flag.Max)
        {
            value = n;
            return true;
        }
        error = $"{flag.Name} '{text}' is not a limit: give a whole number from 1 to {flag.Max}, or 0 or none for no limit.";
        return false;
    }

    /// <summary>The limits object to PUT: <paramref name="current"/>'s limits with <paramref name="edits"/> applied (null removes one).</summary>
    public static JsonObject Merge(JsonNode? current, IReadOnlyDictionary<string, long?> edits)
    {
        var merged = new JsonObject();
        foreach (var flag in Flags)
        {
            var value = edits.TryGetValue(flag.Field, out var edit) ? edit : current?[flag.Field]?.GetValue<long>();
            if (value is { } v)
            {
                merged[flag.Field] = v;
            }
        }
        return merged;
    }

    /// <summary><c>rpm=60 tpm=100000 conc=4</c> with only the limits that are set; <c>-</c> for none.</summary>
    public static string Compact(JsonNode? limits)
    {
        var parts = Flags
            .Where(f => limits?[f.Field] is not null)
            .Select(f => $"{f.Short}={limits![f.Field]!.GetValue<long>().ToString(CultureInfo.InvariantCulture)}")
            .ToList();
        return parts.Count == 0 ? "-" : string.Join(' ', parts);
    }

    /// <summary>One line for a <c>{"scope","id","limits"}</c> answer: whose limits, then what they are.</summary>
    public static string Describe(JsonNode result) =>
        $"{result["scope"]} {result["id"]}: {(result["limits"] is null ? "no limits" : Compact(result["limits"]))}";
}
