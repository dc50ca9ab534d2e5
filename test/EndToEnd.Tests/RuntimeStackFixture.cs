using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Lattice.Testing;

namespace Lattice.EndToEnd.Tests;

/// <summary>
/// A gateway process (<c>lattice up --no-daemon</c>) and a separate daemon process paired to it with
/// <c>lattice relay connect</c>, serving real engines on the models in <c>shared/models</c>.
/// </summary>
public sealed class RuntimeStackFixture : IAsyncLifetime
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(120);
    private readonly string _root = Path.Combine(Path.GetTempPath(), "lattice-rt-e2e-" + Guid.NewGuid().ToString("N"));
    private ProcessHost? _gateway;

    public string Origin { get; private set; } = "";
    public string BaseUrl => Origin + "/v1";
    public string ApiKey { get; private set; } = "";
    public string AdminKey { get; private set; } = "";
    public string LatticeId { get; private set; } = "";
    public string Model => "lattice:personal:" + LatticeId;
    public ProcessHost? Daemon { get; private set; }
    public string ConfigPath => Path.Combine(_root, "config.toml");
    public string TickerConfigPath => Path.Combine(_root, "ticker.toml");
    public string DaemonDataDir => Path.Combine(_root, "daemon");

    /// <summary>A daemon config whose only chat model, <c>ticker</c>, streams 100 chunks 100 ms apart (the fixed engine).</summary>
    public const string TickerConfig = """
        [[engines]]
        kind = "fixed"
          [[engines.models]]
          name = "ticker"
          chunks = 100
          chunk_delay_ms = 100
        """;

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(_root);
        var models = Path.Combine(RepoPaths.SharedDir, "models");
        await File.WriteAllTextAsync(ConfigPath, $"""
            [daemon]
            concurrency = 4

            [[engines]]
            kind = "llama"
              [[engines.models]]
              name = "stories260K"
              path = "{Path.Combine(models, "chat", "stories260K.gguf")}"
              context_size = 512

            [[engines]]
            kind = "onnx-embeddings"

            [[engines]]
            kind = "whisper"
              [[engines.models]]
              name = "whisper-hello"
              path = "{Path.Combine(models, "whisper", "fake-whisper-hello-world.bin")}"
            """);
        await File.WriteAllTextAsync(TickerConfigPath, TickerConfig);

        var port = ProcessHost.FreeTcpPort();
        _gateway = await ProcessHost.StartAsync(ProcessHost.DotnetHost,
            [StackFixture.LatticeDll, "up", "--no-daemon", "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--data-dir", Path.Combine(_root, "gateway")],
            null, line => line.StartsWith("LATTICE_API_KEY=", StringComparison.Ordinal), StartTimeout);
        Origin = $"http://127.0.0.1:{port}";
        var env = File.ReadAllLines(Path.Combine(_root, "gateway", "env")).Where(l => l.Contains('=') && !l.StartsWith('#'))
            .ToDictionary(l => l[..l.IndexOf('=')], l => l[(l.IndexOf('=') + 1)..]);
        ApiKey = env["LATTICE_API_KEY"];
        AdminKey = env["LATTICE_ADMIN_KEY"];

        using var http = Client(ApiKey);
        using var created = await http.PostAsJsonAsync("v1/personal-runtimes", new JsonObject { ["displayName"] = "e2e laptop", ["executionBackend"] = "local-model" });
        var record = JsonNode.Parse(await created.Content.ReadAsStringAsync())!;
        LatticeId = record["runtime"]!["latticeId"]!.GetValue<string>();
        Daemon = await StartDaemonAsync(["relay", "connect", "--gateway", Origin, "--token", record["bootstrapToken"]!.GetValue<string>()], DaemonDataDir);
    }

    /// <summary>A separate personal runtime whose only chat model streams 100 chunks 100 ms apart.</summary>
    public Task<(string LatticeId, ProcessHost Daemon)> StartTickerAsync() =>
        PairDaemonAsync(Origin, ApiKey, "ticker", TickerConfigPath, Path.Combine(_root, "ticker-" + Guid.NewGuid().ToString("N")[..8]));

    /// <summary>
    /// Creates a personal runtime <paramref name="displayName"/> with <paramref name="apiKey"/> (so it is the workspace's,
    /// shared with its users) and pairs a new daemon process serving <paramref name="configPath"/> to it.
    /// </summary>
    public static async Task<(string LatticeId, ProcessHost Daemon)> PairDaemonAsync(string origin, string apiKey, string displayName, string configPath, string dataDir)
    {
        using var http = new HttpClient { BaseAddress = new Uri(origin + "/"), Timeout = TimeSpan.FromSeconds(60) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        using var created = await http.PostAsJsonAsync("v1/personal-runtimes", new JsonObject { ["displayName"] = displayName, ["executionBackend"] = "local-model" });
        var record = JsonNode.Parse(await created.Content.ReadAsStringAsync())!;
        var daemon = await ProcessHost.StartAsync(ProcessHost.DotnetHost,
            [StackFixture.LatticeDll, "relay", "connect", "--gateway", origin, "--token", record["bootstrapToken"]!.GetValue<string>(), "--config", configPath, "--data-dir", dataDir],
            null, line => line.Contains("connected as lat_", StringComparison.Ordinal), StartTimeout);
        return (record["runtime"]!["latticeId"]!.GetValue<string>(), daemon);
    }

    /// <summary>Starts a daemon process with this fixture's config and waits until its link is up.</summary>
    public Task<ProcessHost> StartDaemonAsync(string[] args, string dataDir) =>
        ProcessHost.StartAsync(ProcessHost.DotnetHost,
            [StackFixture.LatticeDll, .. args, "--config", ConfigPath, "--data-dir", dataDir],
            null, line => line.Contains("connected as lat_", StringComparison.Ordinal), StartTimeout);

    public async Task RestartDaemonAsync()
    {
        if (Daemon is not null)
        {
            await Daemon.DisposeAsync();
        }
        Daemon = await StartDaemonAsync(["daemon"], DaemonDataDir);
    }

    public HttpClient Client(string key)
    {
        var http = new HttpClient { BaseAddress = new Uri(Origin + "/"), Timeout = TimeSpan.FromSeconds(60) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return http;
    }

    public async Task DisposeAsync()
    {
        if (Daemon is not null)
        {
            await Daemon.DisposeAsync();
        }
        if (_gateway is not null)
        {
            await _gateway.DisposeAsync();
        }
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
