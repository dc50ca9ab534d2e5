using Lattice.Protocol;

namespace Lattice.Cli.Commands;

/// <summary><c>&lt;data-dir&gt;/env</c>: <c>NAME=value</c> lines that scripts can source. Readable by its owner only.</summary>
internal static class EnvFile
{
    public static string DefaultDataDirectory =>
        Environment.GetEnvironmentVariable("LATTICE_DATA_DIR") is { Length: > 0 } fromEnv
            ? fromEnv
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".lattice");

    public static string PathIn(string dataDirectory) => Path.Combine(dataDirectory, "env");

    public static Dictionary<string, string> Read(string dataDirectory)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        var path = PathIn(dataDirectory);
        if (!File.Exists(path))
        {
            return values;
        }
        foreach (var line in File.ReadAllLines(path))
        {
            var eq = line.IndexOf('=');
            if (eq > 0 && !line.StartsWith('#'))
            {
                values[line[..eq].Trim()] = line[(eq + 1)..].Trim();
            }
        }
        return values;
    }

    public static void Write(string dataDirectory, IReadOnlyDictionary<string, string> values)
    {
        OwnerOnlyFile.Write(PathIn(dataDirectory), stream =>
        {
            using var writer = new StreamWriter(stream);
            writer.WriteLine("# Written by `lattice up`. Source it: set -a; . ./env; set +a");
            foreach (var (key, value) in values)
            {
                writer.WriteLine($"{key}={value}");
            }
        });
    }
}
