using System.Globalization;
using System.Net;
using Lattice.Runtime.Connection;
using Tomlyn;
using Tomlyn.Model;

namespace Lattice.Runtime.Config;

/// <summary>A model an engine serves.</summary>
/// <param name="Name">The model's name on this runtime.</param>
/// <param name="Path">Model file (llama, whisper); null for engines whose models are not files.</param>
/// <param name="Task">The task it serves, when the engine serves several (openai-compatible).</param>
/// <param name="ContextSize">Context window for llama models; 0 = the engine's default.</param>
/// <param name="Chunks">Fixed engine only: content chunks per streamed answer (0 = default).</param>
/// <param name="ChunkDelayMs">Fixed engine only: pause after each chunk, to stand in for a slow model.</param>
/// <param name="IgnorePrompt">Whisper only: ignore the request's prompt (for models a prompt derails).</param>
/// <param name="PlainCompletion">Llama only: a completion model, prompted with the messages' text and no chat template.</param>
public sealed record ModelConfig(string Name, string? Path, string? Task, int ContextSize, int Chunks = 0, int ChunkDelayMs = 0, bool IgnorePrompt = false, bool PlainCompletion = false);

/// <summary>One <c>[[engines]]</c> entry.</summary>
public sealed record EngineConfig(string Kind, IReadOnlyList<ModelConfig> Models, string? BaseUrl, string? ApiKeyEnv, int Line);

/// <summary>
/// The daemon's TOML configuration (<c>~/.lattice/config.toml</c>, <c>--config</c>, or <c>LATTICE_CONFIG_PATH</c>):
/// <c>[daemon]</c>, <c>[gateway]</c> and <c>[[engines]]</c> with their <c>[[engines.models]]</c>.
/// </summary>
/// <param name="GatewayUrls">
/// The gateway nodes to connect to (<c>[gateway] url</c> or <c>urls</c>), each an http(s) origin; empty: the ones the
/// daemon was paired with.
/// </param>
/// <param name="Metrics">
/// Where the Prometheus scrape endpoint listens (<c>[daemon] metrics = "127.0.0.1:9464"</c>); null, the default: no
/// endpoint. A loopback address unless <c>metrics_allow_remote = true</c>, as the endpoint has no authentication.
/// </param>
public sealed record DaemonConfig(int Concurrency, string DataDirectory, IReadOnlyList<string> GatewayUrls, IReadOnlyList<EngineConfig> Engines, string? SourcePath,
    IPEndPoint? Metrics = null)
{
    public static readonly string[] EngineKinds = ["llama", "onnx-embeddings", "whisper", "openai-compatible", "fixed"];

    public static string DefaultDataDirectory =>
        Environment.GetEnvironmentVariable("LATTICE_DATA_DIR") is { Length: > 0 } d
            ? d
            : System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".lattice");

    /// <summary>Which file to read: the explicit path, else <c>LATTICE_CONFIG_PATH</c>, else <c>~/.lattice/config.toml</c>.</summary>
    public static string ResolvePath(string? explicitPath) =>
        explicitPath
        ?? (Environment.GetEnvironmentVariable("LATTICE_CONFIG_PATH") is { Length: > 0 } p ? p : System.IO.Path.Combine(DefaultDataDirectory, "config.toml"));

    /// <summary>Reads and checks a config file; a missing file at the default path is an empty config.</summary>
    public static DaemonConfig Load(string path, bool mustExist)
    {
        if (!File.Exists(path))
        {
            if (mustExist)
            {
                throw new ConfigException(path, null, null, "the file does not exist");
            }
            return new DaemonConfig(Environment.ProcessorCount, DefaultDataDirectory, [], [], null);
        }
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses config text. Errors name the key and the line.</summary>
    public static DaemonConfig Parse(string text, string sourceName)
    {
        TomlTable root;
        try
        {
            root = TomlSerializer.Deserialize<TomlTable>(text, new TomlSerializerOptions())!;
        }
        catch (TomlException ex)
        {
            var message = ex.Message;
            var marker = message.IndexOf(": error : ", StringComparison.Ordinal);
            throw new ConfigException(sourceName, null, ex.Line, marker >= 0 ? message[(marker + 10)..] : message);
        }
        catch (ArgumentOutOfRangeException)
        {
            // Tomlyn's lexer fails while describing an escape of a character that is not a Unicode scalar value (a lone
            // surrogate): found by the config fuzzer (DaemonConfigFuzzTests).
            throw new ConfigException(sourceName, null, null, "a string has an escape of a character that is not valid Unicode");
        }

        var lines = text.Split('\n');
        var reader = new Reader(sourceName, lines);
        reader.CheckKeys(root, "", ["daemon", "gateway", "engines"]);

        var concurrency = Environment.ProcessorCount;
        var dataDirectory = DefaultDataDirectory;
        IPEndPoint? metrics = null;
        if (reader.Table(root, "daemon", "") is { } daemon)
        {
            reader.CheckKeys(daemon, "daemon", ["concurrency", "data_dir", "metrics", "metrics_allow_remote"]);
            concurrency = (int)(reader.Integer(daemon, "daemon", "concurrency", min: 1, max: 1024) ?? concurrency);
            dataDirectory = ExpandHome(reader.String(daemon, "daemon", "data_dir") ?? dataDirectory);
            var allowRemote = reader.Boolean(daemon, "daemon", "metrics_allow_remote");
            if (reader.String(daemon, "daemon", "metrics") is { } address)
            {
                metrics = MetricsAddress(address, allowRemote ?? false, out var problem) ?? throw reader.Error("daemon", "metrics", problem!);
            }
            else if (allowRemote is not null)
            {
                throw reader.Error("daemon", "metrics_allow_remote", "only applies with metrics = \"address:port\"");
            }
        }

        IReadOnlyList<string> gatewayUrls = [];
        if (reader.Table(root, "gateway", "") is { } gateway)
        {
            reader.CheckKeys(gateway, "gateway", ["url", "urls"]);
            var url = reader.String(gateway, "gateway", "url");
            var urls = reader.Strings(gateway, "gateway", "urls");
            if (url is not null && urls is not null)
            {
                throw reader.Error("gateway", "urls", "set either url or urls, not both");
            }
            if (urls is { Count: 0 })
            {
                throw reader.Error("gateway", "urls", "must list at least one URL");
            }
            var origins = new List<string>();
            foreach (var value in urls ?? (url is null ? [] : [url]))
            {
                var key = urls is null ? "url" : "urls";
                var origin = GatewayEndpoints.ToOrigin(value, out var problem) ?? throw reader.Error("gateway", key, problem!);
                if (origins.Contains(origin, StringComparer.Ordinal))
                {
                    throw reader.Error("gateway", key, $"lists {origin} twice");
                }
                origins.Add(origin);
            }
            gatewayUrls = origins;
        }

        var engines = new List<EngineConfig>();
        if (root.TryGetValue("engines", out var enginesValue))
        {
            if (enginesValue is not TomlTableArray array)
            {
                throw reader.Error("", "engines", "expected an array of tables ([[engines]])");
            }
            var index = 0;
            foreach (TomlTable engine in array)
            {
                var section = $"engines[{index}]";
                reader.CheckKeys(engine, section, ["kind", "base_url", "api_key_env", "models"]);
                var kind = reader.String(engine, section, "kind") ?? throw reader.Error(section, "kind", "is required");
                if (Array.IndexOf(EngineKinds, kind) < 0)
                {
                    throw reader.Error(section, "kind", $"unknown engine '{kind}'; expected one of {string.Join(", ", EngineKinds)}");
                }
                var baseUrl = reader.String(engine, section, "base_url");
                if (kind == "openai-compatible" && (baseUrl is null || !Uri.TryCreate(baseUrl, UriKind.Absolute, out _)))
                {
                    throw reader.Error(section, "base_url", "the openai-compatible engine needs an absolute base_url");
                }
                var models = new List<ModelConfig>();
                if (engine.TryGetValue("models", out var modelsValue))
                {
                    if (modelsValue is not TomlTableArray modelArray)
                    {
                        throw reader.Error(section, "models", "expected an array of tables ([[engines.models]])");
                    }
                    var m = 0;
                    foreach (TomlTable model in modelArray)
                    {
                        var modelSection = $"{section}.models[{m}]";
                        reader.CheckKeys(model, modelSection, ["name", "path", "task", "context_size", "chunks", "chunk_delay_ms", "ignore_prompt", "plain_completion"]);
                        var name = reader.String(model, modelSection, "name") ?? throw reader.Error(modelSection, "name", "is required");
                        var path = reader.String(model, modelSection, "path");
                        if (kind is "llama" or "whisper" && path is null)
                        {
                            throw reader.Error(modelSection, "path", $"the {kind} engine needs the model file's path");
                        }
                        models.Add(new ModelConfig(name, path is null ? null : ExpandHome(path), reader.String(model, modelSection, "task"),
                            (int)(reader.Integer(model, modelSection, "context_size", min: 0, max: 1 << 20) ?? 0),
                            (int)(reader.Integer(model, modelSection, "chunks", min: 0, max: 100_000) ?? 0),
                            (int)(reader.Integer(model, modelSection, "chunk_delay_ms", min: 0, max: 60_000) ?? 0),
                            reader.Boolean(model, modelSection, "ignore_prompt") ?? false,
                            reader.Boolean(model, modelSection, "plain_completion") ?? false));
                        m++;
                    }
                }
                engines.Add(new EngineConfig(kind, models, baseUrl, reader.String(engine, section, "api_key_env"), reader.LineOf(section, "kind") ?? 0));
                index++;
            }
        }

        return new DaemonConfig(concurrency, dataDirectory, gatewayUrls, engines, sourceName, metrics);
    }

    /// <summary>
    /// <c>[daemon] metrics</c>: an IP address and port (<c>127.0.0.1:9464</c>, <c>[::1]:9464</c>; <c>localhost:9464</c>
    /// is 127.0.0.1). Any other than loopback only with <paramref name="allowRemote"/>: the endpoint has no authentication.
    /// </summary>
    private static IPEndPoint? MetricsAddress(string value, bool allowRemote, out string? problem)
    {
        problem = null;
        var text = value.StartsWith("localhost:", StringComparison.OrdinalIgnoreCase) ? "127.0.0.1" + value["localhost".Length..] : value;
        var colon = text.LastIndexOf(':');
        // IPEndPoint.TryParse takes "127.0.0.1" alone (port 0) and a bare IPv6 address: the port is required here.
        if (colon < 0 || text.EndsWith(']') || !IPEndPoint.TryParse(text, out var endpoint)
            || (endpoint.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 && !text.StartsWith('[')))
        {
            problem = $"expected an IP address and port such as \"127.0.0.1:9464\" or \"[::1]:9464\", not \"{value}\"";
            return null;
        }
        if (endpoint.Port == 0)
        {
            problem = $"needs a port between 1 and 65535, not 0 (\"{value}\")";
            return null;
        }
        if (!allowRemote && !IPAddress.IsLoopback(endpoint.Address))
        {
            problem = $"{endpoint.Address} is not a loopback address: the metrics endpoint has no authentication, so it listens on " +
                "127.0.0.1 or [::1] unless metrics_allow_remote = true says it may be reached from the network";
            return null;
        }
        return endpoint;
    }

    private static string ExpandHome(string path) =>
        path.StartsWith("~/", StringComparison.Ordinal)
            ? System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), path[2..])
            : path;

    private sealed class Reader(string source, string[] lines)
    {
        public ConfigException Error(string section, string key, string message) =>
            new(source, section.Length == 0 ? key : $"{section}.{key}", LineOf(section, key), message);

        public TomlTable? Table(TomlTable parent, string key, string section)
        {
            if (!parent.TryGetValue(key, out var value))
            {
                return null;
            }
            return value as TomlTable ?? throw Error(section, key, "expected a table");
        }

        public string? String(TomlTable table, string section, string key)
        {
            if (!table.TryGetValue(key, out var value))
            {
                return null;
            }
            return value as string ?? throw Error(section, key, $"expected a string, not {Describe(value)}");
        }

        public IReadOnlyList<string>? Strings(TomlTable table, string section, string key)
        {
            if (!table.TryGetValue(key, out var value))
            {
                return null;
            }
            if (value is not TomlArray array)
            {
                throw Error(section, key, $"expected an array of strings, not {Describe(value)}");
            }
            var strings = new List<string>(array.Count);
            foreach (var item in array)
            {
                strings.Add(item as string ?? throw Error(section, key, $"expected an array of strings, not one holding {Describe(item!)}"));
            }
            return strings;
        }

        public bool? Boolean(TomlTable table, string section, string key)
        {
            if (!table.TryGetValue(key, out var value))
            {
                return null;
            }
            return value as bool? ?? throw Error(section, key, $"expected true or false, not {Describe(value)}");
        }

        public long? Integer(TomlTable table, string section, string key, long min, long max)
        {
            if (!table.TryGetValue(key, out var value))
            {
                return null;
            }
            if (value is not long n)
            {
                throw Error(section, key, $"expected an integer, not {Describe(value)}");
            }
            if (n < min || n > max)
            {
                throw Error(section, key, $"must be between {min} and {max}, not {n}");
            }
            return n;
        }

        public void CheckKeys(TomlTable table, string section, string[] allowed)
        {
            foreach (var key in table.Keys)
            {
                if (Array.IndexOf(allowed, key) < 0)
                {
                    throw Error(section, key, $"unknown key; expected one of {string.Join(", ", allowed)}");
                }
            }
        }

        /// <summary>The 1-based line where <paramref name="key"/> is set inside <paramref name="section"/> (array indexes count [[tables]]).</summary>
        public int? LineOf(string section, string key)
        {
            var target = section.Length == 0 ? "" : section;
            var counters = new Dictionary<string, int>(StringComparer.Ordinal);
            var current = "";
            for (var i = 0; i < lines.Length; i++)
            {
                var line = lines[i].Trim();
                if (line.StartsWith("[[", StringComparison.Ordinal) && line.Contains("]]", StringComparison.Ordinal))
                {
                    var name = line[2..line.IndexOf("]]", StringComparison.Ordinal)].Trim();
                    // Name arrays by their position: engines[0], engines[0].models[1], …
                    if (!name.Contains('.'))
                    {
                        var n = counters.GetValueOrDefault(name);
                        counters[name] = n + 1;
                        current = $"{name}[{n}]";
                    }
                    else
                    {
                        var dot = name.LastIndexOf('.');
                        // A nested array ([[engines.models]]) belongs to the latest top-level entry (engines[n]).
                        var owner = current.Contains('.') ? current[..current.IndexOf('.')] : current;
                        var childKey = owner + "." + name[(dot + 1)..];
                        var n = counters.GetValueOrDefault(childKey);
                        counters[childKey] = n + 1;
                        current = $"{childKey}[{n}]";
                    }
                    if (current == target && key.Length == 0)
                    {
                        return i + 1;
                    }
                    continue;
                }
                if (line.StartsWith('[') && line.Contains(']'))
                {
                    current = line[1..line.IndexOf(']')].Trim();
                    continue;
                }
                if (current == target && line.StartsWith(key, StringComparison.Ordinal))
                {
                    var rest = line[key.Length..].TrimStart();
                    if (rest.StartsWith('='))
                    {
                        return i + 1;
                    }
                }
            }
            return section.Length > 0 && key.Length > 0 ? LineOf(section, "") : null;
        }

        private static string Describe(object value) => value switch
        {
            string => "a string",
            long => "an integer",
            double => "a number",
            bool => "a boolean",
            TomlTable => "a table",
            TomlArray or TomlTableArray => "an array",
            _ => Convert.ToString(value, CultureInfo.InvariantCulture) ?? "a value",
        };
    }
}

/// <summary>A config file that cannot be used; the message names the file, the key and the line.</summary>
public sealed class ConfigException(string source, string? key, int? line, string problem)
    : Exception($"{source}{(line is { } l ? $":{l}" : "")}: {(key is null ? "" : $"'{key}' ")}{problem}")
{
    public string? Key { get; } = key;
    public int? Line { get; } = line;
}
