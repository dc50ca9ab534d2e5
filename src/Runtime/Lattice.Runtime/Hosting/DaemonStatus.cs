using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lattice.Runtime.Hosting;

/// <summary>
/// What a running daemon last said about itself, in <c>&lt;data-dir&gt;/daemon.status</c>. The daemon accepts no
/// inbound connections, so <c>lattice status</c> reads this file.
/// </summary>
/// <param name="Gateway">The gateway URL the daemon is connected to (or trying, when not <paramref name="Connected"/>).</param>
/// <param name="Gateways">Every gateway URL it may connect to, in the order it tries them (null from older daemons).</param>
public sealed record DaemonStatus(int Pid, string State, string? LatticeId, string Gateway, bool Connected, long Served, DateTimeOffset UpdatedAt,
    IReadOnlyList<string> Capabilities, IReadOnlyList<string>? Gateways = null)
{
    public const string FileName = "daemon.status";

    public static string PathIn(string dataDirectory) => Path.Combine(dataDirectory, FileName);

    public void Save(string dataDirectory)
    {
        var path = PathIn(dataDirectory);
        var temp = path + "." + Environment.ProcessId + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(this, DaemonStatusJsonContext.Default.DaemonStatus));
        File.Move(temp, path, overwrite: true);
    }

    public static DaemonStatus? Load(string dataDirectory)
    {
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(PathIn(dataDirectory)), DaemonStatusJsonContext.Default.DaemonStatus);
        }
        catch (Exception ex) when (ex is IOException or JsonException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Whether the process that wrote the file is still running.</summary>
    public bool IsAlive()
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(Pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true)]
[JsonSerializable(typeof(DaemonStatus))]
internal sealed partial class DaemonStatusJsonContext : JsonSerializerContext;
