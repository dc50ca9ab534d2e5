using System.CommandLine;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Lattice.Cli.Commands;

/// <summary>
/// The admin API of a running gateway as the CLI reaches it: URL, admin key and workspace from flags, the
/// <c>LATTICE_*</c> environment variables or <c>&lt;data-dir&gt;/env</c>, in that order. Failures are printed here.
/// </summary>
internal sealed class AdminApi(Uri origin, string adminKey, string workspace)
{
    public string Workspace { get; } = workspace;

    public static AdminApi? From(string dataDir, string? baseUrl, string? adminKey, string? workspace, bool needWorkspace = true)
    {
        var env = EnvFile.Read(Path.GetFullPath(dataDir));
        string? Pick(string? explicitValue, string name) =>
            explicitValue ?? (Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : env.GetValueOrDefault(name));

        var url = Pick(baseUrl, "LATTICE_BASE_URL");
        var key = Pick(adminKey, "LATTICE_ADMIN_KEY");
        var ws = Pick(workspace, "LATTICE_WORKSPACE_ID") ?? "";
        if (url is null || key is null || (needWorkspace && ws.Length == 0))
        {
            Console.Error.WriteLine("Don't know which gateway to talk to: run `lattice up` first, or pass --base-url, --admin-key and --workspace.");
            return null;
        }
        if (!Uri.TryCreate(url, UriKind.Absolute, out var parsed))
        {
            Console.Error.WriteLine($"'{url}' is not a URL.");
            return null;
        }
        var origin = new Uri(parsed.GetLeftPart(UriPartial.Authority));
        return new AdminApi(origin, key, ws);
    }

    /// <summary>The gateway origin (scheme, host, port) from <paramref name="explicitUrl"/>, <c>LATTICE_BASE_URL</c> or the env file; null when none.</summary>
    public static Uri? GatewayOrigin(string dataDir, string? explicitUrl)
    {
        var url = explicitUrl
            ?? (Environment.GetEnvironmentVariable("LATTICE_BASE_URL") is { Length: > 0 } v ? v : EnvFile.Read(Path.GetFullPath(dataDir)).GetValueOrDefault("LATTICE_BASE_URL"));
        if (url is null)
        {
            Console.Error.WriteLine("Don't know which gateway to sign in to: run `lattice up` first, or pass --gateway URL.");
            return null;
        }
        if (!Uri.TryCreate(url, UriKind.Absolute, out var parsed) || parsed.Scheme is not ("http" or "https"))
        {
            Console.Error.WriteLine($"'{url}' is not an http(s) URL.");
            return null;
        }
        return new Uri(parsed.GetLeftPart(UriPartial.Authority));
    }

    public async Task<JsonNode?> SendAsync(HttpMethod method, string path, JsonNode? body, CancellationToken cancellationToken)
    {
        var text = await SendForTextAsync(method, path, body, cancellationToken);
        try
        {
            // 204 No Content (a delete) is a success with nothing to show.
            return text is null ? null : string.IsNullOrEmpty(text) ? new JsonObject() : JsonNode.Parse(text);
        }
        catch (JsonException ex)
        {
            Console.Error.WriteLine($"The gateway at {origin} did not answer JSON: {ex.Message}");
            return null;
        }
    }

    /// <summary>The answer's body as text (a CSV export, say); null after printing why there is none.</summary>
    public async Task<string?> SendForTextAsync(HttpMethod method, string path, JsonNode? body, CancellationToken cancellationToken)
    {
        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { BaseAddress = origin, Timeout = TimeSpan.FromSeconds(30) };
        using var request = new HttpRequestMessage(method, path);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", adminKey);
        if (body is not null)
        {
            request.Content = JsonContent.Create(body);
        }
        try
        {
            using var response = await http.SendAsync(request, cancellationToken);
            var text = await response.Content.ReadAsStringAsync(cancellationToken);
            if (!response.IsSuccessStatusCode)
            {
                string? message = null;
                try
                {
                    message = JsonNode.Parse(text)?["error"]?["message"]?.GetValue<string>();
                }
                catch (JsonException)
                {
                }
                Console.Error.WriteLine($"The gateway said {(int)response.StatusCode}: {message ?? text}");
                return null;
            }
            return text;
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            Console.Error.WriteLine($"Could not reach the gateway at {origin}: {ex.Message}");
            return null;
        }
    }
}

/// <summary>
/// Where a developer-key command (<c>lattice usage</c>, <c>lattice invoices</c>) sends its requests: the gateway and
/// the key from flags, the <c>LATTICE_*</c> environment variables or <c>&lt;data-dir&gt;/env</c>, in that order.
/// </summary>
internal sealed class DeveloperOptions
{
    private readonly Option<string> _dataDir = new("--data-dir") { Description = "Data directory whose env file names the gateway and key.", DefaultValueFactory = _ => EnvFile.DefaultDataDirectory, Recursive = true };
    private readonly Option<string?> _baseUrl = new("--base-url") { Description = "Gateway base URL (default: LATTICE_BASE_URL).", Recursive = true };
    private readonly Option<string?> _apiKey = new("--api-key") { Description = "Developer key with lattice:compute:usage:read (default: LATTICE_API_KEY).", Recursive = true };

    public void AddTo(Command command)
    {
        command.Options.Add(_dataDir);
        command.Options.Add(_baseUrl);
        command.Options.Add(_apiKey);
    }

    /// <summary>The API the options point at, with the developer key as the bearer credential; null after saying what is missing.</summary>
    public AdminApi? Resolve(ParseResult parse)
    {
        var env = EnvFile.Read(Path.GetFullPath(parse.GetValue(_dataDir)!));
        string? Pick(string? explicitValue, string name) =>
            explicitValue ?? (Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : env.GetValueOrDefault(name));
        var url = Pick(parse.GetValue(_baseUrl), "LATTICE_BASE_URL");
        var key = Pick(parse.GetValue(_apiKey), "LATTICE_API_KEY");
        if (url is null || key is null)
        {
            Console.Error.WriteLine("Don't know which gateway to ask: run `lattice up` first, or pass --base-url and --api-key.");
            return null;
        }
        if (!Uri.TryCreate(url, UriKind.Absolute, out var parsed) || parsed.Scheme is not ("http" or "https"))
        {
            Console.Error.WriteLine($"'{url}' is not an http(s) URL.");
            return null;
        }
        return new AdminApi(new Uri(parsed.GetLeftPart(UriPartial.Authority)), key, "");
    }
}

/// <summary>The options every admin-API command group shares: where the gateway is, the admin key, the workspace.</summary>
internal sealed class AdminOptions
{
    private readonly Option<string> _dataDir = new("--data-dir") { Description = "Data directory whose env file names the gateway and admin key.", DefaultValueFactory = _ => EnvFile.DefaultDataDirectory, Recursive = true };
    private readonly Option<string?> _baseUrl = new("--base-url") { Description = "Gateway base URL (default: LATTICE_BASE_URL).", Recursive = true };
    private readonly Option<string?> _adminKey = new("--admin-key") { Description = "Admin key (default: LATTICE_ADMIN_KEY).", Recursive = true };
    private readonly Option<string?> _workspace = new("--workspace") { Description = "Workspace id (default: LATTICE_WORKSPACE_ID).", Recursive = true };

    /// <summary>A command group carrying these options, with its subcommands.</summary>
    public Command Group(string name, string description, params Command[] subcommands)
    {
        var group = new Command(name, description) { _dataDir, _baseUrl, _adminKey, _workspace };
        foreach (var subcommand in subcommands)
        {
            group.Subcommands.Add(subcommand);
        }
        return group;
    }

    /// <summary>The admin API these options point at, or null after saying what is missing.</summary>
    public AdminApi? Resolve(ParseResult parse, bool needWorkspace = true) =>
        AdminApi.From(parse.GetValue(_dataDir)!, parse.GetValue(_baseUrl), parse.GetValue(_adminKey), parse.GetValue(_workspace), needWorkspace);

    /// <summary>
    /// What most admin commands do: one request to the admin API these options point at (<paramref name="path"/> of it),
    /// then <paramref name="print"/> the answer. The exit code: 2 when the gateway is unknown, 1 when it could not be
    /// reached or refused (its message already printed), 0 otherwise.
    /// </summary>
    public async Task<int> SendAsync(ParseResult parse, HttpMethod method, Func<AdminApi, string> path, JsonNode? body, Action<JsonNode> print,
        CancellationToken cancellationToken, bool needWorkspace = true)
    {
        if (Resolve(parse, needWorkspace) is not { } target)
        {
            return 2;
        }
        if (await target.SendAsync(method, path(target), body, cancellationToken) is not { } result)
        {
            return 1;
        }
        print(result);
        return 0;
    }
}
