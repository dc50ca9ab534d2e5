namespace Lattice.Testing;

/// <summary>Well-known locations of the Lattice checkout, found from the running test assembly.</summary>
public static class RepoPaths
{
    /// <summary>The file that marks the repository root.</summary>
    public const string SolutionFileName = "Lattice.slnx";

    /// <summary>Environment variable that overrides <see cref="SharedDir"/>.</summary>
    public const string SharedDirVariable = "LATTICE_SHARED_DIR";

    private static readonly Lazy<string> Root = new(FindRepoRoot, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>
    /// The repository root: the nearest directory containing <c>Lattice.slnx</c>, walking up from
    /// <see cref="AppContext.BaseDirectory"/> (then from the current directory).
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">No such directory exists.</exception>
    public static string RepoRoot => Root.Value;

    /// <summary>
    /// The <c>shared</c> directory: <c>$LATTICE_SHARED_DIR</c> if set, otherwise the <c>shared</c>
    /// directory beside the repository root (<c>&lt;RepoRoot&gt;/../shared</c>).
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The directory does not exist.</exception>
    public static string SharedDir
    {
        get
        {
            var fromEnvironment = Environment.GetEnvironmentVariable(SharedDirVariable);
            if (!string.IsNullOrWhiteSpace(fromEnvironment))
            {
                var full = Path.GetFullPath(fromEnvironment);
                return Directory.Exists(full)
                    ? full
                    : throw new DirectoryNotFoundException($"{SharedDirVariable} is '{fromEnvironment}', which does not exist.");
            }

            var parent = Directory.GetParent(RepoRoot)?.FullName
                ?? throw new DirectoryNotFoundException($"The repository root '{RepoRoot}' has no parent directory.");
            var shared = Path.Combine(parent, "shared");
            return Directory.Exists(shared)
                ? shared
                : throw new DirectoryNotFoundException(
                    $"Expected the shared directory beside the repository at '{shared}'. Set {SharedDirVariable} to override.");
        }
    }

    private static string FindRepoRoot()
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, SolutionFileName)))
                {
                    return dir.FullName;
                }
            }
        }

        throw new DirectoryNotFoundException(
            $"No directory containing {SolutionFileName} above '{AppContext.BaseDirectory}' or '{Environment.CurrentDirectory}'.");
    }
}
