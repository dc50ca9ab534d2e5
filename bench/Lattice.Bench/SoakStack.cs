using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace Lattice.Bench;

/// <summary>
/// The processes the soak and fault modes drive: the OpenAI stand-in (upstream path), <c>lattice up --no-daemon</c>
/// (the gateway, alone in its process so its VmRSS is its own), and one <c>lattice relay connect</c> daemon serving the
/// bundled small models with the real engines — stories260K (llama), all-MiniLM-L6-v2 (ONNX) and the synthetic
/// Whisper model — as a personal runtime of the dev workspace (runtime path).
/// </summary>
internal sealed class SoakStack : IAsyncDisposable
{
    public const string UpstreamModel = "soak:upstream";
    /// <summary>A catalog model whose only offer is the stand-in's <c>standin-reset</c>: every stream is reset mid-way.</summary>
    public const string ResetModel = "soak:reset";
    private const string CredentialName = "standin";
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(120);

    private readonly string _repo;
    private readonly string _gatewayDll;
    private readonly string _root;
    private ChildProcess? _standIn;
    private bool _mounted;

    public ChildProcess Gateway { get; private set; } = null!;
    public ChildProcess? Daemon { get; private set; }
    public Uri BaseUrl { get; private set; } = null!;
    public Uri Origin { get; private set; } = null!;
    public string DataDir { get; }
    public string GcFile { get; }
    public string RuntimeModel { get; private set; } = null!;
    public string[] ApiKeys { get; private set; } = [];
    /// <summary>True when <see cref="DataDir"/> is a small file system of its own (the disk-full fault needs one).</summary>
    public bool HasOwnFileSystem => _mounted;
    public string? OwnFileSystemRefusal { get; private set; }
    /// <summary>What the data directory is on, for the report.</summary>
    public string FileSystem { get; private set; } = "the temp directory's disk";
    public string DatabasePath => Path.Combine(DataDir, "lattice.db");
    /// <summary>Every line the stand-in, the gateway and the daemons wrote (kept after the run).</summary>
    public string LogDir { get; } = Directory.CreateTempSubdirectory("lattice-soak-logs-").FullName;

    private string DaemonConfig => Path.Combine(_root, "daemon.toml");
    private string DaemonDir => Path.Combine(_root, "daemon");

    private SoakStack(string repo, string gatewayDll, string root)
    {
        _repo = repo;
        _gatewayDll = gatewayDll;
        _root = root;
        DataDir = Path.Combine(root, "gateway");
        GcFile = Path.Combine(root, "gc.txt");
    }

    /// <summary>Starts everything; <paramref name="ownFileSystemMegabytes"/> &gt; 0 puts the gateway's data directory on a file system of its own of that size (root only).</summary>
    public static async Task<SoakStack> StartAsync(BenchOptions options, int keys, int ownFileSystemMegabytes, CancellationToken cancellationToken)
    {
        var repo = BenchRun.FindRepoRoot(options.RepoRoot);
        var standInDll = options.StandInDll ?? Path.Combine(repo, "test", "Lattice.StandIn.OpenAi", "bin", "Release", "net10.0", "Lattice.StandIn.OpenAi.dll");
        var gatewayDll = BenchRun.GatewayDll(options, repo);
        BenchRun.RequireBuilt(standInDll, "test/Lattice.StandIn.OpenAi");
        var stack = new SoakStack(repo, gatewayDll, Directory.CreateTempSubdirectory("lattice-soak-").FullName);
        try
        {
            Directory.CreateDirectory(stack.DataDir);
            if (ownFileSystemMegabytes > 0)
            {
                stack.TryMountOwnFileSystem(ownFileSystemMegabytes);
            }
            await stack.StartProcessesAsync(options, standInDll, keys, cancellationToken);
            return stack;
        }
        catch
        {
            await stack.DisposeAsync();
            throw;
        }
    }

    private void TryMountOwnFileSystem(int megabytes)
    {
        if (Environment.UserName != "root")
        {
            OwnFileSystemRefusal = $"not running as root (user {Environment.UserName}): cannot mount a small file system for the data directory";
            return;
        }
        // A loop-mounted ext4 image first (a real disk file system: block allocation, delayed allocation of mapped pages),
        // else a tmpfs. No blocks reserved for root: the gateway runs as root here, and the disk must fill for it too.
        var mb = megabytes.ToString(CultureInfo.InvariantCulture);
        var image = Path.Combine(_root, "data.ext4");
        using (var f = new FileStream(image, FileMode.CreateNew))
        {
            f.SetLength((long)megabytes << 20);
        }
        var (code, output) = Run("mkfs.ext4", "-q", "-F", "-m", "0", image);
        if (code == 0)
        {
            (code, output) = Run("mount", "-o", "loop", image, DataDir);
        }
        if (code == 0)
        {
            _mounted = true;
            FileSystem = $"a {mb} MiB ext4 image, loop-mounted";
            return;
        }
        File.Delete(image);
        var ext4Refusal = output.Trim();
        (code, output) = Run("mount", "-t", "tmpfs", "-o", $"size={mb}m", "tmpfs", DataDir);
        if (code != 0)
        {
            OwnFileSystemRefusal = $"neither a loop-mounted ext4 image ({ext4Refusal}) nor a tmpfs ({output.Trim()}) could be mounted";
            return;
        }
        _mounted = true;
        FileSystem = $"a {mb} MiB tmpfs (ext4 loop mount failed: {ext4Refusal})";
    }

    private async Task StartProcessesAsync(BenchOptions options, string standInDll, int keys, CancellationToken cancellationToken)
    {
        var upstreamKey = "sk-soak-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));
        Log($"starting the stand-in ({BenchRun.Rel(_repo, standInDll)})");
        _standIn = ChildProcess.Start("the stand-in", standInDll, ["--urls", "http://127.0.0.1:0", "--api-key", upstreamKey, "--no-record"],
            options.StandInEnv.ToDictionary(kv => kv.Key, kv => (string?)kv.Value),
            line => line.StartsWith("standin listening on ", StringComparison.Ordinal) ? line["standin listening on ".Length..].Trim() : null);
        _standIn.LogFile = Path.Combine(LogDir, "standin.log");
        var standInUrl = new Uri(await _standIn.WaitReadyAsync(StartTimeout, cancellationToken));

        var env = new Dictionary<string, string?>
        {
            [$"Lattice__Credentials__{CredentialName}"] = upstreamKey,
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            ["DOTNET_ENVIRONMENT"] = "Production",
            ["Logging__LogLevel__Default"] = "Warning",
            // Runtime links starting and ending (a few lines per link; no request content).
            ["Logging__LogLevel__Lattice.Gateway.Runtimes"] = "Information",
            ["DOTNET_gcServer"] = options.GatewayGc switch { "server" => "1", "workstation" => "0", _ => null },
            // The GC probe (GcProbeHook.cs): this assembly's StartupHook runs inside the gateway and writes its heap figures.
            ["DOTNET_STARTUP_HOOKS"] = typeof(StartupHook).Assembly.Location,
            [StartupHook.FileVariable] = GcFile,
        };
        foreach (var (k, v) in options.GatewayEnv)
        {
            env[k] = v;
        }
        Log($"starting the gateway ({BenchRun.Rel(_repo, _gatewayDll)} up --no-daemon, GC {options.GatewayGc}, data {DataDir} on {FileSystem})");
        Gateway = ChildProcess.Start("the gateway", _gatewayDll, ["up", "--no-daemon", "--port", "0", "--data-dir", DataDir], env,
            line => line.StartsWith("LATTICE_BASE_URL=", StringComparison.Ordinal) ? line["LATTICE_BASE_URL=".Length..].Trim() : null);
        Gateway.LogFile = Path.Combine(LogDir, "gateway.log");
        BaseUrl = new Uri(await Gateway.WaitReadyAsync(StartTimeout, cancellationToken));
        Origin = new Uri(BaseUrl.GetLeftPart(UriPartial.Authority));
        var envFile = BenchRun.ReadEnvFile(Path.Combine(DataDir, "env"));
        var apiKey = envFile.GetValueOrDefault("LATTICE_API_KEY") ?? throw new BenchException($"No LATTICE_API_KEY in {DataDir}/env.");
        var adminKey = envFile.GetValueOrDefault("LATTICE_ADMIN_KEY") ?? throw new BenchException($"No LATTICE_ADMIN_KEY in {DataDir}/env.");
        var workspaceId = envFile.GetValueOrDefault("LATTICE_WORKSPACE_ID") ?? throw new BenchException($"No LATTICE_WORKSPACE_ID in {DataDir}/env.");

        using var admin = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { BaseAddress = Origin, Timeout = TimeSpan.FromSeconds(60) };
        admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", adminKey);
        var upstreamBase = new Uri(standInUrl, "/v1").ToString().TrimEnd('/');
        foreach (var (id, upstream) in new[] { (UpstreamModel, "standin-chat"), (ResetModel, "standin-reset") })
        {
            await SendAsync(admin, HttpMethod.Post, "/admin/v1/models",
                $$"""{"id":"{{id}}","prices":{"input_per_mtok":0.15,"output_per_mtok":0.6,"audio_per_minute":0.006},"offers":[{"base_url":"{{upstreamBase}}","credential":"{{CredentialName}}","upstream_model":"{{upstream}}"}]}""",
                cancellationToken);
        }
        // Several keys, so no key ever has more than MaxConcurrentUploadsPerCaller (8) bodies arriving at once.
        var list = new List<string> { apiKey };
        for (var i = 1; i < keys; i++)
        {
            var key = await SendAsync(admin, HttpMethod.Post, $"/admin/v1/workspaces/{workspaceId}/keys", $$"""{"name":"soak {{i}}"}""", cancellationToken);
            list.Add(key["key"]!.GetValue<string>());
        }
        ApiKeys = [.. list];

        // The runtime path: a daemon with the real engines on the bundled models.
        var models = Path.Combine(Path.GetDirectoryName(_gatewayDll)!, "Models");
        File.WriteAllText(DaemonConfig, $"""
            [daemon]
            concurrency = 8

            [[engines]]
            kind = "llama"
              [[engines.models]]
              name = "stories260K"
              path = "{Path.Combine(models, "stories260K.gguf")}"
              context_size = 512
              plain_completion = true

            [[engines]]
            kind = "onnx-embeddings"
              [[engines.models]]
              name = "all-MiniLM-L6-v2"

            [[engines]]
            kind = "whisper"
              [[engines.models]]
              name = "whisper-hello-world"
              path = "{Path.Combine(models, "fake-whisper-hello-world.bin")}"
              ignore_prompt = true
            """);
        using var user = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { BaseAddress = Origin, Timeout = TimeSpan.FromSeconds(60) };
        user.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        var created = await SendAsync(user, HttpMethod.Post, "/v1/personal-runtimes", """{"displayName":"soak","executionBackend":"local-model"}""", cancellationToken);
        var latticeId = created["runtime"]?["latticeId"]?.GetValue<string>() ?? throw new BenchException("No runtime.latticeId in: " + created.ToJsonString());
        var token = created["bootstrapToken"]?.GetValue<string>() ?? throw new BenchException("No bootstrapToken in: " + created.ToJsonString());
        RuntimeModel = "lattice:personal:" + latticeId;
        await StartDaemonAsync(["relay", "connect", "--gateway", Origin.ToString().TrimEnd('/'), "--token", token], cancellationToken);
        Log($"logs of every process: {LogDir}");
        Log($"gateway {BaseUrl} (pid {Gateway.Id}); stand-in {standInUrl} (pid {_standIn.Id}); daemon pid {Daemon!.Id} serves {RuntimeModel}");
    }

    /// <summary>Starts the daemon again with its stored credential (after a kill).</summary>
    public Task RestartDaemonAsync(CancellationToken cancellationToken)
    {
        Daemon?.Dispose();
        return StartDaemonAsync(["daemon"], cancellationToken);
    }

    private async Task StartDaemonAsync(string[] command, CancellationToken cancellationToken)
    {
        var env = new Dictionary<string, string?>
        {
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            ["DOTNET_ENVIRONMENT"] = "Production",
            ["Logging__LogLevel__Default"] = "Warning",
            ["DOTNET_gcServer"] = "0",
        };
        Daemon = ChildProcess.Start("the daemon", _gatewayDll, [.. command, "--config", DaemonConfig, "--data-dir", DaemonDir], env,
            line => line.Contains("connected as lat_", StringComparison.Ordinal) ? line : null);
        Daemon.LogFile = Path.Combine(LogDir, "daemon.log");
        await Daemon.WaitReadyAsync(StartTimeout, cancellationToken);
    }

    /// <summary>Throws when a process of the stack has died.</summary>
    public void CheckAlive()
    {
        foreach (var p in new[] { _standIn, Gateway })
        {
            if (p is { HasExited: true })
            {
                throw new BenchException($"{p.Name} died during the run:\n{p.RecentOutput()}");
            }
        }
    }

    private static async Task<JsonNode> SendAsync(HttpClient http, HttpMethod method, string path, string body, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        using var response = await http.SendAsync(request, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            throw new BenchException($"{method} {path} answered {(int)response.StatusCode}: {text}");
        }
        return JsonNode.Parse(text)!;
    }

    internal static (int Code, string Output) Run(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }
        try
        {
            using var p = Process.Start(info)!;
            var output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
            p.WaitForExit();
            return (p.ExitCode, output);
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            return (-1, ex.Message);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Daemon?.Dispose();
        Gateway?.Dispose();
        _standIn?.Dispose();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        await Task.Yield();
        if (_mounted)
        {
            var (code, output) = Run("umount", DataDir);
            if (code != 0)
            {
                Log($"umount {DataDir} failed: {output.Trim()}");
            }
        }
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
    }

    private static void Log(string message) => BenchRun.Log(message);
}
