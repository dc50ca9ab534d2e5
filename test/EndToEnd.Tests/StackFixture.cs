using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Lattice.Testing;

namespace Lattice.EndToEnd.Tests;

/// <summary>
/// The real thing on loopback: the stand-in upstream as its own process, and the gateway started exactly as a
/// user starts it (<c>lattice up</c>), configured through its admin API.
/// </summary>
public sealed class StackFixture : IAsyncLifetime
{
    public const string UpstreamKey = "e2e-upstream-key";
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(180);

    private readonly string _dataDir = Path.Combine(Path.GetTempPath(), "lattice-e2e-" + Guid.NewGuid().ToString("N"));
    private ProcessHost? _standIn;
    private ProcessHost? _gateway;

    public string StandInUrl { get; private set; } = "";
    /// <summary>The OpenAI-style base URL, ending in <c>/v1</c>.</summary>
    public string BaseUrl { get; private set; } = "";
    public string ApiKey { get; private set; } = "";
    public string AdminKey { get; private set; } = "";
    public string WorkspaceId { get; private set; } = "";
    /// <summary>The dev user <c>lattice up</c> made (owner of the dev workspace), and its password.</summary>
    public string UserEmail { get; private set; } = "";
    public string UserPassword { get; private set; } = "";
    /// <summary>The one-click console sign-in link <c>lattice up</c> printed: it works once, so one test uses it.</summary>
    public string ConsoleSignInUrl { get; private set; } = "";
    public string DataDirectory => _dataDir;
    public ProcessHost Gateway => _gateway!;

    /// <summary>The built <c>lattice</c> CLI (project Lattice.Cli, assembly lattice).</summary>
    public static string LatticeDll => ProcessHost.DotnetDll("Lattice.Cli", "lattice");

    public async Task InitializeAsync()
    {
        var standInPort = ProcessHost.FreeTcpPort();
        _standIn = await ProcessHost.StartDotnetAsync("Lattice.StandIn.OpenAi",
            ["--urls", $"http://127.0.0.1:{standInPort}", "--api-key", UpstreamKey],
            null, line => line.StartsWith("standin listening on", StringComparison.Ordinal), StartTimeout);
        StandInUrl = $"http://127.0.0.1:{standInPort}";

        var port = ProcessHost.FreeTcpPort();
        _gateway = await ProcessHost.StartAsync(ProcessHost.DotnetHost,
            [LatticeDll, "up", "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--data-dir", _dataDir],
            new Dictionary<string, string?> { ["Lattice__Credentials__standin"] = UpstreamKey },
            line => line.StartsWith("LATTICE_API_KEY=", StringComparison.Ordinal), StartTimeout);

        var env = File.ReadAllLines(Path.Combine(_dataDir, "env"))
            .Where(l => l.Contains('=') && !l.StartsWith('#'))
            .ToDictionary(l => l[..l.IndexOf('=')], l => l[(l.IndexOf('=') + 1)..]);
        BaseUrl = env["LATTICE_BASE_URL"];
        ApiKey = env["LATTICE_API_KEY"];
        AdminKey = env["LATTICE_ADMIN_KEY"];
        WorkspaceId = env["LATTICE_WORKSPACE_ID"];
        UserEmail = env["LATTICE_USER_EMAIL"];
        UserPassword = env["LATTICE_USER_PASSWORD"];
        const string SignInLine = "LATTICE_CONSOLE_SIGN_IN_URL=";
        var signIn = await _gateway.WaitForOutputAsync(line => line.StartsWith(SignInLine, StringComparison.Ordinal), StartTimeout);
        ConsoleSignInUrl = signIn[SignInLine.Length..].Trim();

        var upstream = StandInUrl + "/v1";
        await AddModelAsync("lovelace:chat", upstream, "standin-chat");
        await AddModelAsync("lovelace:embed", upstream, "standin-embed", "embeddings");
        await AddModelAsync("lovelace:whisper", upstream, "standin-whisper", "audio.transcriptions");
        await AddModelAsync("lovelace:drop", upstream, "standin-drop");
        await AddModelAsync("lovelace:drip", upstream, "standin-drip");
    }

    public HttpClient AdminClient()
    {
        var http = new HttpClient { BaseAddress = new Uri(BaseUrl.Replace("/v1", "/", StringComparison.Ordinal)), Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
        return http;
    }

    public async Task AddModelAsync(string id, string baseUrl, string upstreamModel, string? task = null, JsonObject? prices = null)
    {
        using var admin = AdminClient();
        var body = new JsonObject
        {
            ["id"] = id,
            ["owned_by"] = "e2e",
            ["offers"] = new JsonArray(new JsonObject { ["base_url"] = baseUrl, ["credential"] = "standin", ["upstream_model"] = upstreamModel, ["task"] = task }),
        };
        if (prices is not null)
        {
            body["prices"] = prices;
        }
        using var response = await admin.PostAsJsonAsync("admin/v1/models", body);
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"Adding {id} failed: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        }
    }

    public async Task DisposeAsync()
    {
        if (_gateway is not null)
        {
            await _gateway.DisposeAsync();
        }
        if (_standIn is not null)
        {
            await _standIn.DisposeAsync();
        }
        try
        {
            Directory.Delete(_dataDir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

[CollectionDefinition(Name)]
public sealed class StackCollection : ICollectionFixture<StackFixture>
{
    public const string Name = "stack";
}
